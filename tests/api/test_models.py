"""The pydantic models: examples parse, every invalid case is refused naming its field, defaults
match the seed's CLI."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from v2w_api import ALL_KINDS, DEFAULT_NEGATIVE_PROMPT, KINDS, Video2WorldJob
from v2w_api.spec import ParallelismSpec

from tests.api.cases import EXAMPLES, INVALID, Case, load_example


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_are_valid(path):
    doc = load_example(path.name)
    model = ALL_KINDS[doc["kind"]][1].model_validate(doc)
    # The wire form round-trips: what the operator writes back parses to the same model.
    assert ALL_KINDS[doc["kind"]][1].model_validate(model.to_wire()) == model


@pytest.mark.parametrize("case", [c for c in INVALID if not c.api_only], ids=lambda c: c.id)
def test_invalid_spec_is_refused_naming_the_field(case: Case):
    doc = case.manifest()
    with pytest.raises(ValidationError) as info:
        KINDS[doc["kind"]][1].model_validate(doc)
    locs = [".".join(str(p) for p in err["loc"]) for err in info.value.errors()]
    assert any(case.pydantic_loc.startswith(loc) and loc.startswith("spec") for loc in locs), (case.field, locs)
    # A person reads the refusal: no raw regex, and a pattern's own message where it has one.
    assert "should match pattern" not in str(info.value)
    if case.message:
        assert case.message in str(info.value), str(info.value)


def test_defaults_follow_the_seed_cli():
    job = Video2WorldJob.model_validate(load_example("video2world-job.yaml"))
    gen = job.spec.generation
    assert (gen.resolution, gen.aspect_ratio, gen.fps, gen.num_frames, gen.num_steps, gen.guidance, gen.seed) == (
        720, "16:9", 16, 93, 35, 7.0, 0)
    assert job.spec.prompt_refiner.enabled and job.spec.guardrail.enabled
    assert job.spec.model.size == "2B" and job.spec.model.dtype is None  # bfloat16 on GPUs, float32 on CPUs
    assert len(DEFAULT_NEGATIVE_PROMPT) > 100


def test_parallel_layout_helpers():
    p = ParallelismSpec(gpus=16, context_parallel_size=4, cfg_parallel=True)
    assert (p.group_size, p.effective_gpus_per_node, p.nodes) == (8, 8, 2)
    assert ParallelismSpec(gpus=4).nodes == 1


def test_volume_claims_are_collected_from_pvc_uris():
    doc = load_example("video2world-5frame-job.yaml")
    spec = KINDS[doc["kind"]][1].model_validate(doc).spec
    assert spec.volume_claims() == {"checkpoints", "inputs"}


def test_api_models_import_without_torch():
    import subprocess
    import sys

    code = (
        "import sys, v2w_api, v2w_operator.crds; "
        "bad = [m for m in ('torch', 'diffusers', 'transformers', 'kopf') if m in sys.modules]; "
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# White space as the API server's CEL `trim()` reads it (Go's unicode.IsSpace); the file separators
# \x1c-\x1f are white space to Python's str.strip() but not to the server, so they are not blank here either.
BLANK_PROMPTS = [" ", "\t\n\v\f\r", "\x85\xa0", "\u1680\u2000\u200a", "\u2028\u2029\u202f\u205f\u3000"]
NOT_BLANK_PROMPTS = ["a", " a ", "\x1c", "\x1f", "\u200b", "\ufeff", "\x00", "\x7f"]


@pytest.mark.parametrize("prompt", BLANK_PROMPTS + NOT_BLANK_PROMPTS, ids=ascii)
def test_a_prompt_is_blank_exactly_when_the_api_server_says_so(prompt):
    doc = load_example("video2world-job.yaml")
    doc["spec"]["input"]["prompt"] = prompt
    if prompt in BLANK_PROMPTS:
        with pytest.raises(ValidationError, match="must not be empty or only white space"):
            Video2WorldJob.model_validate(doc)
    else:
        Video2WorldJob.model_validate(doc)
