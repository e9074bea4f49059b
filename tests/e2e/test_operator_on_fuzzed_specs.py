"""The operator on the specs the spec fuzz accepts: it never crashes or hot-loops on them.

`tests/cluster/test_spec_fuzz.py` only dry-runs its mutated specs. Here the same strategy is drawn
(derandomized, so the set is reproducible), each distinct spec is really created in one namespace with
the S3 Secret until a bound of accepted ones, and the operator runs on them under the chart's RBAC with a
short poll interval. The real training-operator runs (its validating webhook checks every PyTorchJob, the
strict dry runs below included, and it makes their pods), but no executor runs the pods, so the PyTorchJobs
stay pending: this checks the operator alone.

The control plane is this module's own, with the API server's audit log on, so the operator's requests
can be counted over a quiet window after every job settled: per job they must stay within what the poll
interval implies (at most one read of the PyTorchJob per poll), and no status patch may repeat when nothing
changed. Run alone (the figures go into the reliability note):

    python -m pytest tests/e2e/test_operator_on_fuzzed_specs.py -s
"""

from __future__ import annotations

import http.client
import json
import math
import ssl
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

import stack  # hack/localstack/stack.py
from tests.api.cases import BATCH, BEST, SINGLE
from tests.cluster.test_spec_fuzz import _with, mutated_manifests
from v2w_operator.backends import child, pytorchjob
from v2w_api import GROUP, KINDS, VERSION
from v2w_api.status import Reason
from v2w_operator.config import OperatorConfig
from v2w_operator.handlers import backoff

pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "video2world-operator"
OPERATOR_NS, OPERATOR_SA = "v2w-system", "v2w-operator"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NS}:{OPERATOR_SA}"
NAMESPACE = "fuzz-run"

DRAWN = 650  # hypothesis examples drawn (about 520 distinct); about one in 8 is accepted
MAX_JOBS = 60  # accepted specs created
POLL_SECONDS = 2.0
QUIET_SECONDS = 20.0
SETTLE_TIMEOUT = 60.0
# Steady state per job and poll: one GET of its PyTorchJob. Twice that is allowed before it counts as a loop.
REQUESTS_PER_POLL = 2
# One retry of a job that waits: its Secret read, kopf's progress annotations and wake-up touch, an event.
REQUESTS_PER_TRY = 6
RETRY_REASONS = {Reason.SECRET_MISSING.value, Reason.CLAIM_MISSING.value, Reason.STORAGE_UNREACHABLE.value}


# Fixed cases ahead of the drawn ones, as the fuzz keeps its own: the fuzz seldom draws a boolean for
# spec.suspend, and a suspended job is the one whose status the timer must leave alone.
FIXED = [_with(example, ("spec", "suspend"), True) for example in (SINGLE, BATCH, BEST)]


def drawn_specs(count: int) -> list[tuple[dict, list[str]]]:
    """The fixed cases, then the fuzz's mutated manifests in the order hypothesis draws them; no duplicates."""
    seen: dict[str, tuple[dict, list[str]]] = {json.dumps(case[0], sort_keys=True): case for case in FIXED}

    @settings(max_examples=count, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(mutated_manifests())
    def draw(case: tuple[dict, list[str]]) -> None:
        seen.setdefault(json.dumps(case[0], sort_keys=True), case)

    draw()
    return list(seen.values())


class Api:
    """JSON over one kept-alive HTTPS connection as the admin (client certificate): hundreds of creates
    without a TLS handshake each."""

    def __init__(self, plane: stack.ControlPlane):
        self.ctx = ssl.create_default_context(cafile=str(plane.pki / "ca.crt"))
        self.ctx.load_cert_chain(str(plane.pki / "admin.crt"), str(plane.pki / "admin.key"))
        self.address = ("127.0.0.1", plane.api_port)
        self.connection: http.client.HTTPSConnection | None = None

    def call(self, method: str, path: str, doc: dict | None = None,
             content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
        body = json.dumps(doc).encode() if doc is not None else None
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPSConnection(*self.address, context=self.ctx, timeout=30)
            try:
                self.connection.request(method, path, body=body,
                                        headers={"Content-Type": content_type, "Accept": "application/json"})
                response = self.connection.getresponse()
                return response.status, json.loads(response.read() or b"{}")
            except (http.client.HTTPException, OSError):
                self.connection.close()
                self.connection = None  # the server closed a kept-alive connection: once more on a new one
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def jobs(self, namespace: str) -> dict[str, dict]:
        found = {}
        for names, _ in KINDS.values():
            code, body = self.call("GET", f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{names.plural}")
            assert code == 200, body
            found.update({item["metadata"]["name"]: item for item in body["items"]})
        return found

    def pytorchjobs(self, namespace: str) -> list[dict]:
        code, body = self.call("GET", f"/apis/{pytorchjob.GROUP}/{pytorchjob.VERSION}/"
                                      f"namespaces/{namespace}/{pytorchjob.PLURAL}")
        assert code == 200, body
        return body["items"]


@dataclass(repr=False)
class FuzzRun:
    plane: stack.ControlPlane
    api: Api
    operator: stack.Server
    config: OperatorConfig
    drawn: int = 0
    refused: int = 0
    created: dict[str, list[str]] = field(default_factory=dict)  # job name -> the mutations that made it
    settled_after: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    window: tuple[datetime, datetime] | None = None
    before: dict[str, dict] = field(default_factory=dict)  # the jobs when the quiet window opened
    after: dict[str, dict] = field(default_factory=dict)  # and when it closed
    requests: list[dict] = field(default_factory=list)  # the operator's audit events in the window


def _status(obj: dict) -> dict:
    return obj.get("status") or {}


def _condition(obj: dict, type_: str) -> dict | None:
    return next((c for c in _status(obj).get("conditions") or [] if c.get("type") == type_), None)


def _settled(obj: dict) -> bool:
    """The operator has answered this job: a phase and an Accepted condition (or a Failed one)."""
    status = _status(obj)
    return bool(status.get("phase")) and (_condition(obj, "Accepted") is not None or status["phase"] == "Failed")


def _retrying(obj: dict) -> bool:
    """Waiting for its Secret, a claim or storage: the create handler tries again with backoff."""
    return (_condition(obj, "Accepted") or {}).get("reason") in RETRY_REASONS


def _stamp(event: dict) -> datetime:
    return datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def fuzz_run(localstack_bin, minio, tmp_path_factory) -> FuzzRun:
    workdir = tmp_path_factory.mktemp("fuzz-run")
    # Hypothesis draws while the control plane starts (mostly waiting on child processes).
    drawing = ThreadPoolExecutor(max_workers=1)
    clock = time.monotonic()
    drawn = drawing.submit(drawn_specs, DRAWN)
    plane = stack.ControlPlane(localstack_bin, workdir / "kube", audit=True)
    operator = training_operator = None
    try:
        plane.start()
        stack.install_crds(plane, ROOT)
        training_operator = stack.start_training_operator(plane, workdir / "training-operator")
        kubeconfig = stack.install_operator_identity(plane, CHART, OPERATOR_NS, OPERATOR_SA,
                                                     workdir / "operator.kubeconfig")
        plane.kubectl("create", "namespace", NAMESPACE)
        plane.kubectl("create", "secret", "generic", "v2w-s3", "-n", NAMESPACE,
                      f"--from-literal=AWS_ACCESS_KEY_ID={minio.access_key}",
                      f"--from-literal=AWS_SECRET_ACCESS_KEY={minio.secret_key}")
        s3 = minio.client()
        try:
            s3.create_bucket(Bucket="v2w-results")  # the examples' output bucket: batch jobs store batch.json there
        except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
            pass
        env = {"V2W_POLL_INTERVAL_SECONDS": str(POLL_SECONDS), "V2W_METRICS_PORT": "0",
               "V2W_S3_ENDPOINT": minio.endpoint, "V2W_S3_REGION": minio.region}
        operator = stack.start_operator(kubeconfig, env, workdir / "operator.log")
        run = FuzzRun(plane, Api(plane), operator, OperatorConfig.from_env(env))
        cases = drawn.result()
        run.timings["draw"] = time.monotonic() - clock
        run.drawn = len(cases)
        _wait_for_watches(plane, operator)

        started = time.monotonic()
        for doc, steps in cases:
            if len(run.created) >= MAX_JOBS:
                break
            name = f"fz-{len(run.created) + run.refused:03d}"
            doc = {**doc, "metadata": {**doc["metadata"], "name": name, "namespace": NAMESPACE}}
            plural = KINDS[doc["kind"]][0].plural
            code, _ = run.api.call("POST", f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{plural}"
                                           "?fieldValidation=Strict", doc)
            if code == 201:
                run.created[name] = steps
            else:
                run.refused += 1
        run.timings["create"] = time.monotonic() - started

        # Settled: every job answered, and none but those retrying with backoff written for two polls.
        deadline = time.monotonic() + SETTLE_TIMEOUT
        versions, stable_since = None, time.monotonic()
        while time.monotonic() < deadline and operator.alive():
            jobs = run.api.jobs(NAMESPACE)
            if len(jobs) == len(run.created) and all(_settled(j) for j in jobs.values()):
                now = {n: j["metadata"]["resourceVersion"] for n, j in jobs.items() if not _retrying(j)}
                if now != versions:
                    versions, stable_since = now, time.monotonic()
                elif time.monotonic() - stable_since >= 2 * POLL_SECONDS + 1:
                    break
            time.sleep(0.5)
        run.settled_after = time.monotonic() - started

        run.before = run.api.jobs(NAMESPACE)
        opened = datetime.now(timezone.utc)
        time.sleep(QUIET_SECONDS)
        closed = datetime.now(timezone.utc)
        run.after = run.api.jobs(NAMESPACE)
        run.window = (opened, closed)
        seen: set[str] = set()
        for event in plane.audit_events(user=OPERATOR_USER):
            if event["auditID"] in seen or not opened <= _stamp(event) <= closed:
                continue
            seen.add(event["auditID"])
            run.requests.append(event)
        _report(run)
        (workdir / "jobs.json").write_text(json.dumps({"created": run.created, "jobs": run.after,
                                                       "pytorchjobs": run.api.pytorchjobs(NAMESPACE)}, indent=1))
        yield run
    finally:
        drawing.shutdown(cancel_futures=True)
        if operator:
            operator.stop()
        if training_operator:
            training_operator.stop()
        plane.stop()


def _wait_for_watches(plane: stack.ControlPlane, operator: stack.Server, timeout: float = 60) -> None:
    """Until the operator watches both kinds (its watch requests show in the audit log)."""
    wanted = {names.plural for names, _ in KINDS.values()}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert operator.alive(), operator.log_tail()
        watched = {(e.get("objectRef") or {}).get("resource") for e in plane.audit_events(user=OPERATOR_USER)
                   if e.get("verb") == "watch"}
        if wanted <= watched:
            return
        time.sleep(0.3)
    raise AssertionError(f"the operator did not start watching in {timeout}s:\n{operator.log_tail()}")


def _group(event: dict) -> str:
    ref = event.get("objectRef") or {}
    resource = ref.get("resource", event.get("requestURI", "?"))
    return f"{event['verb']} {resource}{'/' + ref['subresource'] if ref.get('subresource') else ''}"


def _job_of(event: dict) -> str | None:
    """The job an audit event is about: its own object, its status, or its PyTorchJob."""
    ref = event.get("objectRef") or {}
    name = ref.get("name") or ""
    if ref.get("resource") == pytorchjob.PLURAL:
        return name.split("-", 1)[1] if "-" in name else None
    if ref.get("resource") in {names.plural for names, _ in KINDS.values()}:
        return name or None
    return None


def _report(run: FuzzRun) -> None:
    phases = Counter(_status(j).get("phase") for j in run.after.values())
    reasons = Counter((_condition(j, "Accepted") or {}).get("reason") for j in run.after.values())
    groups = Counter(_group(e) for e in run.requests)
    print(f"\noperator on fuzzed specs: {run.drawn} distinct specs drawn, {len(run.created) + run.refused} tried, "
          f"{len(run.created)} accepted and run, {run.refused} refused; settled in {run.settled_after:.1f}s "
          f"(drawn {run.timings['draw']:.1f}s after start, creating {run.timings['create']:.1f}s)")
    print(f"  phases {dict(phases)}; Accepted reasons {dict(reasons)}")
    print(f"  operator requests in {QUIET_SECONDS:.0f}s quiet window (poll {POLL_SECONDS:.0f}s): {len(run.requests)} "
          f"= {len(run.requests) / max(len(run.created), 1):.1f} per job; {dict(sorted(groups.items()))}")


def test_the_fuzz_reached_enough_accepted_specs(fuzz_run: FuzzRun):
    assert len(fuzz_run.created) >= 40, f"only {len(fuzz_run.created)} accepted of {fuzz_run.drawn} drawn"
    assert fuzz_run.refused > 0  # the drawn specs do include refused ones: the API server did validate
    kinds = Counter(j["kind"] for j in fuzz_run.after.values())
    assert set(kinds) == set(KINDS), kinds


def test_the_operator_neither_crashed_nor_logged_a_traceback(fuzz_run: FuzzRun):
    assert fuzz_run.operator.alive(), fuzz_run.operator.log_tail()
    log = fuzz_run.operator.log.read_text(errors="replace")
    assert "Traceback" not in log, log[log.index("Traceback") - 2000:][:6000]


def test_every_job_got_a_status_that_says_why(fuzz_run: FuzzRun):
    pjs = fuzz_run.api.pytorchjobs(NAMESPACE)
    by_owner = Counter(ref["uid"] for pj in pjs for ref in pj["metadata"].get("ownerReferences") or [])
    by_name = {pj["metadata"]["name"]: pj for pj in pjs}
    assert set(fuzz_run.after) == set(fuzz_run.created)
    for name, obj in fuzz_run.after.items():
        steps = fuzz_run.created[name]
        status = _status(obj)
        accepted = _condition(obj, "Accepted")
        assert status.get("phase") in ("Pending", "Suspended", "Failed"), (name, steps, status)
        assert by_owner[obj["metadata"]["uid"]] <= 1, f"{name} has {by_owner[obj['metadata']['uid']]} PyTorchJobs"
        if accepted and accepted["status"] == "True":
            # Nothing runs the pods, so the job waits; a suspended one says so.
            assert status["phase"] == ("Suspended" if obj["spec"].get("suspend") else "Pending"), (name, steps, status)
            assert status.get("pytorchJobName") in by_name, (name, steps, status)
            assert by_owner[obj["metadata"]["uid"]] == 1
            _assert_pytorchjob_is_what_the_operator_builds(fuzz_run, obj, by_name[status["pytorchJobName"]])
        else:
            # Refused by the operator: the reason is one word a script can match, the message says more.
            condition = accepted or _condition(obj, "Failed")
            assert condition and condition["reason"] in {r.value for r in Reason}, (name, steps, status)
            assert status.get("message"), (name, steps, status)
            assert by_owner[obj["metadata"]["uid"]] == 0, (name, steps, status)
            if not (obj["spec"].get("output") or {}).get("credentialsSecret"):
                # The operator has no default Secret here: the message says which field to set.
                assert "spec.output.credentialsSecret" in status["message"], (name, steps, status)


def _assert_pytorchjob_is_what_the_operator_builds(run: FuzzRun, obj: dict, stored: dict) -> None:
    """The PyTorchJob lost nothing to the CRD's pruning, and the same manifest passes a strict dry run."""
    kind, name = obj["kind"], obj["metadata"]["name"]
    spec = KINDS[kind][1].model_validate(obj).spec
    batch_uri = f"{child.output_prefix(spec, NAMESPACE, name)}/batch.json" if getattr(spec, "batch", None) else None
    built = pytorchjob.build(kind, name, NAMESPACE, obj["metadata"]["uid"], spec, run.config, batch_uri)
    assert _no_loss(built["spec"], stored["spec"]), (name, run.created[name], json.dumps(stored["spec"])[:3000])
    built["metadata"]["name"] += "-check"
    code, body = run.api.call("POST", f"/apis/{pytorchjob.GROUP}/{pytorchjob.VERSION}/namespaces/"
                                      f"{NAMESPACE}/{pytorchjob.PLURAL}?dryRun=All&fieldValidation=Strict",
                              built)
    assert code == 201, (name, run.created[name], body.get("message"))


def _no_loss(sent: Any, kept: Any) -> bool:
    if isinstance(sent, dict):
        return isinstance(kept, dict) and all(k in kept and _no_loss(v, kept[k]) for k, v in sent.items())
    if isinstance(sent, list):
        return isinstance(kept, list) and len(sent) == len(kept) and all(_no_loss(a, b) for a, b in zip(sent, kept))
    return sent == kept


def test_no_hot_loop_in_the_quiet_window(fuzz_run: FuzzRun):
    polls = math.ceil(QUIET_SECONDS / POLL_SECONDS) + 1
    per_job = Counter(_job_of(e) for e in fuzz_run.requests)
    retrying = {n for n, j in fuzz_run.after.items() if _retrying(j)}
    for name in fuzz_run.created:
        if name in retrying:
            continue  # checked below against the retry backoff
        assert per_job[name] <= REQUESTS_PER_POLL * polls, (
            f"{name}: {per_job[name]} requests in {QUIET_SECONDS}s at a {POLL_SECONDS}s poll; {fuzz_run.created[name]}")
    # Nothing changed, so no status is written, not even by a retry; and a settled job is not written at all.
    status_writes = Counter(_job_of(e) for e in fuzz_run.requests
                            if e["verb"] in ("patch", "update") and (e.get("objectRef") or {}).get("subresource") == "status")
    assert not status_writes, f"status written again with nothing changed: {dict(status_writes)}"
    settled = set(fuzz_run.created) - retrying
    moved = [n for n in settled if fuzz_run.before[n]["metadata"]["resourceVersion"]
             != fuzz_run.after[n]["metadata"]["resourceVersion"]]
    assert not moved, f"written during the quiet window: {moved}"
    # A job that waits for its Secret or storage retries with the handlers' backoff (5 s, 10 s, 20 s, ...).
    tries = most_tries(QUIET_SECONDS)
    for name in retrying:
        assert per_job[name] <= REQUESTS_PER_TRY * tries, (
            f"{name}: {per_job[name]} requests in {QUIET_SECONDS}s, at most {tries} tries fit; {fuzz_run.created[name]}")
    # Requests about no job in particular (the Secret reads and events of the retries) stay within the same bounds.
    everything = len(fuzz_run.requests)
    assert everything <= REQUESTS_PER_POLL * polls * len(settled) + REQUESTS_PER_TRY * tries * len(retrying), \
        Counter(_group(e) for e in fuzz_run.requests)


def most_tries(window: float) -> int:
    """The most tries of one handler that fit in `window` seconds under the handlers' retry backoff."""
    at, tries = 0.0, 0
    while at <= window:
        at += backoff(tries)
        tries += 1
    return tries


def test_the_operator_still_answers_after_the_fuzz(fuzz_run: FuzzRun):
    """Alive is not enough: resuming a suspended job still reaches its PyTorchJob and its status."""
    name = next(n for n, j in sorted(fuzz_run.after.items()) if _status(j).get("phase") == "Suspended")
    plural = KINDS[fuzz_run.after[name]["kind"]][0].plural
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{plural}/{name}"
    code, body = fuzz_run.api.call("PATCH", path, {"spec": {"suspend": False}}, "application/merge-patch+json")
    assert code == 200, body
    deadline = time.monotonic() + 30
    obj: dict = {}
    while time.monotonic() < deadline:
        _, obj = fuzz_run.api.call("GET", path)
        pj = next((p for p in fuzz_run.api.pytorchjobs(NAMESPACE)
                   if p["metadata"]["name"] == _status(obj).get("pytorchJobName")), None)
        if _status(obj).get("phase") == "Pending" and pj and pj["spec"]["runPolicy"].get("suspend") is False:
            assert (_condition(obj, "Suspended") or {}).get("status") == "False"
            return
        time.sleep(0.5)
    raise AssertionError(f"{name} not resumed in 30s: {_status(obj)}\n{fuzz_run.operator.log_tail(20)}")
