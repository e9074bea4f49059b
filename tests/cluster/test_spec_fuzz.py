"""Property-based fuzz of job specs against the real kube-apiserver.

Each example is a mutation of one of the example manifests (wrong types, numbers out of range, random or
odd-Unicode strings where enums and URIs go, fields removed or added, huge strings). It is sent as a
server-side dry-run create with strict field validation (what `kubectl apply --dry-run=server` sends,
without a kubectl process per example). Either the server refuses it with a message that names a field
under spec or metadata, or it accepts it and the pydantic model accepts the server's defaulted object:
the CRD and the models the operator parses with must never disagree in that direction.
"""

from __future__ import annotations

import copy
import json
import re
import ssl
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st

from v2w_api import GROUP, KINDS, VERSION
from v2w_api.base import INPUT_URI, OUTPUT_NAME, S3_URI, STORAGE_URI, python_pattern

from tests.api.cases import BATCH, BEST, SINGLE, load_example

pytestmark = pytest.mark.cluster

EXAMPLES = {name: load_example(name) for name in (SINGLE, BATCH, BEST)}
TRIED = {"accepted": 0, "refused": 0}

# A field path in a server message: `spec.generation.fps: Invalid value`, `unknown field "spec.foo"`,
# `.spec.batch[0].output: field not declared in schema`.
FIELD_IN_MESSAGE = re.compile(r"(^|[\s\"'.(\[])(spec|metadata)([.\[:\"]|\b)")


class DryRun:
    """Creates objects with dryRun=All and fieldValidation=Strict over the admin client certificate."""

    def __init__(self, kube, namespace: str):
        pki = kube.pki
        self.ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self.ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        self.base = f"{kube.server_url}/apis/{GROUP}/{VERSION}/namespaces/{namespace}"

    def create(self, doc: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        plural = KINDS[doc["kind"]][0].plural if doc.get("kind") in KINDS else "video2worldjobs"
        body = json.dumps(doc).encode()
        request = urllib.request.Request(
            f"{self.base}/{plural}?dryRun=All&fieldValidation=Strict", data=body, method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, context=self.ctx, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")


@pytest.fixture(scope="module")
def dry_run(crds_applied):
    name = f"fuzz-{uuid.uuid4().hex[:8]}"
    crds_applied.kubectl("create", "namespace", name)
    yield DryRun(crds_applied, name)
    crds_applied.kubectl("delete", "namespace", name, "--wait=false", check=False)
    print(f"\nspec fuzz: {TRIED['accepted'] + TRIED['refused']} specs tried, "
          f"{TRIED['accepted']} accepted, {TRIED['refused']} refused")


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into a manifest (maps and lists), the root excluded."""
    found = []
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return found
    for key, value in items:
        found.append(prefix + (key,))
        found += paths(value, prefix + (key,))
    return found


def parent_of(doc: dict, path: tuple) -> Any:
    node = doc
    for key in path[:-1]:
        node = node[key]
    return node


# Fields the examples leave out, so the fuzz also reaches them.
EXTRA_FIELDS = [
    ("spec", "generation", "fps"), ("spec", "generation", "numSteps"), ("spec", "generation", "numFrames"),
    ("spec", "generation", "negativePrompt"), ("spec", "model", "checkpoint"), ("spec", "model", "ditPath"),
    ("spec", "model", "dtype"), ("spec", "promptRefiner", "maxNewTokens"), ("spec", "guardrail", "blocklist"),
    ("spec", "parallelism", "gpusPerNode"), ("spec", "parallelism", "cfgParallel"),
    ("spec", "performance", "fastMode"), ("spec", "performance", "stepCacheInterval"),
    ("spec", "output", "endpoint"), ("spec", "output", "region"), ("spec", "output", "cleanupPolicy"),
    ("spec", "scheduling", "cpu"), ("spec", "scheduling", "memory"), ("spec", "scheduling", "nodeSelector"),
    ("spec", "scheduling", "gpuResourceName"), ("spec", "runPolicy", "ttlSecondsAfterFinished"),
    ("spec", "batchUri"), ("spec", "suspend"), ("spec", "input", "negativePrompt"),
]

ODD_TEXT = st.text(
    alphabet=st.sampled_from(
        list("aZ09./-_:?#%") + ["\u00a0", "\u2028", "\u200b", "\ufeff", "\u0130", "\u212a", "\u2024", "\uff0e",
                                 "\u3000", "\x85", "\t", "\n", "é", "日", "\U0001f600", "\x7f", "\x01"]
    ),
    max_size=40,
)
URIS = st.one_of(
    st.from_regex(python_pattern(INPUT_URI), fullmatch=True),
    st.from_regex(python_pattern(STORAGE_URI), fullmatch=True),
    st.from_regex(python_pattern(S3_URI), fullmatch=True),
    st.builds(lambda scheme, tail, suffix: f"{scheme}{tail}{suffix}",
              st.sampled_from(["s3://bucket/", "pvc://claim/", "https://host/", "s3://b/", "pvc://"]),
              ODD_TEXT, st.sampled_from(["", ".jpg", ".mp4", ".JPG", "?x.jpg", ".jpg?x", "/..", "/../x"])),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, 2, 3, 4, 5, 8, 16, 60, 61, 93, 200, 201, 256, 257, 480, 720, 4294967295, 4294967296]),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.sampled_from([0.5, 1.0, 5.0, 93.0, 7.5, 30.0, 30.5, -0.0, 1e300]),
    st.text(max_size=30),
    ODD_TEXT,
    st.from_regex(OUTPUT_NAME, fullmatch=True),
    URIS,
    st.sampled_from(["2B", "14B", "7B", "16:9", "21:9", "bfloat16", "Retain", "Delete", "Exists", "Equal",
                     "NoSchedule", "off", "step_cache", "auto", "flash", "1Gi", "500m", "1.5", "nvidia.com/gpu"]),
    st.integers(min_value=1, max_value=20000).map(lambda n: "x" * n),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.text(max_size=8), SCALARS, max_size=3))


# Values close to valid ones, so that many mutations are accepted and the pydantic side gets exercised.
NEAR_VALUES = st.one_of(
    st.integers(min_value=-1, max_value=300), st.floats(min_value=0, max_value=31), st.booleans(),
    st.sampled_from([1, 2, 4, 5, 8, 93, 480, 720, "float32", "float16", "step_cache", "Delete", "us-east-1",
                     "http://minio:9000", "https://s3.example:443/", "2", "500m", "16Gi", "a.b/c"]),
    URIS, st.lists(st.text(min_size=1, max_size=5), max_size=3),
)


def near(value: Any) -> st.SearchStrategy:
    """A value of the same JSON type as `value`, often valid, sometimes just past a bound."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        # an earlier mutation may have left the value far below zero: the range still reaches past both ends
        return st.one_of(st.integers(min_value=min(-2, value), max_value=max(2 * value + 300, 2)),
                         st.sampled_from([1, 2, 4, 5, 8, 16, 93, 480, 720]))
    if isinstance(value, float):
        return st.floats(min_value=-1, max_value=32, allow_nan=False)
    if isinstance(value, str) and "://" in value:
        return URIS
    if isinstance(value, str):
        return st.one_of(ODD_TEXT.filter(bool), st.from_regex(OUTPUT_NAME, fullmatch=True),
                         st.builds(lambda a, b: a + value + b, ODD_TEXT, ODD_TEXT))
    return VALUES


@st.composite
def mutated_manifests(draw) -> tuple[dict, list[str]]:
    name = draw(st.sampled_from(sorted(EXAMPLES)))
    doc = copy.deepcopy(EXAMPLES[name])
    done = [name]
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        if not isinstance(doc.get("spec"), dict):
            break  # the spec itself was replaced or removed: nothing left to reach into
        # ObjectMeta itself is Kubernetes' business: only spec and the free-form maps under metadata.
        candidates = [p for p in paths(doc) if p[0] == "spec" or p[:2] in (("metadata", "labels"),
                                                                            ("metadata", "annotations"))]
        how = draw(st.sampled_from(["replace", "tweak", "tweak", "delete", "add", "add_known", "add_known"]))
        if how == "add_known":
            path = draw(st.sampled_from(EXTRA_FIELDS))
            node = doc
            for key in path[:-1]:
                if not isinstance(node.get(key), dict):
                    node[key] = {}
                node = node[key]
            node[path[-1]] = draw(st.one_of(VALUES, NEAR_VALUES))
        elif how == "add":
            parents = [p for p in candidates if isinstance(parent_of(doc, p + ("_",)), dict)]
            where = draw(st.sampled_from(parents)) if parents else ("spec",)
            key = draw(st.one_of(st.text(min_size=1, max_size=12), st.sampled_from(["foo", "inputVideo", "Seed"])))
            target = parent_of(doc, where + ("_",))
            target[key] = draw(VALUES)
            path = where + (key,)
        else:
            path = draw(st.sampled_from(candidates))
            parent = parent_of(doc, path)
            if how == "delete":
                del parent[path[-1]]
            elif how == "tweak":
                parent[path[-1]] = draw(near(parent[path[-1]]))
            else:
                parent[path[-1]] = draw(VALUES)
        done.append(f"{how} {'.'.join(map(str, path))}")
    return doc, done


def _with(example: str, path: tuple, value: Any, frames: int | None = None) -> tuple[dict, list[str]]:
    doc = copy.deepcopy(EXAMPLES[example])
    parent_of(doc, path)[path[-1]] = value
    if frames is not None:
        doc["spec"].setdefault("generation", {})["numConditionalFrames"] = frames
    return doc, [example, f"set {'.'.join(map(str, path))} = {value!r}", f"frames {frames}"]


@settings(max_examples=500, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(mutated_manifests())
# Two disagreements the fuzz found, kept as fixed examples: a URI with a Unicode space (RE2's `\s` is
# ASCII only, Rust's Unicode), and a still image with a query string under numConditionalFrames 5.
@example(_with(SINGLE, ("spec", "input", "uri"), "s3://v2w-inputs/a\u00a0b.mp4"))
@example(_with(SINGLE, ("spec", "input", "uri"), "https://host/x\u2028.mp4"))
@example(_with(BATCH, ("spec", "batch", 0, "input"), "pvc://claim/a\x85b.mp4"))
@example(_with(SINGLE, ("spec", "output", "endpoint"), "http://minio\u3000:9000"))
@example(_with(SINGLE, ("spec", "input", "uri"), "s3://v2w-inputs/a.jpg?v=1", frames=5))
@example(_with(BATCH, ("spec", "batch", 1, "input"), "s3://v2w-inputs/a.PNG?x", frames=5))
@example(_with(SINGLE, ("spec", "input", "uri"), "s3://v2w-inputs/a.mp4?x.jpg", frames=5))
def test_server_and_models_agree_on_fuzzed_specs(dry_run: DryRun, case: tuple[dict, list[str]]):
    doc, steps = case
    note(f"mutations: {steps}")
    code, body = dry_run.create(doc)
    if code >= 300:
        TRIED["refused"] += 1
        message = body.get("message", "")
        assert 400 <= code < 500, f"server error {code} for {steps}: {message}"
        assert FIELD_IN_MESSAGE.search(message), f"refusal names no field ({steps}): {message}"
        return
    TRIED["accepted"] += 1
    model = KINDS[body["kind"]][1]
    try:
        model.model_validate(body)
    except Exception as error:  # noqa: BLE001  the disagreement itself is the finding
        pytest.fail(f"server accepted but pydantic refused ({steps}):\n{json.dumps(body['spec'])[:2000]}\n{error}")
