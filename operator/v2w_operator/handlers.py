"""The kopf handlers: thin glue between Kubernetes events and the modules that do the work.

Run as the chart does: `kopf run --standalone -m v2w_operator.handlers --all-namespaces`.
- create/resume: validate the spec, check the Secret, store an inline batch, create the PyTorchJob;
- spec.suspend: suspend or resume the PyTorchJob;
- a timer: follow the PyTorchJob and the runtime's progress.json / result.json into the status;
- delete (cleanupPolicy: Delete only): remove the job's results from S3.
"""

from __future__ import annotations

import base64
import copy
import logging
from datetime import datetime, timezone
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from . import metrics, pytorchjob
from .api import BEST_OF_N_JOB, GROUP, KINDS, VERSION, VIDEO2WORLD_JOB, KindNames
from .api.manifest import RESULT_FILE
from .api.spec import JobSpecCommon, Video2WorldJobSpec
from .api.status import Phase, Reason
from .conditions import set_condition
from .config import OperatorConfig
from .credentials import CredentialCache
from .kube import core, custom_objects
from .observe import Observation, derive_status, pytorchjob_state
from .s3 import Credentials, JobStorage, StorageError

CONFIG = OperatorConfig.from_env()
ANNOTATION_PREFIX = "video2world.io"
BATCH_FILE = "batch.json"


def backoff(retry: int) -> float:
    """Seconds before the next try of a 'not yet' condition: 5, 10, 20, … capped at 5 minutes."""
    return min(5.0 * 2 ** retry, 300.0)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, logger: logging.Logger, **_: Any) -> None:
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
    metrics.serve(CONFIG.metrics_port)
    logger.info("video2world operator started (poll every %ss)", CONFIG.poll_interval_seconds)


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


def _storage(spec: JobSpecCommon, namespace: str, name: str, credentials: Credentials | None) -> JobStorage:
    return JobStorage(pytorchjob.output_prefix(spec, namespace, name), spec.output.endpoint or CONFIG.s3_endpoint,
                      spec.output.region or CONFIG.s3_region, credentials)


def _not_accepted(patch: kopf.Patch, status: dict, generation: int | None, reason: Reason, message: str) -> None:
    new = {
        "phase": Phase.PENDING.value,
        "message": message,
        "observedGeneration": generation,
        "conditions": set_condition(status.get("conditions") or [], "Accepted", False, reason.value, message,
                                    generation),
    }
    # Only what changed: a job that waits for its Secret is retried with backoff, and each retry would
    # otherwise write the same status again.
    for key, value in new.items():
        if status.get(key) != value:
            patch.status[key] = value


def _get_pytorchjob(namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return custom_objects().get_namespaced_custom_object(
            pytorchjob.PYTORCHJOB_GROUP, pytorchjob.PYTORCHJOB_VERSION, namespace, pytorchjob.PYTORCHJOB_PLURAL, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def ensure(kind: str, body: kopf.Body, meta: kopf.Meta, status: kopf.Status, name: str, namespace: str, uid: str,
           patch: kopf.Patch, retry: int, logger: logging.Logger) -> None:
    """Create the PyTorchJob once; safe to run again at any time (create, resume after a restart)."""
    status = dict(status)
    generation = meta.get("generation")
    if status.get("phase") in (Phase.SUCCEEDED.value, Phase.FAILED.value):
        return
    try:
        spec = _parse(kind, body)
    except ValidationError as exc:
        message = f"invalid spec: {'; '.join(_describe(e) for e in exc.errors())}"
        patch.status["phase"] = Phase.FAILED.value
        patch.status["message"] = message
        patch.status["observedGeneration"] = generation
        conditions = set_condition(status.get("conditions") or [], "Accepted", False, Reason.INVALID_SPEC.value,
                                   message, generation)
        patch.status["conditions"] = set_condition(conditions, "Failed", True, Reason.INVALID_SPEC.value, message,
                                                   generation)
        kopf.warn(body, reason=Reason.INVALID_SPEC.value, message=message)
        metrics.RECONCILE_ERRORS.labels(kind, Reason.INVALID_SPEC.value).inc()
        raise kopf.PermanentError(message)

    child = pytorchjob.child_name(kind, name)
    existing = _get_pytorchjob(namespace, child) if status.get("pytorchJobName") else None
    if existing is None:
        try:
            credentials = _credentials(spec, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            ref = spec.output.credentials_secret
            message = f"Secret {ref.name if ref else CONFIG.credentials_secret} not found in namespace {namespace}; create it"
            return _retry_later(kind, body, patch, status, generation, Reason.SECRET_MISSING, message, retry)
        except KeyError as exc:
            return _retry_later(kind, body, patch, status, generation, Reason.SECRET_MISSING, str(exc.args[0]), retry)

        batch_uri = None
        if isinstance(spec, Video2WorldJobSpec) and spec.batch is not None:
            try:
                batch_uri = _storage(spec, namespace, name, credentials).write_json(BATCH_FILE, pytorchjob.batch_json(spec))
            except StorageError as exc:
                message = str(exc)
                if credentials is None:
                    # No Secret named anywhere: the operator tried its own environment and found nothing.
                    message += ("; the job names no credentials Secret: set spec.output.credentialsSecret "
                                "(or the chart's s3.credentialsSecret)")
                return _retry_later(kind, body, patch, status, generation, Reason.STORAGE_UNREACHABLE, message, retry)

        manifest = pytorchjob.build(kind, name, namespace, uid, spec, CONFIG, batch_uri)
        try:
            custom_objects().create_namespaced_custom_object(
                pytorchjob.PYTORCHJOB_GROUP, pytorchjob.PYTORCHJOB_VERSION, namespace, pytorchjob.PYTORCHJOB_PLURAL,
                manifest)
            metrics.PYTORCHJOBS_CREATED.labels(kind).inc()
            created = meta.get("creationTimestamp")
            if created:
                age = datetime.now(timezone.utc) - datetime.fromisoformat(created.replace("Z", "+00:00"))
                metrics.TIME_TO_PYTORCHJOB.labels(kind).observe(max(age.total_seconds(), 0.0))
            kopf.info(body, reason=Reason.PYTORCHJOB_CREATED.value, message=f"created PyTorchJob {child}")
        except ApiException as exc:
            if exc.status == 404:
                message = "the PyTorchJob CRD (kubeflow.org/v1) is not installed; install the Kubeflow training-operator"
                return _retry_later(kind, body, patch, status, generation, Reason.PYTORCHJOB_CRD_MISSING, message, retry)
            if exc.status != 409:
                raise
            found = _get_pytorchjob(namespace, child)
            owners = [o.get("uid") for o in ((found or {}).get("metadata") or {}).get("ownerReferences") or []]
            if found is not None and uid not in owners:
                message = f"a PyTorchJob named {child} exists and is not owned by this job; waiting for it to go"
                return _retry_later(kind, body, patch, status, generation, Reason.PYTORCHJOB_CREATED, message, retry)

    message = f"PyTorchJob {child} created"
    patch.status["pytorchJobName"] = child
    patch.status["outputPrefix"] = pytorchjob.output_prefix(spec, namespace, name) + "/"
    patch.status["observedGeneration"] = generation
    conditions = set_condition(status.get("conditions") or [], "Accepted", True, Reason.PYTORCHJOB_CREATED.value,
                               message, generation)
    if not status.get("phase") or status.get("phase") == Phase.PENDING.value:
        phase = Phase.SUSPENDED.value if spec.suspend else Phase.PENDING.value
        if spec.suspend:
            message += " suspended; set spec.suspend to false to start it"
            conditions = set_condition(conditions, "Suspended", True, Reason.SUSPENDED.value, message, generation)
        patch.status["phase"] = phase
        patch.status["message"] = message
        metrics.observe_phase(kind, namespace, name, phase)
    patch.status["conditions"] = conditions


def _retry_later(kind: str, body: kopf.Body, patch: kopf.Patch, status: dict, generation: int | None,
                 reason: Reason, message: str, retry: int) -> None:
    _not_accepted(patch, status, generation, reason, message)
    kopf.warn(body, reason=reason.value, message=message)
    metrics.RECONCILE_ERRORS.labels(kind, reason.value).inc()
    raise kopf.TemporaryError(message, delay=backoff(retry))


def _describe(error: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in error.get("loc", ()))
    return f"{loc}: {error.get('msg')}" if loc else str(error.get("msg"))


def set_suspend(kind: str, body: kopf.Body, name: str, namespace: str, new: Any, logger: logging.Logger) -> None:
    """Mirror spec.suspend onto the PyTorchJob (the training-operator stops or restarts its pods)."""
    child = pytorchjob.child_name(kind, name)
    try:
        custom_objects().patch_namespaced_custom_object(
            pytorchjob.PYTORCHJOB_GROUP, pytorchjob.PYTORCHJOB_VERSION, namespace, pytorchjob.PYTORCHJOB_PLURAL, child,
            {"spec": {"runPolicy": {"suspend": bool(new)}}})
    except ApiException as exc:
        if exc.status == 404:
            return  # not created yet: it will be created with the current spec.suspend
        raise
    reason = Reason.SUSPENDED if new else Reason.RESUMED
    kopf.info(body, reason=reason.value, message=f"{'suspended' if new else 'resumed'} PyTorchJob {child}")


def _watched_pytorchjob(index: kopf.Index | None, namespace: str, name: str) -> dict[str, Any] | None:
    """The PyTorchJob as the watch last saw it; a GET when the watch has not seen it (yet, or any more)."""
    store = index.get((namespace, name)) if index is not None else None
    found = next(iter(store), None) if store else None
    return found if found is not None else _get_pytorchjob(namespace, name)


def sync(kind: str, body: kopf.Body, meta: kopf.Meta, status: kopf.Status, name: str, namespace: str,
         patch: kopf.Patch, logger: logging.Logger, pytorchjobs: kopf.Index | None = None) -> None:
    """Follow the PyTorchJob and the runtime's files into the status."""
    status = dict(status)
    phase = status.get("phase")
    if not status.get("pytorchJobName") or phase in (Phase.SUCCEEDED.value, Phase.FAILED.value):
        return
    try:
        spec = _parse(kind, body)
    except ValidationError:
        return  # the create handler reported it
    pj = _watched_pytorchjob(pytorchjobs, namespace, status["pytorchJobName"])
    obs = Observation(generation=meta.get("generation"), pytorchjob=pj, pytorchjob_was_created=True,
                      suspend_requested=spec.suspend)
    if pj is not None:
        state, _ = pytorchjob_state(pj)
        if state in ("Running", "Restarting", "Succeeded", "Failed"):
            try:
                storage = _storage(spec, namespace, name, _credentials(spec, namespace))
                if state in ("Succeeded", "Failed"):
                    obs.result = storage.result()
                    obs.result_uri = storage.uri(RESULT_FILE) if obs.result else None
                obs.progress = storage.progress()
            except (StorageError, ApiException, KeyError, ValueError) as exc:
                obs.storage_error = _safe_error(exc)
                _forget_credentials(spec, namespace)  # a rotated Secret is read again at the next poll
    new = derive_status(status, obs, kind)
    for key, value in new.items():
        if status.get(key) != value:
            patch.status[key] = value
    new_phase = new.get("phase", phase)
    if new_phase != phase:
        _announce(kind, body, namespace, name, phase, new_phase, new, status)


def _forget_credentials(spec: JobSpecCommon, namespace: str) -> None:
    secret = _secret_ref(spec)
    if secret:
        CREDENTIALS.forget(namespace, secret[0])


def _safe_error(exc: Exception) -> str:
    if isinstance(exc, ApiException):
        return f"Kubernetes API error {exc.status}"
    return str(exc)


def _announce(kind: str, body: kopf.Body, namespace: str, name: str, old: str | None, new: str,
              status: dict[str, Any], previous: dict[str, Any]) -> None:
    metrics.observe_phase(kind, namespace, name, new)
    message = status.get("message") or new
    if new == Phase.FAILED.value:
        kopf.warn(body, reason=new, message=message)
    else:
        kopf.info(body, reason=new, message=message)
    if new in (Phase.SUCCEEDED.value, Phase.FAILED.value):
        start = status.get("startTime") or previous.get("startTime")
        end = status.get("completionTime")
        if start and end:
            seconds = (datetime.fromisoformat(end.replace("Z", "+00:00")) -
                       datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()
            metrics.JOB_DURATION.labels(kind, new).observe(max(seconds, 0.0))


def cleanup(kind: str, body: kopf.Body, name: str, namespace: str, retry: int, logger: logging.Logger) -> None:
    """cleanupPolicy: Delete — remove the job's results before the job goes."""
    spec = _parse(kind, body)
    try:
        deleted = _storage(spec, namespace, name, _credentials(spec, namespace)).delete_all()
    except (StorageError, ApiException, KeyError) as exc:
        if retry >= 5:
            logger.warning("giving up deleting the results of %s/%s: %s", namespace, name, _safe_error(exc))
            return
        raise kopf.TemporaryError(_safe_error(exc), delay=backoff(retry))
    logger.info("deleted %d result objects of %s/%s", deleted, namespace, name)


def _wants_cleanup(spec: kopf.Spec, **_: Any) -> bool:
    return (spec.get("output") or {}).get("cleanupPolicy") == "Delete"


def _register(names: KindNames) -> None:
    kind, plural = names.kind, names.plural

    # Explicit ids: kopf stores handler state in annotations named after them.
    @kopf.on.resume(GROUP, VERSION, plural, id="create-pytorchjob")
    @kopf.on.create(GROUP, VERSION, plural, id="create-pytorchjob")
    def create_pytorchjob(**kwargs: Any) -> None:
        ensure(kind, **_pick(kwargs, "body", "meta", "status", "name", "namespace", "uid", "patch", "retry", "logger"))

    @kopf.on.field(GROUP, VERSION, plural, field="spec.suspend", id="suspend")
    def suspend_changed(old: Any, new: Any, **kwargs: Any) -> None:
        if old is None and not new:
            return  # the initial value: the PyTorchJob is created with it
        set_suspend(kind, new=new, **_pick(kwargs, "body", "name", "namespace", "logger"))

    # An error here is mostly the API server or S3 being briefly away: try again at the next poll, not
    # after kopf's default minute, so a restarted API server does not leave statuses a minute behind.
    @kopf.timer(GROUP, VERSION, plural, interval=CONFIG.poll_interval_seconds, initial_delay=1.0,
                backoff=CONFIG.poll_interval_seconds, id="follow")
    def follow(**kwargs: Any) -> None:
        sync(kind, **_pick(kwargs, "body", "meta", "status", "name", "namespace", "patch", "logger", "pytorchjobs"))

    @kopf.on.delete(GROUP, VERSION, plural, when=_wants_cleanup, id="delete-results")
    def delete_results(**kwargs: Any) -> None:
        cleanup(kind, **_pick(kwargs, "body", "name", "namespace", "retry", "logger"))


def _pick(kwargs: dict[str, Any], *names: str) -> dict[str, Any]:
    return {n: kwargs[n] for n in names}


# One watch on our PyTorchJobs replaces a GET per job and poll: the timers read the PyTorchJob from here.
@kopf.index(pytorchjob.PYTORCHJOB_GROUP, pytorchjob.PYTORCHJOB_VERSION, pytorchjob.PYTORCHJOB_PLURAL,
            labels={pytorchjob.LABEL_MANAGED_BY: pytorchjob.MANAGED_BY}, id="pytorchjobs")
def pytorchjobs(namespace: str, name: str, meta: kopf.Meta, status: kopf.Status, **_: Any) -> dict[Any, Any]:
    return {(namespace, name): {"metadata": {"name": name, "namespace": namespace, "uid": meta.get("uid")},
                                "status": copy.deepcopy(dict(status))}}


for _names in (VIDEO2WORLD_JOB, BEST_OF_N_JOB):
    _register(_names)
