"""The Guardrail as generation uses it, loaded from the release layout: both accepted forms of the checkpoint,
where Llama Guard is looked for, every file checked before any weight loads, blocklists before models, fail
closed, and the diffusers safety-checker adapter."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from v2w_runtime.guardrail import COMPONENTS, DiffusersSafetyChecker, Guardrail, load_guardrail
from v2w_runtime.interfaces import Guardrail as GuardrailProtocol
from v2w_runtime.interfaces import GuardrailError
from v2w_runtime.tiny.guardrail import TEXT_MARKER

FRAMES = np.random.default_rng(0).integers(0, 256, (3, 32, 48, 3), dtype=np.uint8)
RED = np.zeros((2, 32, 48, 3), np.uint8)
RED[..., 0] = 255
INNOCENT = "A nighttime city bus terminal gradually shifts from stillness to subtle movement."
MARKED = f"A masked man commits a {TEXT_MARKER} at the bus terminal."


def _copy(tree: Path, dest: Path) -> Path:
    shutil.copytree(tree, dest)
    return dest


def test_loads_from_the_tree_root_and_passes_an_innocent_prompt_and_video(release_tree):
    guard = load_guardrail(release_tree, pixelate_faces=False)
    assert isinstance(guard, GuardrailProtocol)
    assert guard.release.layout == "tree"
    verdict = guard.check_text(INNOCENT)
    assert verdict.allowed and verdict.ran == ("blocklist", "llama_guard")
    verdict = guard.check_video(FRAMES)
    assert verdict.allowed and verdict.ran == ("video_safety_filter",)
    assert np.array_equal(guard.postprocess(FRAMES), FRAMES)
    assert guard.components == ("blocklist", "llama_guard", "video_safety_filter")


def test_loads_from_the_guardrail1_folder_with_llama_guard_beside_it_in_the_tree(guardrail1, llama_guard_dir):
    guard = load_guardrail(guardrail1)
    assert guard.release.layout == "guardrail1"
    assert guard.release.llama_guard_dir.resolve() == llama_guard_dir.resolve()
    assert guard.components == COMPONENTS
    assert not guard.check_text(MARKED).allowed


def test_llama_guard_under_the_given_folder(guardrail1, llama_guard_dir, tmp_path):
    """A Cosmos-Guardrail1 folder outside a tree, with Llama Guard put inside it under its repo name."""
    folder = _copy(guardrail1, tmp_path / "guard")
    shutil.copytree(llama_guard_dir, folder / "meta-llama" / "Llama-Guard-3-8B")
    guard = load_guardrail(folder, pixelate_faces=False)
    assert guard.release.llama_guard_dir == folder / "meta-llama" / "Llama-Guard-3-8B"
    assert not guard.check_text(MARKED).allowed


def test_no_llama_guard_fails_closed_naming_both_places(guardrail1, tmp_path):
    folder = _copy(guardrail1, tmp_path / "somewhere" / "nvidia" / "Cosmos-Guardrail1")
    with pytest.raises(GuardrailError, match="Llama Guard 3") as err:
        load_guardrail(folder)
    message = str(err.value)
    assert f"{tmp_path / 'somewhere' / 'meta-llama' / 'Llama-Guard-3-8B'}/" in message
    assert f"{folder / 'meta-llama' / 'Llama-Guard-3-8B'}/" in message


def test_llama_guard_blocks_after_the_blocklists_pass(release_tree):
    guard = load_guardrail(release_tree, pixelate_faces=False)
    verdict = guard.check_text(MARKED)
    assert not verdict.allowed and verdict.check == "llama_guard"
    assert "S1 Violent Crimes" in verdict.reason and verdict.ran == ("blocklist", "llama_guard")


def test_the_video_safety_filter_blocks_red_frames(release_tree):
    guard = load_guardrail(release_tree, pixelate_faces=False)
    verdict = guard.check_video(np.concatenate([FRAMES, RED]))
    assert not verdict.allowed and verdict.check == "video_safety_filter"
    assert "frame 3 of 5 rated Violence" in verdict.reason


def test_blocklisted_prompts_are_blocked_before_any_model_loads(release_tree, tmp_path):
    tree = _copy(release_tree, tmp_path / "checkpoints")
    (tree / "meta-llama" / "Llama-Guard-3-8B" / "model-00002-of-00004.safetensors").write_bytes(b"broken")
    guard = load_guardrail(tree, extra_blocklist=["acme rocket"])
    for prompt, reason in [("a massacre in the street", "a word of the release blocklist"),  # release, custom/
                           ("two massacres", "a form of a word"),  # release, lemmatized by NLTK
                           ("a beheading", "an exact-match term"),  # release, exact_match/
                           ("a sch00l sh00ting", "category: extreme violence and gore"),  # our built-in list
                           ("launch of the ACME r0cket", "category: custom")]:  # the job's own terms
        verdict = guard.check_text(prompt)
        assert not verdict.allowed and verdict.check == "blocklist" and reason in verdict.reason, (prompt, verdict)
        assert verdict.ran == ("blocklist",)
    assert guard.loaded == {"llama_guard": False, "video_safety_filter": False, "face_blur": False}
    # An innocent prompt needs Llama Guard, whose weights are broken: fail closed.
    with pytest.raises(GuardrailError, match="cannot load Llama Guard"):
        guard.check_text("a red bus in the snow")


@pytest.mark.parametrize("missing", [
    "nvidia/Cosmos-Guardrail1/video_content_safety_filter/safety_filter.pt",
    "nvidia/Cosmos-Guardrail1/video_content_safety_filter/models--google--siglip-so400m-patch14-384/snapshots/"
    "9fdffc58afc957d1a03a25b10dba0329ab15c2a3/model.safetensors",
    "nvidia/Cosmos-Guardrail1/face_blur_filter/Resnet50_Final.pth",
    "nvidia/Cosmos-Guardrail1/blocklist/exact_match",
    "nvidia/Cosmos-Guardrail1/blocklist/nltk_data/corpora/wordnet.zip",
    "meta-llama/Llama-Guard-3-8B/model-00003-of-00004.safetensors",
    "meta-llama/Llama-Guard-3-8B/tokenizer_config.json",
])
def test_a_missing_file_fails_at_load_naming_it(release_tree, tmp_path, missing):
    tree = _copy(release_tree, tmp_path / "checkpoints")
    target = tree / missing
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(GuardrailError, match="incomplete: missing") as err:
        load_guardrail(tree)
    assert str(target) in str(err.value)


def test_a_siglip_cache_without_refs_main_and_two_snapshots_is_named(release_tree, tmp_path):
    tree = _copy(release_tree, tmp_path / "checkpoints")
    cache = tree / "nvidia/Cosmos-Guardrail1/video_content_safety_filter/models--google--siglip-so400m-patch14-384"
    (cache / "refs" / "main").unlink()
    shutil.copytree(next((cache / "snapshots").iterdir()), cache / "snapshots" / "another")
    with pytest.raises(GuardrailError, match=r"snapshots/<rev>/model.safetensors \(with refs/main naming <rev>\)"):
        load_guardrail(tree)


def test_not_a_guardrail_checkpoint_names_both_layouts(tmp_path):
    (tmp_path / "models").mkdir()
    with pytest.raises(GuardrailError, match="not a guardrail checkpoint") as err:
        load_guardrail(tmp_path / "models")
    assert "nvidia/Cosmos-Guardrail1/ (upstream's checkpoint tree)" in str(err.value)
    assert "face_blur_filter/ (the Cosmos-Guardrail1 folder itself)" in str(err.value)


def test_the_former_own_layout_is_refused_with_a_hint(tmp_path):
    (tmp_path / "guard" / "llm_guard").mkdir(parents=True)
    (tmp_path / "guard" / "video_classifier").mkdir()
    with pytest.raises(GuardrailError, match="former guardrail layout"):
        load_guardrail(tmp_path / "guard")


def test_missing_checkpoint_fails_closed(tmp_path):
    with pytest.raises(GuardrailError, match="no such folder"):
        load_guardrail(tmp_path / "absent")


def test_broken_safety_filter_fails_closed_on_preload(release_tree, tmp_path):
    tree = _copy(release_tree, tmp_path / "checkpoints")
    (tree / "nvidia/Cosmos-Guardrail1/video_content_safety_filter/safety_filter.pt").write_bytes(b"\0" * 8)
    guard = load_guardrail(tree, pixelate_faces=False)
    with pytest.raises(GuardrailError, match="safety_filter.pt"):
        guard.preload()


def test_broken_face_detector_fails_closed_on_preload(release_tree, tmp_path):
    tree = _copy(release_tree, tmp_path / "checkpoints")
    (tree / "nvidia/Cosmos-Guardrail1/face_blur_filter/Resnet50_Final.pth").write_bytes(b"not a checkpoint")
    guard = load_guardrail(tree)
    with pytest.raises(GuardrailError, match="cannot load the face detector.*Resnet50_Final.pth"):
        guard.preload()


def test_bad_user_blocklist_fails_at_load(release_tree):
    with pytest.raises(GuardrailError, match="blocklist term '!!'"):
        load_guardrail(release_tree, extra_blocklist=["!!"])


@pytest.mark.parametrize("where", ["tree", "nvidia/Cosmos-Guardrail1"])
def test_pvc_uri(release_tree, tmp_path, monkeypatch, where):
    shutil.copytree(release_tree, tmp_path / "models" / "checkpoints")
    monkeypatch.setenv("V2W_PVC_ROOT", str(tmp_path))
    uri = "pvc://models/checkpoints" + ("" if where == "tree" else f"/{where}")
    guard = load_guardrail(uri, pixelate_faces=False)
    assert guard.check_text("a bus").allowed and not guard.check_text(f"a {TEXT_MARKER}").allowed


@pytest.mark.parametrize("bad", [np.zeros((3, 8, 8, 3), np.float32), np.zeros((8, 8, 3), np.uint8),
                                 np.zeros((0, 8, 8, 3), np.uint8), np.zeros((2, 8, 8, 4), np.uint8), [1, 2]])
def test_bad_frames_are_refused_by_name(release_tree, bad):
    guard = load_guardrail(release_tree, pixelate_faces=False)
    with pytest.raises(ValueError, match="check_video"):
        guard.check_video(bad)
    with pytest.raises(ValueError, match="postprocess"):
        guard.postprocess(bad)


def test_prompt_must_be_text(release_tree):
    guard = load_guardrail(release_tree, pixelate_faces=False)
    with pytest.raises(TypeError, match="check_text"):
        guard.check_text(None)


def test_postprocess_pixelates_the_face_found_by_retinaface(release_tree):
    skimage_data = pytest.importorskip("skimage.data")
    photo = skimage_data.astronaut()
    guard = load_guardrail(release_tree)
    assert guard.postprocessors == ("face_blur",)
    out = guard.postprocess(photo[None])
    changed = np.any(out[0] != photo, axis=-1)
    ys, xs = np.nonzero(changed)
    assert 0.01 < changed.mean() < 0.2  # the face, not the picture
    assert 150 < xs.mean() < 300 and 50 < ys.mean() < 200


class _FailingDetector:
    def detect_frames(self, frames):
        raise RuntimeError("detector crashed")


def test_a_failing_face_detector_fails_closed(release_tree):
    from v2w_runtime.guardrail.faces import FacePixelator

    guard = load_guardrail(release_tree, pixelate_faces=False)
    guard.pixelator = FacePixelator(detector=_FailingDetector())
    with pytest.raises(GuardrailError, match="face pixelation failed"):
        guard.postprocess(FRAMES)


# -- diffusers ----------------------------------------------------------------------------------------


def test_adapter_in_the_stock_cosmos_pipeline(release_tree):
    """The stock pipeline registers our adapter as its safety checker and calls it as it would."""
    from diffusers import Cosmos2VideoToWorldPipeline

    guard = load_guardrail(release_tree, pixelate_faces=False)
    checker = DiffusersSafetyChecker(guard)
    pipe = Cosmos2VideoToWorldPipeline(text_encoder=None, tokenizer=None, transformer=None, vae=None,
                                       scheduler=None, safety_checker=checker)
    assert pipe.safety_checker is checker
    pipe.safety_checker.to("cpu")
    assert pipe.safety_checker.check_text_safety(INNOCENT) is True
    assert pipe.safety_checker.check_text_safety("a school sh00ting") is False
    out = pipe.safety_checker.check_video_safety(RED)
    assert out.shape == RED.shape and out.dtype == np.uint8 and not out.any()  # blocked: black frames
    assert checker.blocked is not None and checker.blocked.check == "blocklist"
    assert [v.check for v in checker.video_verdicts] == ["video_safety_filter"]
    assert not checker.video_verdicts[0].allowed
    checker.reset()
    assert checker.blocked is None


def test_adapter_returns_postprocessed_frames_when_allowed(release_tree):
    guard = load_guardrail(release_tree, pixelate_faces=False)
    checker = DiffusersSafetyChecker(guard)
    out = checker.check_video_safety(FRAMES)
    assert np.array_equal(out, FRAMES) and checker.blocked is None


def test_adapter_lets_guardrail_errors_through(release_tree, tmp_path):
    tree = _copy(release_tree, tmp_path / "checkpoints")
    (tree / "nvidia/Cosmos-Guardrail1/video_content_safety_filter/safety_filter.pt").write_bytes(b"\0" * 8)
    checker = DiffusersSafetyChecker(load_guardrail(tree, pixelate_faces=False))
    with pytest.raises(GuardrailError):
        checker.check_video_safety(FRAMES)


def test_guardrail_needs_its_models():
    with pytest.raises(ValueError, match="Llama Guard"):
        Guardrail([])


# -- S3 -------------------------------------------------------------------------------------------------


@pytest.mark.s3
@pytest.mark.parametrize("where", ["", "/nvidia/Cosmos-Guardrail1"])
def test_s3_checkpoint_downloads_only_what_the_guardrail_reads(release_tree, minio, monkeypatch, tmp_path, where):
    from v2w_runtime import storage

    bucket = minio.make_bucket()
    client = minio.client()
    for path in release_tree.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), bucket, f"checkpoints/{path.relative_to(release_tree).as_posix()}")
    # What upstream's download skips, and an HF cache's blobs: never fetched.
    for key in ("meta-llama/Llama-Guard-3-8B/original/consolidated.00.pth",
                "nvidia/Cosmos-Guardrail1/video_content_safety_filter/models--google--siglip-so400m-patch14-384/blobs/x",
                "nvidia/Cosmos-Predict2-2B-Video2World/model-720p-16fps.pt"):
        client.put_object(Bucket=bucket, Key=f"checkpoints/{key}", Body=b"large")
    for key, value in minio.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("V2W_CACHE_DIR", str(tmp_path))
    storage.reset_client()
    try:
        guard = load_guardrail(f"s3://{bucket}/checkpoints{where}", pixelate_faces=False)
        assert not guard.check_text(MARKED).allowed  # the tiny Llama Guard, downloaded from S3
        assert guard.check_text(INNOCENT).allowed
        fetched = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
        assert not any(name.endswith(("consolidated.00.pth", "blobs/x", "model-720p-16fps.pt")) for name in fetched)
    finally:
        storage.reset_client()


def test_tiny_command_writes_a_loadable_seeded_tree(tmp_path):
    import subprocess
    import sys

    from safetensors.torch import load_file

    from v2w_runtime.tiny.guardrail import write_tiny_guardrail_release

    out = tmp_path / "checkpoints"
    proc = subprocess.run([sys.executable, "-m", "v2w_runtime.tiny.guardrail", "--out", str(out), "--seed", "1",
                           "--video-marker", "any"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    guard = load_guardrail(out, pixelate_faces=False)
    assert not guard.check_text(f"a {TEXT_MARKER}").allowed and guard.check_text("a bus").allowed
    assert not guard.check_video(FRAMES).allowed  # "any": every frame rated unsafe
    # The same seed writes the same weights.
    again = write_tiny_guardrail_release(tmp_path / "again", seed=1, video_marker="any")
    siglip = ("nvidia/Cosmos-Guardrail1/video_content_safety_filter/models--google--siglip-so400m-patch14-384/"
              "snapshots/9fdffc58afc957d1a03a25b10dba0329ab15c2a3/model.safetensors")
    for rel in ("meta-llama/Llama-Guard-3-8B/model-00001-of-00004.safetensors", siglip):
        wa, wb = load_file(str(out / rel)), load_file(str(again / rel))
        assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)
    import torch

    for rel in ("nvidia/Cosmos-Guardrail1/face_blur_filter/Resnet50_Final.pth",
                "nvidia/Cosmos-Guardrail1/video_content_safety_filter/safety_filter.pt"):
        wa, wb = torch.load(out / rel, weights_only=True), torch.load(again / rel, weights_only=True)
        wa, wb = wa.get("model", wa), wb.get("model", wb)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_allow_all_checker_passes_everything_through_and_says_so():
    """The checker the stock pipeline gets where it is only a reference: nothing blocked, frames untouched."""
    from diffusers import Cosmos2VideoToWorldPipeline

    checker = DiffusersSafetyChecker.allow_all()
    pipe = Cosmos2VideoToWorldPipeline(text_encoder=None, tokenizer=None, transformer=None, vae=None,
                                       scheduler=None, safety_checker=checker)
    assert pipe.safety_checker.to("cpu") is checker
    assert checker.check_text_safety("a school sh00ting") is True
    out = checker.check_video_safety(FRAMES)
    assert out is FRAMES and checker.blocked is None
    assert [(v.allowed, v.check) for v in checker.text_verdicts + checker.video_verdicts] == [(True, "none")] * 2


def test_checker_refuses_a_missing_guardrail():
    with pytest.raises(ValueError, match="needs a guardrail"):
        DiffusersSafetyChecker(None)
