"""The kopf handlers: thin glue between Kubernetes events and the modules that do the work.

Run as the chart does: `kopf run -m v2w_operator.handlers --all-namespaces`, with `--standalone` for one replica
or `--peering=<name>` for several (see "High availability" below).
- create/resume: validate the spec, stage what the pods need (the Secret, an inline batch), create the child
  (a PyTorchJob or a TrainJob: the backend, `backends/`, chosen once at start, says which);
- spec.suspend: suspend or resume the child;
- a follower per job: follow the child and the runtime's progress.json / result.json into the status;
- delete (cleanupPolicy: Delete only): remove the job's results from S3.

Every status is read into its kind's model (`v2w_api.status`), derived as a new model, and only the
top-level keys whose wire form changed are patched.

Live status, one writer. Until its PyTorchJob exists a job's status is written by the create handler (Accepted,
or why not yet); from then on by exactly one code path, the job's follower: a kopf daemon per job that loops
"derive the status, patch what changed, sleep". It sleeps on an asyncio.Event of its own (`wakeups.Wakeups`),
set by the watch: by an event handler on our PyTorchJobs (the owner named in the ownerReference) and by one on
the job itself (acceptance, spec.suspend). So the status follows its PyTorchJob within one pass, not one poll.
Why a daemon and not the PyTorchJob's event handler writing the job: that would be a second writer beside the
poll of progress.json, and concurrent merge patches of `conditions` lose updates; and an annotation "touch" on
the job to wake a handler would cost a write per PyTorchJob event. Events that arrive while a pass runs set the
event once, so a burst costs one more pass (no write storm), and a pass writes only keys that changed: the
wake-up its own write causes writes nothing. The follower keeps the status it wrote (the patch's response)
until the watch has caught up with it, so a pass never works from an older status than its own last write and
never announces a phase twice. S3 cannot be watched: while a job runs, the follower's sleep times out every
`pollIntervalSeconds` to read progress.json; it reads S3 only then or when the PyTorchJob's state changed.

High availability. With `--peering`, kopf's peering elects one acting operator: every replica keeps a
keep-alive in a (Cluster)KopfPeering object, and one that sees a live peer of higher priority pauses (no watch,
no handlers, no daemons) until that peer's keep-alive lapses. The priority is the negated start time, so the
oldest replica acts and a replacement waits instead of taking over a working operator; a developer's operator
run with `--priority` > 0 still pauses them all, as kopf intends. A replica killed without a goodbye is taken
over once its keep-alive lapses: `V2W_PEERING_LIFETIME_SECONDS` (chart `peering.lifetimeSeconds`).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NoReturn

import kopf
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from v2w_api import BEST_OF_N_JOB, GROUP, KINDS, VERSION, VIDEO2WORLD_JOB
from v2w_api.manifest import RESULT_FILE
from v2w_api.pool import Video2WorldPoolSpec
from v2w_api.spec import JobSpecCommon, Video2WorldJobSpec
from v2w_api.status import BestOfNJobStatus, ConditionType, JobStatus, Phase, Reason, Video2WorldJobStatus

from . import backends, kueue, links, metrics, pooling
from .backends import Backend, ChildView
from .backends import child as common
from .backends import lease as leases
from .conditions import set_condition, utcnow
from .config import OperatorConfig
from .credentials import CredentialCache
from .kube import apiextensions, core, custom_objects
from .observe import Observation, as_observed, derive_status
from .s3 import Credentials, JobStorage, StorageError, presign
from .wakeups import Wakeups

CONFIG = OperatorConfig.from_env()
POOLS_PLURAL = "video2worldpools"
ANNOTATION_PREFIX = "video2world.io"
BATCH_FILE = "batch.json"
STATUS_MODELS: dict[str, type[JobStatus]] = {
    VIDEO2WORLD_JOB.kind: Video2WorldJobStatus,
    BEST_OF_N_JOB.kind: BestOfNJobStatus,
}
PLURALS = {VIDEO2WORLD_JOB.kind: VIDEO2WORLD_JOB.plural, BEST_OF_N_JOB.kind: BEST_OF_N_JOB.plural}
WAKEUPS = Wakeups()
KUEUE_VERSION = "v1beta2"  # the Workload version asked for when the watch has not seen it (Kueue 0.15 and later)
# The followers' blocking work (the API, S3) runs here, off the event loop.
FOLLOWERS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="follow")


def _served(backend: backends.Backend) -> bool:
    """Whether the API server serves the backend's child kind (its CRD exists and is Established)."""
    try:
        crd = apiextensions().read_custom_resource_definition(f"{backend.plural}.{backend.group}")
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    versions = {v.name for v in crd.spec.versions or [] if v.served}
    established = any(c.type == "Established" and c.status == "True" for c in (crd.status.conditions or []))
    return established and backend.version in versions


# The kind of child that runs the jobs' pods, chosen once at start (kopf registers its watch below).
BACKEND: backends.Backend = backends.resolve(CONFIG.backend, _served)


def backoff(retry: int) -> float:
    """Seconds before the next try of a 'not yet' condition: 5, 10, 20, … capped at 5 minutes."""
    return min(5.0 * 2 ** retry, 300.0)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, logger: logging.Logger, **indices: Any) -> None:
    # All of kopf's bookkeeping goes into annotations: our status schema is ours alone.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration")
    settings.persistence.finalizer = f"{ANNOTATION_PREFIX}/cleanup"
    settings.posting.level = logging.INFO
    settings.execution.max_workers = 16
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.error_backoffs = [1, 2, 5, 10, 20, 30]
    # kopf logs every successful handler run at INFO; the timer runs every few seconds per job.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # Without Kueue its Workloads are simply not watched: not worth kopf's warning at every CRD change.
    logging.getLogger("kopf._core.reactor.observation").addFilter(_without_kueue_unresolved)
    if not settings.peering.standalone:
        settings.peering.lifetime = CONFIG.peering_lifetime_seconds
        if settings.peering.priority == 0:  # not given by --priority: the oldest replica acts
            settings.peering.priority = -(time.time_ns() // 1000)
    for plural in (VIDEO2WORLD_JOB.plural, BEST_OF_N_JOB.plural):  # live views, filled by the watch
        metrics.JOBS.watch(indices[_summaries_id(plural)])
    metrics.serve(CONFIG.metrics_port)
    logger.info("video2world operator started (backend %s: jobs run as %ss; poll every %ss)", CONFIG.backend,
                BACKEND.kind, CONFIG.poll_interval_seconds)


def _without_kueue_unresolved(record: logging.LogRecord) -> bool:
    """Drop kopf's "Unresolved resources" warning when Kueue's Workloads are all it names."""
    message = record.getMessage()
    if not message.startswith("Unresolved resources"):
        return True
    return message.count("Selector(") != message.count(f"group='{kueue.WORKLOAD_GROUP}'")


# --- status: read into the kind's model, written as the keys that changed -------------------------------

def read_status(kind: str, status: kopf.Status, logger: logging.Logger) -> tuple[JobStatus, dict[str, Any]]:
    """The job's status as its kind's model, and the wire form a new status is compared with.

    An unreadable status (edited by hand, say) reads as an empty one and is compared with what is stored,
    so the next write replaces what could not be read."""
    stored = dict(status)
    try:
        model = STATUS_MODELS[kind].model_validate(stored)
    except ValidationError as exc:
        logger.warning("unreadable status, starting from an empty one: %s",
                       "; ".join(_describe(e) for e in exc.errors()))
        return STATUS_MODELS[kind](), stored
    return model, model.to_wire()


def status_patch(before: dict[str, Any], after: JobStatus) -> dict[str, Any]:
    """The top-level keys whose wire form changed; a key that disappeared is None (a merge patch removes it).

    Nothing changed, nothing written: a settled job costs the API server no request."""
    wire = after.to_wire()
    return {key: wire.get(key) for key in sorted(before.keys() | wire.keys()) if before.get(key) != wire.get(key)}


def write_status(patch: kopf.Patch, before: dict[str, Any], after: JobStatus) -> None:
    """Patch the top-level keys whose wire form changed (through kopf's patch of a handler)."""
    for key, value in status_patch(before, after).items():
        patch.status[key] = value


def _describe(error: Any) -> str:
    loc = ".".join(str(p) for p in error.get("loc", ()))
    return f"{loc}: {error.get('msg')}" if loc else str(error.get("msg"))


# --- the job's spec, credentials, storage and child --------------------------------------------------------

def _parse(kind: str, body: kopf.Body) -> JobSpecCommon:
    model = KINDS[kind][1]
    return model.model_validate({"apiVersion": body["apiVersion"], "kind": kind, "metadata": {},
                                 "spec": dict(body["spec"])}).spec


def _read_credentials(namespace: str, name: str, id_key: str, secret_key: str) -> Credentials:
    data = core().read_namespaced_secret(name, namespace).data or {}
    missing = [k for k in (id_key, secret_key) if k not in data]
    if missing:
        raise KeyError(f"Secret {name} has no key {', '.join(missing)}")
    return Credentials(base64.b64decode(data[id_key]).decode(), base64.b64decode(data[secret_key]).decode())


# Every running job's poll needs its credentials; one read per Secret and minute instead of one per poll.
CREDENTIALS = CredentialCache(_read_credentials, ttl_seconds=60.0)


def _secret_ref(spec: JobSpecCommon) -> tuple[str, str, str] | None:
    """The Secret the job's S3 credentials come from (its name, access key id key, secret key key)."""
    ref = spec.output.credentials_secret
    if ref:
        return ref.name, ref.access_key_id_key, ref.secret_access_key_key
    if CONFIG.credentials_secret:
        return CONFIG.credentials_secret, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"
    return None


def _credentials(spec: JobSpecCommon, namespace: str) -> Credentials | None:
    """The job's S3 credentials from the Secret it names (in its own namespace only)."""
    secret = _secret_ref(spec)
    return CREDENTIALS.get(namespace, *secret) if secret else None


def _forget_credentials(spec: JobSpecCommon, namespace: str) -> None:
    secret = _secret_ref(spec)
    if secret:
        CREDENTIALS.forget(namespace, secret[0])


def _output_prefix(spec: JobSpecCommon, status: JobStatus, namespace: str, name: str) -> str:
    """Where the job's files live: status.outputPrefix once it is set, computed from the spec until then."""
    return status.output_prefix or common.output_prefix(spec, namespace, name) + "/"


def _storage(spec: JobSpecCommon, prefix: str, credentials: Credentials | None) -> JobStorage:
    return JobStorage(prefix, spec.output.endpoint or CONFIG.s3_endpoint, spec.output.region or CONFIG.s3_region,
                      credentials)


def _backend(spec: JobSpecCommon) -> Backend:
    """The kind of the job's child: a Lease for its pool's workers when it names a pool, else the backend's."""
    return leases.BACKEND if spec.pool_ref else BACKEND


def _get_child(namespace: str, name: str, backend: Backend | None = None) -> dict[str, Any] | None:
    """The job's child (of the backend's kind) from the API; None when there is none."""
    backend = backend or BACKEND
    try:
        return custom_objects().get_namespaced_custom_object(backend.group, backend.version, namespace,
                                                             backend.plural, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _safe_error(exc: Exception) -> str:
    if isinstance(exc, ApiException):
        return f"Kubernetes API error {exc.status}"
    return str(exc)


# --- create / resume: validate → stage → create the child -------------------------------------------------

@dataclass
class _Job:
    """What the steps of one create (or resume) share: the job, its status as read, and the patch."""

    kind: str
    body: kopf.Body
    name: str
    namespace: str
    uid: str
    generation: int | None
    status: JobStatus
    stored: dict[str, Any]
    patch: kopf.Patch
    retry: int

    @property
    def child(self) -> str:
        return common.child_name(self.kind, self.name)

    def write(self, **changes: Any) -> None:
        write_status(self.patch, self.stored, self.status.model_copy(update=changes))


def ensure(body: kopf.Body, meta: kopf.Meta, status: kopf.Status, name: str, namespace: str, uid: str,
           patch: kopf.Patch, retry: int, logger: logging.Logger, **_: Any) -> None:
    """Create the child once; safe to run again at any time (create, resume after a restart)."""
    kind = body["kind"]
    current, stored = read_status(kind, status, logger)
    if current.is_terminal:
        return
    job = _Job(kind=kind, body=body, name=name, namespace=namespace, uid=uid, generation=meta.get("generation"),
               status=current, stored=stored, patch=patch, retry=retry)
    if current.child_kind and current.child_kind != BACKEND.kind:
        logger.warning("its %s was made by an operator with another backend; this one (%s) leaves the job alone",
                       current.child_kind, BACKEND.kind)
        return
    spec = _validate(job)
    if current.child and _get_child(namespace, job.child, _backend(spec)):
        return  # accepted before (a resume): from here on the job's follower alone writes its status
    _check_policy(job, spec)
    _check_pool(job, spec)
    _check_claims(job, spec)
    batch_uri = _stage(job, spec)
    _create_child(job, spec, batch_uri, meta.get("creationTimestamp"))
    _accepted(job, spec)


def _validate(job: _Job) -> JobSpecCommon:
    """The job's spec as its model; a spec the models refuse fails the job for good."""
    try:
        return _parse(job.kind, job.body)
    except ValidationError as exc:
        _refuse(job, f"invalid spec: {'; '.join(_describe(e) for e in exc.errors())}")


def _check_policy(job: _Job, spec: JobSpecCommon) -> None:
    """The platform's policy (image, ServiceAccount, input hosts): the admission policy refuses the same at
    apply, but it may be off, or the job older than the policy. Checked only before the child exists, so a
    policy tightened later never fails a job that is already running."""
    violations = CONFIG.policy.violations(spec, CONFIG.runtime_image)
    if violations:
        _refuse(job, "; ".join(str(v) for v in violations), Reason.POLICY_DENIED)


def _check_pool(job: _Job, spec: JobSpecCommon) -> None:
    """A job that names a pool: the pool must exist (else Pending, tried again) and be able to run it (else
    Failed, PoolMismatch, naming each field). Checked only before the Lease exists, as the policy is."""
    if spec.pool_ref is None:
        return
    try:
        found = custom_objects().get_namespaced_custom_object(GROUP, VERSION, job.namespace, POOLS_PLURAL,
                                                              spec.pool_ref)
    except ApiException as exc:
        if exc.status != 404:
            raise
        _retry_later(job, Reason.POOL_NOT_FOUND, f"Video2WorldPool {spec.pool_ref} not found in namespace "
                                                 f"{job.namespace}; create it, or fix spec.poolRef")
    try:
        pool = Video2WorldPoolSpec.model_validate(dict(found.get("spec") or {}))
    except ValidationError as exc:
        _retry_later(job, Reason.POOL_NOT_FOUND, f"Video2WorldPool {spec.pool_ref} has an invalid spec: "
                                                 f"{'; '.join(_describe(e) for e in exc.errors())}")
    prefix = common.output_prefix(spec, job.namespace, job.name)
    # An inline batch is compared as it will run: from the batch.json that staging writes under the prefix.
    run = common.run_config(job.kind, job.name, spec, CONFIG, prefix, f"{prefix}/{BATCH_FILE}")
    fields = pooling.differences(spec.pool_ref, pool, spec, run, CONFIG)
    if fields:
        _refuse(job, pooling.refusal(spec.pool_ref, fields), Reason.POOL_MISMATCH)


def _check_claims(job: _Job, spec: JobSpecCommon) -> None:
    """Every PersistentVolumeClaim the pods mount must exist in the job's namespace: without one the pods
    would wait unscheduled and the job would only read "waiting for pods to start"."""
    missing = []
    for claim in sorted(common.volume_claims(spec, CONFIG)):
        try:
            core().read_namespaced_persistent_volume_claim(claim, job.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            missing.append(claim)
    if missing:
        names = ", ".join(missing)
        _retry_later(job, Reason.CLAIM_MISSING,
                     f"PersistentVolumeClaim{'s' if len(missing) > 1 else ''} {names} not found in namespace "
                     f"{job.namespace} (pvc://<claim>/ URIs name claims of the job's own namespace); create "
                     f"{'them' if len(missing) > 1 else 'it'}")


def _stage(job: _Job, spec: JobSpecCommon) -> str | None:
    """What the pods need before they exist: the job's Secret, and its inline batch stored as batch.json.

    Returns the batch's S3 URI (None without an inline batch)."""
    try:
        credentials = _credentials(spec, job.namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        ref = spec.output.credentials_secret
        _retry_later(job, Reason.SECRET_MISSING, f"Secret {ref.name if ref else CONFIG.credentials_secret} not found "
                                                 f"in namespace {job.namespace}; create it")
    except KeyError as exc:
        _retry_later(job, Reason.SECRET_MISSING, str(exc.args[0]))
    if not isinstance(spec, Video2WorldJobSpec) or spec.batch is None:
        return None
    prefix = _output_prefix(spec, job.status, job.namespace, job.name)
    try:
        return _storage(spec, prefix, credentials).write_json(BATCH_FILE, common.batch_json(spec))
    except StorageError as exc:
        message = str(exc)
        if credentials is None:
            # No Secret named anywhere: the operator tried its own environment and found nothing.
            message += ("; the job names no credentials Secret: set spec.output.credentialsSecret "
                        "(or the chart's s3.credentialsSecret)")
        _retry_later(job, Reason.STORAGE_UNREACHABLE, message)


def _create_child(job: _Job, spec: JobSpecCommon, batch_uri: str | None, created: str | None) -> None:
    """Create the child, owned by the job; one that is there already and ours is as good."""
    backend = _backend(spec)
    try:
        manifest = backend.build(job.kind, job.name, job.namespace, job.uid, spec, CONFIG, batch_uri)
    except common.Unbuildable as exc:
        _refuse(job, str(exc))
    try:
        custom_objects().create_namespaced_custom_object(backend.group, backend.version, job.namespace,
                                                         backend.plural, manifest)
    except ApiException as exc:
        if exc.status == 404:
            _retry_later(job, Reason.CHILD_CRD_MISSING, backend.install_hint)
        if exc.status != 409:
            raise
        found = _get_child(job.namespace, job.child, backend)
        owners = [o.get("uid") for o in ((found or {}).get("metadata") or {}).get("ownerReferences") or []]
        if found is not None and job.uid not in owners:
            _retry_later(job, Reason.CHILD_CREATED, f"a {backend.kind} named {job.child} exists and is not "
                                                     "owned by this job; waiting for it to go")
        return
    if spec.pool_ref:
        kopf.info(job.body, reason=Reason.CHILD_CREATED.value,
                  message=f"created Lease {job.child} for a worker of pool {spec.pool_ref}")
        return
    metrics.PYTORCHJOBS_CREATED.labels(job.kind).inc()
    if created:
        age = datetime.now(timezone.utc) - datetime.fromisoformat(created.replace("Z", "+00:00"))
        metrics.TIME_TO_PYTORCHJOB.labels(job.kind).observe(max(age.total_seconds(), 0.0))
    kopf.info(job.body, reason=Reason.CHILD_CREATED.value, message=f"created {BACKEND.kind} {job.child}")


def _accepted(job: _Job, spec: JobSpecCommon) -> None:
    """Accepted: the child exists; a new job is Pending (or Suspended, when created so)."""
    backend = _backend(spec)
    message = f"{backend.kind} {job.child} created"
    if spec.pool_ref:
        message += f"; waiting for a worker of pool {spec.pool_ref}"
    changes: dict[str, Any] = {"child_kind": backend.kind, "child_name": job.child,
                               # the field of releases before the TrainJob backend, kept for a PyTorchJob's readers
                               "pytorch_job_name": job.child if backend.kind == backends.PYTORCHJOB.kind else None,
                               "observed_generation": job.generation,
                               "output_prefix": _output_prefix(spec, job.status, job.namespace, job.name)}
    conditions = set_condition(job.status.conditions, ConditionType.ACCEPTED, True, Reason.CHILD_CREATED,
                               message, job.generation)
    if job.status.phase in (None, Phase.PENDING):
        phase = Phase.SUSPENDED if spec.suspend else Phase.PENDING
        if spec.suspend:
            message += " suspended; set spec.suspend to false to start it"
            conditions = set_condition(conditions, ConditionType.SUSPENDED, True, Reason.SUSPENDED, message,
                                       job.generation)
        changes.update(phase=phase, message=message)
    job.write(conditions=conditions, **changes)


def _refuse(job: _Job, message: str, reason: Reason = Reason.INVALID_SPEC) -> NoReturn:
    """A spec that will never work (invalid, or refused by the platform's policy): Failed, and no retry."""
    _not_accepted(job, reason, message, Phase.FAILED)
    raise kopf.PermanentError(message)


def _retry_later(job: _Job, reason: Reason, message: str) -> NoReturn:
    """Not yet (a Secret, the CRD, S3 missing): Pending, tried again with backoff."""
    _not_accepted(job, reason, message, Phase.PENDING)
    raise kopf.TemporaryError(message, delay=backoff(job.retry))


def _not_accepted(job: _Job, reason: Reason, message: str, phase: Phase) -> None:
    conditions = set_condition(job.status.conditions, ConditionType.ACCEPTED, False, reason, message, job.generation)
    if phase == Phase.FAILED:
        conditions = set_condition(conditions, ConditionType.FAILED, True, reason, message, job.generation)
    job.write(phase=phase, message=message, observed_generation=job.generation, conditions=conditions)
    kopf.warn(job.body, reason=reason.value, message=message)
    metrics.RECONCILE_ERRORS.labels(job.kind, reason.value).inc()


# --- spec.suspend -------------------------------------------------------------------------------------------

def set_suspend(body: kopf.Body, name: str, namespace: str, old: Any, new: Any, retry: int, **_: Any) -> None:
    """Mirror spec.suspend onto the child (its controller stops or restarts its pods); onto its Kueue Workload
    instead when Kueue manages it (see kueue.py)."""
    if old is None and not new:
        return  # the initial value: the child is created with it
    kind = body["kind"]
    child = common.child_name(kind, name)
    try:
        spec: JobSpecCommon | None = _parse(kind, body)
    except ValidationError:
        spec = None
    backend = _backend(spec) if spec is not None else BACKEND
    found = _get_child(namespace, child, backend)
    if found is None:
        return  # not created yet: it will be created with the current spec.suspend
    seen = backend.view(found)
    if seen.queue and _set_workload_active(namespace, seen, not new, retry):
        what = "deactivated" if new else "activated"
        kopf.info(body, reason=(Reason.SUSPENDED if new else Reason.RESUMED).value,
                  message=f"{what} the Kueue Workload of {BACKEND.kind} {child}")
        return
    # A pooled job is the pool's, never Kueue's.
    queue = common.queue_name(spec, CONFIG) if spec is not None and not spec.pool_ref else None
    if queue and not new and not seen.queue and seen.suspended and _kueue_installed(namespace):
        # Created suspended, without the queue label: handed to Kueue now, still suspended; Kueue starts it.
        change: dict[str, Any] = {"metadata": {"labels": {kueue.QUEUE_LABEL: queue}}}
        message = f"resumed {BACKEND.kind} {child}: queued in LocalQueue {queue}"
    else:
        change = backend.suspend_patch(bool(new))
        message = f"{'suspended' if new else 'resumed'} {backend.kind} {child}"
    _patch_child(namespace, child, change, backend)
    kopf.info(body, reason=(Reason.SUSPENDED if new else Reason.RESUMED).value, message=message)


def _patch_child(namespace: str, name: str, change: dict[str, Any], backend: Backend | None = None) -> None:
    backend = backend or BACKEND
    try:
        custom_objects().patch_namespaced_custom_object(backend.group, backend.version, namespace, backend.plural,
                                                        name, change)
    except ApiException as exc:
        if exc.status != 404:
            raise


def _set_workload_active(namespace: str, seen: ChildView, active: bool, retry: int) -> bool:
    """Set spec.active of the child's Workload (Kueue evicts and suspends an inactive one, and queues it
    again once active). False when Kueue is not installed (no Workload CRD): the label alone does nothing then.

    Read from the API, not the watch: Kueue replaces a Workload whose child changed, so the one the watch
    last saw may be on its way out."""
    workloads = _list_workloads(namespace, seen)
    if workloads is None:
        return False  # no Kueue here
    live = [w for w in workloads if not w["deleting"]]
    if not live:
        raise kopf.TemporaryError(f"waiting for Kueue to create the Workload of {seen.kind} {seen.name}",
                                  delay=min(1.0 + retry, 10.0))
    for workload in live:
        if workload["active"] != active:
            _patch_workload(namespace, workload["name"], active)
    return True


def _list_workloads(namespace: str, seen: ChildView) -> list[dict[str, Any]] | None:
    """The Workloads Kueue made for a child, from the API (summaries, by Kueue's job-uid label); None when
    Kueue is not installed."""
    uid = seen.uid
    try:
        found = custom_objects().list_namespaced_custom_object(
            kueue.WORKLOAD_GROUP, KUEUE_VERSION, namespace, kueue.WORKLOAD_PLURAL,
            label_selector=f"{kueue.JOB_UID_LABEL}={uid}") if uid else {}
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return [kueue.summary(w) for w in found.get("items") or []
            if kueue.owner_child(w, BACKEND.kind, BACKEND.group) == seen.name]


def _kueue_installed(namespace: str) -> bool:
    """Whether Kueue's Workloads are served (without Kueue the queue label is inert: nothing would unsuspend)."""
    try:
        custom_objects().list_namespaced_custom_object(kueue.WORKLOAD_GROUP, KUEUE_VERSION, namespace,
                                                       kueue.WORKLOAD_PLURAL, limit=1)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _patch_workload(namespace: str, name: str, active: bool) -> None:
    try:
        custom_objects().patch_namespaced_custom_object(kueue.WORKLOAD_GROUP, KUEUE_VERSION, namespace,
                                                        kueue.WORKLOAD_PLURAL, name, {"spec": {"active": active}})
    except ApiException as exc:
        if exc.status != 404:  # gone (replaced by Kueue): the follower deactivates its successor
            raise


# --- the follower: child and runtime files → status (the one writer once the job is accepted) ----------

@dataclass
class Files:
    """What the runtime's files said at the last read: reused by the passes in between, so a pass that reads
    nothing derives the same status as the one that read."""

    state: str | None = None  # the child's state at that read
    at: float = float("-inf")  # time.monotonic() of that read
    progress: Any = None
    result: Any = None
    result_uri: str | None = None
    storage_error: str | None = None

    def due(self, state: str, now: float) -> bool:
        return state != self.state or now - self.at >= CONFIG.poll_interval_seconds

    def into(self, obs: Observation) -> None:
        obs.progress, obs.result, obs.result_uri = self.progress, self.result, self.result_uri
        obs.storage_error = self.storage_error


@dataclass
class Pass:
    """One pass of a follower: the status as read, as derived, and the keys to patch."""

    current: JobStatus
    new: JobStatus
    patch: dict[str, Any]

    @property
    def announce(self) -> bool:
        return self.new.phase != self.current.phase


def sync(body: kopf.Body, status: dict[str, Any], name: str, namespace: str, logger: logging.Logger,
         child_seen: ChildView | None = None, files: Files | None = None,
         workload_seen: dict[str, Any] | None = None) -> Pass | None:
    """Derive the job's status from its child (as the watch last saw it, else a GET) and the runtime's files.

    None while the job has no child (the create handler writes its status until then)."""
    kind = body["kind"]
    current, stored = read_status(kind, status, logger)
    if not current.child:
        return None
    if current.child_kind and current.child_kind not in (BACKEND.kind, leases.KIND):
        return None  # made by an operator with another backend: this one cannot follow it (README: "Backends")
    try:
        spec = _parse(kind, body)
    except ValidationError:
        return None  # the create handler reported it
    if current.is_terminal:  # nothing moves a finished job; only its links are renewed before they end
        new = _with_links(current, current, spec, namespace, logger)
        return Pass(current, new, status_patch(stored, new))
    if spec.pool_ref:  # a Lease's state moves with the clock (an expired claim): read afresh at every pass
        seen = _lease_view(namespace, current.child, spec.run_policy.backoff_limit)
    else:
        seen = child_seen if child_seen is not None else _view(namespace, current.child)
    backend = _backend(spec)
    obs = Observation(generation=(body.get("metadata") or {}).get("generation"), child=seen,
                      child_was_created=True, child_kind=backend.kind, suspend_requested=spec.suspend,
                      backoff_limit=backend.backoff_limit(spec, CONFIG), workload=workload_seen)
    if seen is not None and workload_seen is None and seen.held_by_kueue:
        # The watch has not seen it (yet, or it does not watch: see the README's "Kueue"): Kueue's words all the same.
        obs.workload = kueue.current(_list_workloads(namespace, seen) or [])
    if seen is not None:
        files = files if files is not None else Files()
        state, now = as_observed(seen, spec.suspend).state, time.monotonic()
        if files.due(state, now):
            prefix = _output_prefix(spec, current, namespace, name)
            _read_runtime_files(obs, state, spec, namespace, prefix)
            files.state, files.at = state, now
            files.progress, files.result, files.result_uri = obs.progress, obs.result, obs.result_uri
            files.storage_error = obs.storage_error
        files.into(obs)
    if (spec.suspend and seen is not None and seen.queue and obs.workload and obs.workload["active"]
            and not obs.workload["deleting"]):
        # The user's suspend stands, and Kueue made a Workload afresh (it replaces one whose child changed)
        # or the deactivation was lost: deactivate it, or Kueue would admit and start the job.
        _patch_workload(namespace, obs.workload["name"], False)
    new = _with_links(current, derive_status(current, obs), spec, namespace, logger)
    return Pass(current, new, status_patch(stored, new))


@dataclass
class Follower:
    """The state one job's follower keeps between passes."""

    kind: str
    name: str
    namespace: str
    files: Files
    written: dict[str, Any] | None = None  # the status this follower last wrote, until the watch has it
    written_version: str | None = None

    def status(self, body: dict[str, Any]) -> dict[str, Any]:
        """The status to derive from: the watched one, or this follower's last write while the watch lags it."""
        if self.written_version is not None and _not_older(
                str((body.get("metadata") or {}).get("resourceVersion")), self.written_version):
            self.written, self.written_version = None, None
        return self.written if self.written is not None else dict(body.get("status") or {})

    def step(self, body: dict[str, Any], child_seen: ChildView | None, logger: logging.Logger,
             workload_seen: dict[str, Any] | None = None) -> Pass | None:
        """One pass (in a thread): derive, and patch the status subresource with what changed."""
        done = sync(kopf.Body(body), self.status(body), self.name, self.namespace, logger, child_seen,
                    self.files, workload_seen)
        if done is not None and done.patch:
            response = custom_objects().patch_namespaced_custom_object_status(
                GROUP, VERSION, self.namespace, PLURALS[self.kind], self.name, {"status": done.patch})
            self.written = dict(response.get("status") or {})
            self.written_version = (response.get("metadata") or {}).get("resourceVersion")
        return done


def _not_older(version: str, than: str) -> bool:
    """Whether the watched object is at least the version this follower wrote (resourceVersions are etcd
    revisions in practice; anything else only counts when equal)."""
    if version.isdigit() and than.isdigit():
        return int(version) >= int(than)
    return version == than


def _sleep_for(done: Pass | None) -> float | None:
    """How long a follower may sleep when nothing wakes it: a poll while the job runs (progress.json cannot be
    watched) or links may come due; no timeout while it waits for acceptance or has finished."""
    if done is None:
        return None
    if done.new.is_terminal:
        return CONFIG.poll_interval_seconds if CONFIG.links_public_endpoint else None
    return CONFIG.poll_interval_seconds


async def follow(body: kopf.Body, name: str, namespace: str, stopped: Any, logger: logging.Logger,
                 children: kopf.Index | None = None, workloads: kopf.Index | None = None, **_: Any) -> None:
    """The job's follower (a daemon): a pass whenever the watch wakes it, or a poll is due."""
    kind = body["kind"]
    key = (kind, namespace, name)
    wake = WAKEUPS.open(key)
    follower = Follower(kind, name, namespace, Files())
    loop = asyncio.get_running_loop()
    try:
        while not stopped:
            snapshot = copy.deepcopy(dict(body))  # the live body changes under a thread otherwise
            child = common.child_name(kind, name)
            seen, workload = _watched(children, namespace, child), _watched_workload(workloads, namespace, child)
            try:
                done = await loop.run_in_executor(
                    FOLLOWERS, functools.partial(follower.step, snapshot, seen, logger, workload))
            except (ApiException, StorageError, OSError) as exc:
                # Mostly the API server briefly away: the next pass, at the latest a poll later, tries again.
                logger.warning("status not updated: %s", _safe_error(exc))
                follower.written, follower.written_version = None, None
                await WAKEUPS.sleep(wake, stopped, CONFIG.poll_interval_seconds)
                continue
            if done is not None and done.announce and done.patch:
                _announce(kind, snapshot, namespace, name, done.new)
            await WAKEUPS.sleep(wake, stopped, _sleep_for(done))
    finally:
        WAKEUPS.close(key, wake)


async def child_changed(meta: kopf.Meta, namespace: str, **_: Any) -> None:
    """A child of ours changed (the index already has it): wake its job's follower."""
    for owner in meta.get("ownerReferences") or []:
        if str(owner.get("apiVersion", "")).startswith(f"{GROUP}/") and owner.get("kind") in PLURALS:
            WAKEUPS.wake((owner["kind"], namespace, owner["name"]))


async def job_changed(body: kopf.Body, name: str, namespace: str, **_: Any) -> None:
    """The job changed (accepted by the create handler, spec.suspend, or the follower's own write, which the
    follower's next pass finds nothing to do about): wake its follower."""
    WAKEUPS.wake((body["kind"], namespace, name))


def _with_links(previous: JobStatus, new: JobStatus, spec: JobSpecCommon, namespace: str,
                logger: logging.Logger) -> JobStatus:
    """`new` with HTTPS links to its results, when the platform asks for them: the ones `previous` had, or fresh
    ones (signed with the job's own credentials, locally) where they are missing or near their end."""
    if not CONFIG.links_public_endpoint:
        return new
    kept = links.keep(previous, new)
    now = utcnow()
    if not links.due(kept, now, CONFIG.links_ttl_seconds):
        return kept
    try:
        credentials = _credentials(spec, namespace)
        region = spec.output.region or CONFIG.s3_region
        return links.attach(kept, lambda uri: presign(uri, CONFIG.links_public_endpoint, region, credentials,
                                                      CONFIG.links_ttl_seconds), now, CONFIG.links_ttl_seconds)
    except (StorageError, ApiException, KeyError) as exc:
        logger.warning("no links for now: %s", _safe_error(exc))  # the s3:// URIs are there; try at the next poll
        return kept


def _watched(index: kopf.Index | None, namespace: str, name: str) -> ChildView | None:
    """The child as the watch last saw it (an immutable view); None when the watch has not seen it (yet, or any
    more): the pass GETs it then."""
    store = index.get((namespace, name)) if index is not None else None
    return next(iter(store), None) if store else None


def _view(namespace: str, name: str) -> ChildView | None:
    found = _get_child(namespace, name)
    return BACKEND.view(found) if found is not None else None


def _lease_view(namespace: str, name: str, backoff_limit: int) -> ChildView | None:
    """A pooled job's Lease as the status reads it. Free again after as many claims as the job allows, it gets
    its outcome from the operator (the workers do not know the job's backoffLimit); a claim in between wins."""
    found = _get_child(namespace, name, leases.BACKEND)
    if found is None:
        return None
    now = datetime.now(timezone.utc)
    if leases.backoff_exhausted(found, backoff_limit, now):
        try:
            found = custom_objects().patch_namespaced_custom_object(
                leases.BACKEND.group, leases.BACKEND.version, namespace, leases.BACKEND.plural, name,
                leases.backoff_patch(found))
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise
            return _lease_view(namespace, name, backoff_limit) if exc.status == 409 else None
    return leases.view(found, now)


def _watched_workload(index: kopf.Index | None, namespace: str, child: str) -> dict[str, Any] | None:
    """The Kueue Workload of a child as the watch last saw it (a copy; the current one while Kueue replaces it);
    None without one (or without Kueue)."""
    store = index.get((namespace, child)) if index is not None else None
    found = kueue.current(list(store)) if store else None
    return copy.deepcopy(found) if found is not None else None


def _read_runtime_files(obs: Observation, state: str, spec: JobSpecCommon, namespace: str, prefix: str) -> None:
    """progress.json while pods run, and result.json once they are done, into the observation."""
    if state not in ("Running", "Restarting", "Succeeded", "Failed"):
        return
    try:
        storage = _storage(spec, prefix, _credentials(spec, namespace))
        if state in ("Succeeded", "Failed"):
            obs.result = storage.result()
            obs.result_uri = storage.uri(RESULT_FILE) if obs.result else None
        obs.progress = storage.progress()
    except (StorageError, ApiException, KeyError, ValueError) as exc:
        obs.storage_error = _safe_error(exc)
        _forget_credentials(spec, namespace)  # a rotated Secret is read again at the next poll


def _announce(kind: str, body: dict[str, Any], namespace: str, name: str, status: JobStatus) -> None:
    """A new phase: an Event, and for a finished job its duration."""
    phase = status.phase.value if status.phase else None
    message = status.message or phase
    if status.phase == Phase.FAILED:
        kopf.warn(body, reason=phase, message=message)
    else:
        kopf.info(body, reason=phase, message=message)
    if status.is_terminal and status.start_time and status.completion_time:
        seconds = (status.completion_time - status.start_time).total_seconds()
        metrics.JOB_DURATION.labels(kind, phase).observe(max(seconds, 0.0))


# --- delete (cleanupPolicy: Delete) -------------------------------------------------------------------------

def cleanup(body: kopf.Body, status: kopf.Status, name: str, namespace: str, retry: int, logger: logging.Logger,
            **_: Any) -> None:
    """cleanupPolicy: Delete — remove the job's results before the job goes."""
    kind = body["kind"]
    spec = _parse(kind, body)
    prefix = _output_prefix(spec, read_status(kind, status, logger)[0], namespace, name)
    try:
        deleted = _storage(spec, prefix, _credentials(spec, namespace)).delete_all()
    except (StorageError, ApiException, KeyError) as exc:
        if retry >= 5:
            logger.warning("giving up deleting the results of %s/%s: %s", namespace, name, _safe_error(exc))
            return
        raise kopf.TemporaryError(_safe_error(exc), delay=backoff(retry))
    logger.info("deleted %d result objects of %s/%s", deleted, namespace, name)


def _wants_cleanup(spec: kopf.Spec, **_: Any) -> bool:
    return (spec.get("output") or {}).get("cleanupPolicy") == "Delete"


# --- registration -------------------------------------------------------------------------------------------

# One watch on our children (of the backend's kind) replaces a GET per job and poll: the followers read each
# child's view from here.
@kopf.index(BACKEND.group, BACKEND.version, BACKEND.plural, labels={common.LABEL_MANAGED_BY: common.MANAGED_BY},
            id="children")
def child_views(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[Any, Any]:
    return {(namespace, name): BACKEND.view(copy.deepcopy(dict(body)))}


# Indices are updated before handlers run, so the follower this wakes finds the child's new state there.
kopf.on.event(BACKEND.group, BACKEND.version, BACKEND.plural, labels={common.LABEL_MANAGED_BY: common.MANAGED_BY},
              id="wake-owner")(child_changed)


# Pooled jobs' Leases: a claim, a release or an outcome wakes the job's follower (which reads the Lease afresh).
kopf.on.event(leases.BACKEND.group, leases.BACKEND.version, leases.BACKEND.plural,
              labels={common.LABEL_MANAGED_BY: common.MANAGED_BY}, id="wake-owner-of-lease")(child_changed)


# Kueue's Workloads (when Kueue is installed; kopf watches nothing while the CRD is not served): why a queued
# job waits, and the Workload a suspend deactivates. Keyed by the child that owns each one.
@kopf.index(kueue.WORKLOAD_GROUP, kueue.WORKLOAD_PLURAL, id="workloads")
def workloads(body: kopf.Body, namespace: str, **_: Any) -> dict[Any, Any] | None:
    owner = kueue.owner_child(body, BACKEND.kind, BACKEND.group)
    if owner is None or common.parent_of(owner) is None:
        return None  # not one of ours
    return {(namespace, owner): kueue.summary(dict(body))}


@kopf.on.event(kueue.WORKLOAD_GROUP, kueue.WORKLOAD_PLURAL, id="wake-owner-of-workload")
async def workload_changed(body: kopf.Body, namespace: str, **_: Any) -> None:
    """A Workload changed (created, admitted, evicted…; the index already has it): wake its job's follower."""
    owner = kueue.owner_child(body, BACKEND.kind, BACKEND.group)
    parent = common.parent_of(owner) if owner else None
    if parent is not None:
        WAKEUPS.wake((parent[0], namespace, parent[1]))


def _summaries_id(plural: str) -> str:
    return f"summaries_{plural}"


def job_summary(body: kopf.Body, namespace: str, name: str, spec: kopf.Spec, status: kopf.Status,
                **_: Any) -> dict[Any, Any]:
    """Each job as the metrics see it, kept current by the watch (deleted jobs leave the index)."""
    return {(namespace, name): metrics.summarize(body["kind"], spec, status)}


def _register(plural: str) -> None:
    """The same handlers for each kind; each finds its kind in the body. Explicit ids: kopf stores handler
    state in annotations named after them."""
    # The id keeps its old name whatever the backend: kopf keeps each handler's progress under it.
    kopf.on.resume(GROUP, VERSION, plural, id="create-pytorchjob")(ensure)
    kopf.on.create(GROUP, VERSION, plural, id="create-pytorchjob")(ensure)
    kopf.on.field(GROUP, VERSION, plural, field="spec.suspend", id="suspend")(set_suspend)
    # An error here is mostly the API server or S3 being briefly away: try again at the next poll, not
    # after kopf's default minute, so a restarted API server does not leave statuses a minute behind.
    # The one writer of an accepted job's status; stopped at once (it only sleeps between passes).
    kopf.daemon(GROUP, VERSION, plural, id="follow", cancellation_timeout=5.0,
                backoff=CONFIG.poll_interval_seconds)(follow)
    kopf.on.event(GROUP, VERSION, plural, id="wake-follower")(job_changed)
    kopf.on.delete(GROUP, VERSION, plural, when=_wants_cleanup, id="delete-results")(cleanup)
    kopf.index(GROUP, VERSION, plural, id=_summaries_id(plural))(job_summary)


for _names in (VIDEO2WORLD_JOB, BEST_OF_N_JOB):
    _register(_names.plural)


# The pools of warm workers (Video2WorldPool): their own reconciler.
from . import pools  # noqa: E402  (after CONFIG, which it reads)

pools.register()
