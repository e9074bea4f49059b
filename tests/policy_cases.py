"""One table of jobs and what the platform's policy says about each, for every place that enforces it: the chart's
ValidatingAdmissionPolicy on the real API server (tests/chart/test_admission_policy.py) and the operator
(tests/operator/test_policy.py). Both must refuse exactly the `refused` cases, with the same message."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from v2w_api import KINDS
from v2w_api.policy import InputHostPolicy, JobPolicy

RUNTIME_IMAGE = "video2world/runtime:0.1.0"
# The chart values of the table's policy, and the same policy as the operator reads it.
VALUES: dict[str, Any] = {
    "runtime": {"image": {"repository": "video2world/runtime", "tag": "0.1.0"}},
    "policy": {
        "images": {"allowedPrefixes": ["registry.example.com/video2world", "mirror.example.org/"]},
        "serviceAccounts": {"allowed": ["v2w-runner"]},
        "inputs": {"allowedHosts": ["files.corp.internal", "*.svc.cluster.local"],
                   "allowedCIDRs": ["10.20.0.0/16", "fd00:ec2::/32"]},
    },
}
POLICY = JobPolicy(
    image_prefixes=VALUES["policy"]["images"]["allowedPrefixes"],
    service_accounts=VALUES["policy"]["serviceAccounts"]["allowed"],
    inputs=InputHostPolicy.model_validate(VALUES["policy"]["inputs"]),
)


@dataclass(frozen=True)
class Case:
    name: str
    kind: str
    spec: dict[str, Any]
    refused: bool
    fields: tuple[str, ...] = field(default=())  # the fields a refusal names

    def document(self, namespace: str, name: str) -> dict[str, Any]:
        return {"apiVersion": "video2world.io/v1alpha1", "kind": self.kind,
                "metadata": {"name": name, "namespace": namespace}, "spec": copy.deepcopy(self.spec)}

    def parsed_spec(self) -> Any:
        return KINDS[self.kind][1].model_validate(self.document("ns", "x")).spec

    def python_message(self) -> str | None:
        violations = POLICY.violations(self.parsed_spec(), RUNTIME_IMAGE)
        return "; ".join(str(v) for v in violations) or None


OUTPUT = {"uri": "s3://v2w-results/jobs"}


def _single(uri: str) -> dict[str, Any]:
    return {"input": {"uri": uri, "prompt": "a bus"}, "output": OUTPUT}


# (URI, refused): hosts by address range and by name; the allowed lists above make the exceptions.
INPUT_HOSTS: list[tuple[str, bool]] = [
    ("https://example.com/in.jpg", False),
    ("https://example.com:99999/in.jpg?x=%zz", False),
    ("http://exa_mple.com/in.jpg", False),
    ("http://172.32.0.1/in.jpg", False),
    ("http://[2001:db8::1]/in.jpg", False),
    ("http://[::1.2.3.4]/in.jpg", False),
    ("http://169.254.169.254/latest/meta-data/", True),
    ("http://user:pw@169.254.169.254/in.jpg", True),
    ("http://100.100.100.200/latest/meta-data", True),
    ("http://127.0.0.1:8000/in.jpg", True),
    ("http://0.0.0.0/in.jpg", True),
    ("http://10.0.0.5/in.jpg", True),
    ("http://10.20.3.4/in.jpg", False),
    ("http://172.16.0.1/in.jpg", True),
    ("http://192.168.1.1/in.jpg", True),
    ("http://[::1]:8080/in.jpg", True),
    ("http://[::]/in.jpg", True),
    ("http://[fe80::1]/in.jpg", True),
    ("http://[fd12:3456::1]/in.jpg", True),
    ("http://[fd00:ec2::254]/latest/meta-data", False),
    ("http://[FD00:EC2::254]/latest/meta-data", False),
    ("http://[::ffff:169.254.169.254]/in.jpg", True),
    ("http://metadata.google.internal/computeMetadata/v1/", True),
    ("http://METADATA.Google.Internal./computeMetadata/v1/", True),
    ("http://metadata/computeMetadata/v1/", True),
    ("http://instance-data/latest/", True),
    ("http://localhost:8000/in.jpg", True),
    ("http://app.localhost/in.jpg", True),
    ("http://other.corp.internal/in.jpg", True),
    ("http://files.corp.internal/in.jpg", False),
    ("http://files.corp.internal./in.jpg", False),
    ("http://minio.storage.svc.cluster.local:9000/in.jpg", False),
    ("http://2852039166/in.jpg", True),
    ("http://0xa9fea9fe/in.jpg", True),
    ("http://169.254.169.254./in.jpg", True),
    ("http://a@b@example.com/in.jpg", True),
    ("http://exa%6dple.com/in.jpg", True),
]

CASES: list[Case] = [
    Case(f"input {uri}", "Video2WorldJob", _single(uri), refused, ("spec.input.uri",) if refused else ())
    for uri, refused in INPUT_HOSTS
] + [
    Case("s3 and pvc inputs are not this policy's", "Video2WorldJob",
         {"batch": [{"input": "s3://v2w-inputs/a.jpg", "prompt": "a", "output": "a"},
                    {"input": "pvc://inputs/b.jpg", "prompt": "b", "output": "b"}], "output": OUTPUT}, False),
    Case("the batch entries that are refused, by index", "Video2WorldJob",
         {"batch": [{"input": "https://example.com/a.jpg", "prompt": "a", "output": "a"},
                    {"input": "http://169.254.169.254/b.jpg", "prompt": "b", "output": "b"},
                    {"input": "http://localhost/c.jpg", "prompt": "c", "output": "c"}], "output": OUTPUT},
         True, ("spec.batch[1].input", "spec.batch[2].input")),
    Case("batchUri", "Video2WorldJob", {"batchUri": "http://10.0.0.9/batch.json", "output": OUTPUT}, True,
         ("spec.batchUri",)),
    Case("best-of-N input", "BestOfNJob", _single("http://[fe80::1]/in.jpg"), True, ("spec.input.uri",)),
    Case("best-of-N videosUri", "BestOfNJob",
         {"bestOfN": {"skipGeneration": True, "videosUri": "http://metadata.google.internal/v/"}, "output": OUTPUT},
         True, ("spec.bestOfN.videosUri",)),
    Case("best-of-N fine", "BestOfNJob", _single("https://example.com/in.jpg"), False),
    Case("no image override", "Video2WorldJob", _single("s3://v2w-inputs/a.jpg"), False),
] + [
    Case(f"image {image}", "Video2WorldJob", {**_single("s3://v2w-inputs/a.jpg"), "scheduling": {"image": image}},
         refused, ("spec.scheduling.image",) if refused else ())
    for image, refused in [
        (RUNTIME_IMAGE, False),
        ("video2world/runtime:0.2.0", True),
        ("registry.example.com/video2world", False),
        ("registry.example.com/video2world:0.3.0", False),
        ("registry.example.com/video2world/runtime:0.3.0", False),
        ("registry.example.com/video2world@sha256:" + "a" * 64, False),
        ("registry.example.com/video2world-evil/runtime:1", True),
        ("registry.example.com/other:1", True),
        ("mirror.example.org/anything/at:all", False),
        ("mirror.example.org.evil.io/x:1", True),
        ("docker.io/library/python:3", True),
    ]
] + [
    Case(f"serviceAccountName {sa}", "Video2WorldJob",
         {**_single("s3://v2w-inputs/a.jpg"), "scheduling": {"serviceAccountName": sa}}, refused,
         ("spec.scheduling.serviceAccountName",) if refused else ())
    for sa, refused in [("default", False), ("v2w-runner", False), ("admin", True), ("v2w-operator", True)]
]
