"""The Guardrail as generation uses it: load_guardrail, blocklist before models, fail closed, the
diffusers safety-checker adapter."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from v2w_runtime.guardrail import DiffusersSafetyChecker, Guardrail, load_guardrail
from v2w_runtime.interfaces import Guardrail as GuardrailProtocol
from v2w_runtime.interfaces import GuardrailError

FRAMES = np.random.default_rng(0).integers(0, 256, (3, 32, 48, 3), dtype=np.uint8)


def test_loads_and_passes_an_innocent_prompt_and_video(tiny_guardrails):
    guard = load_guardrail(tiny_guardrails["safe-safe"], pixelate_faces=False)
    assert isinstance(guard, GuardrailProtocol)
    assert guard.check_text("A nighttime city bus terminal.").allowed
    assert guard.check_video(FRAMES).allowed
    assert np.array_equal(guard.postprocess(FRAMES), FRAMES)


def test_the_llm_blocks_after_the_blocklist_passes(tiny_guardrails):
    guard = load_guardrail(tiny_guardrails["unsafe-safe"], pixelate_faces=False)
    verdict = guard.check_text("A nighttime city bus terminal.")
    assert not verdict.allowed and verdict.check == "llm"


def test_the_video_classifier_blocks(tiny_guardrails):
    guard = load_guardrail(tiny_guardrails["safe-unsafe"], pixelate_faces=False)
    verdict = guard.check_video(FRAMES)
    assert not verdict.allowed and verdict.check == "video_classifier"


def test_blocklisted_prompts_are_blocked_before_any_model_loads(tiny_guardrails, tmp_path):
    broken = tmp_path / "guardrail"
    shutil.copytree(tiny_guardrails["safe-safe"], broken)
    (broken / "llm_guard" / "model.safetensors").write_bytes(b"broken")
    guard = load_guardrail(broken, extra_blocklist=["acme rocket"], pixelate_faces=False)
    verdict = guard.check_text("a sch00l sh00ting")
    assert not verdict.allowed and verdict.check == "blocklist"
    verdict = guard.check_text("launch of the ACME r0cket")
    assert not verdict.allowed and "custom" in verdict.reason
    assert guard.loaded == {"llm_guard": False, "video_classifier": False}
    # An innocent prompt needs the LLM, which cannot load: fail closed.
    with pytest.raises(GuardrailError, match="cannot load the LLM guard"):
        guard.check_text("a red bus in the snow")


@pytest.mark.parametrize("missing", ["llm_guard/config.json", "video_classifier/head.json", "video_classifier/encoder/config.json"])
def test_incomplete_checkpoint_fails_at_load(tiny_guardrails, tmp_path, missing):
    broken = tmp_path / "guardrail"
    shutil.copytree(tiny_guardrails["safe-safe"], broken)
    (broken / missing).unlink()
    with pytest.raises(GuardrailError, match=f"not a guardrail checkpoint: missing {missing}"):
        load_guardrail(broken)


def test_missing_checkpoint_fails_closed(tmp_path):
    with pytest.raises(GuardrailError, match="no such folder"):
        load_guardrail(tmp_path / "absent")


def test_broken_video_classifier_fails_closed_on_preload(tiny_guardrails, tmp_path):
    broken = tmp_path / "guardrail"
    shutil.copytree(tiny_guardrails["safe-safe"], broken)
    (broken / "video_classifier" / "head.safetensors").write_bytes(b"\0" * 8)
    guard = load_guardrail(broken, pixelate_faces=False)
    with pytest.raises(GuardrailError, match="cannot load the video classifier"):
        guard.preload()


def test_bad_user_blocklist_fails_at_load(tiny_guardrails):
    with pytest.raises(GuardrailError, match="blocklist term '!!'"):
        load_guardrail(tiny_guardrails["safe-safe"], extra_blocklist=["!!"])


def test_pvc_uri(tiny_guardrails, tmp_path, monkeypatch):
    shutil.copytree(tiny_guardrails["safe-safe"], tmp_path / "models" / "guard")
    monkeypatch.setenv("V2W_PVC_ROOT", str(tmp_path))
    guard = load_guardrail("pvc://models/guard", pixelate_faces=False)
    assert guard.check_text("a bus").allowed


@pytest.mark.parametrize("bad", [np.zeros((3, 8, 8, 3), np.float32), np.zeros((8, 8, 3), np.uint8),
                                 np.zeros((0, 8, 8, 3), np.uint8), np.zeros((2, 8, 8, 4), np.uint8), [1, 2]])
def test_bad_frames_are_refused_by_name(tiny_guardrails, bad):
    guard = load_guardrail(tiny_guardrails["safe-safe"], pixelate_faces=False)
    with pytest.raises(ValueError, match="check_video"):
        guard.check_video(bad)
    with pytest.raises(ValueError, match="postprocess"):
        guard.postprocess(bad)


def test_prompt_must_be_text(tiny_guardrails):
    guard = load_guardrail(tiny_guardrails["safe-safe"], pixelate_faces=False)
    with pytest.raises(TypeError, match="check_text"):
        guard.check_text(None)


def test_postprocess_pixelates_faces(tiny_guardrails):
    skimage_data = pytest.importorskip("skimage.data")
    photo = skimage_data.astronaut()
    guard = load_guardrail(tiny_guardrails["safe-safe"])
    out = guard.postprocess(photo[None])
    changed = np.any(out[0] != photo, axis=-1)
    ys, xs = np.nonzero(changed)
    assert 0.01 < changed.mean() < 0.2  # the face, not the picture
    assert 150 < xs.mean() < 300 and 50 < ys.mean() < 200


class _FailingDetector:
    def detect(self, frame):
        raise RuntimeError("detector crashed")


def test_a_failing_face_detector_fails_closed(tiny_guardrails):
    from v2w_runtime.guardrail.faces import FacePixelator

    guard = load_guardrail(tiny_guardrails["safe-safe"], pixelate_faces=False)
    guard.pixelator = FacePixelator(detector=_FailingDetector())
    with pytest.raises(GuardrailError, match="face pixelation failed"):
        guard.postprocess(FRAMES)


# -- diffusers ----------------------------------------------------------------------------------------


def test_adapter_in_the_stock_cosmos_pipeline(tiny_guardrails):
    """The stock pipeline registers our adapter as its safety checker and calls it as it would."""
    from diffusers import Cosmos2VideoToWorldPipeline

    guard = load_guardrail(tiny_guardrails["safe-unsafe"], pixelate_faces=False)
    checker = DiffusersSafetyChecker(guard)
    pipe = Cosmos2VideoToWorldPipeline(text_encoder=None, tokenizer=None, transformer=None, vae=None,
                                       scheduler=None, safety_checker=checker)
    assert pipe.safety_checker is checker
    pipe.safety_checker.to("cpu")
    assert pipe.safety_checker.check_text_safety("A nighttime city bus terminal.") is True
    assert pipe.safety_checker.check_text_safety("a school sh00ting") is False
    out = pipe.safety_checker.check_video_safety(FRAMES)
    assert out.shape == FRAMES.shape and out.dtype == np.uint8 and not out.any()  # blocked: black frames
    assert checker.blocked is not None and checker.blocked.check == "blocklist"
    assert [v.check for v in checker.video_verdicts] == ["video_classifier"]
    assert not checker.video_verdicts[0].allowed
    checker.reset()
    assert checker.blocked is None


def test_adapter_returns_postprocessed_frames_when_allowed(tiny_guardrails):
    guard = load_guardrail(tiny_guardrails["safe-safe"], pixelate_faces=False)
    checker = DiffusersSafetyChecker(guard)
    out = checker.check_video_safety(FRAMES)
    assert np.array_equal(out, FRAMES) and checker.blocked is None


def test_adapter_lets_guardrail_errors_through(tiny_guardrails, tmp_path):
    broken = tmp_path / "guardrail"
    shutil.copytree(tiny_guardrails["safe-safe"], broken)
    (broken / "video_classifier" / "head.safetensors").write_bytes(b"\0" * 8)
    checker = DiffusersSafetyChecker(load_guardrail(broken, pixelate_faces=False))
    with pytest.raises(GuardrailError):
        checker.check_video_safety(FRAMES)


def test_guardrail_needs_its_models():
    from v2w_runtime.guardrail.blocklist import load_blocklist

    with pytest.raises(ValueError, match="LLM guard"):
        Guardrail(load_blocklist())


# -- S3 -------------------------------------------------------------------------------------------------


@pytest.mark.s3
def test_s3_checkpoint(tiny_guardrails, minio, monkeypatch, tmp_path):
    from v2w_runtime import storage

    bucket = minio.make_bucket()
    client = minio.client()
    root = tiny_guardrails["unsafe-safe"]
    for path in root.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), bucket, f"guard/{path.relative_to(root).as_posix()}")
    for key, value in minio.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("V2W_CACHE_DIR", str(tmp_path))
    storage.reset_client()
    guard = load_guardrail(f"s3://{bucket}/guard", pixelate_faces=False)
    assert not guard.check_text("a red bus").allowed  # the unsafe tiny LLM, downloaded from S3
    storage.reset_client()


def test_tiny_command_writes_a_loadable_seeded_checkpoint(tmp_path):
    import subprocess
    import sys

    from safetensors.torch import load_file

    from v2w_runtime.tiny.guardrail import write_tiny_guardrail

    out = tmp_path / "guard"
    proc = subprocess.run([sys.executable, "-m", "v2w_runtime.tiny.guardrail", "--out", str(out), "--seed", "1",
                           "--text-verdict", "unsafe"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    guard = load_guardrail(out, pixelate_faces=False)
    assert not guard.check_text("a red bus").allowed
    assert guard.check_video(FRAMES).allowed
    # The same seed writes the same weights.
    again = write_tiny_guardrail(tmp_path / "again", seed=1, text_verdict="unsafe")
    for rel in ("llm_guard/model.safetensors", "video_classifier/encoder/model.safetensors", "video_classifier/head.safetensors"):
        wa, wb = load_file(str(out / rel)), load_file(str(again / rel))
        assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)


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
