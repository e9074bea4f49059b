"""The Video2WorldPool's reconciler: keeps the pool's workers (Deployment, ServiceAccount, RoleBinding) as its spec
says, and its status as the workers and the pool's job Leases say.

- create/resume/update: server-side apply of the three children (`workers.py` builds them), owned by the pool:
  a new replicas count scales the Deployment (0 stops every worker), any other change rolls it;
- a timer per pool: ready workers (the Deployment's ready pods), busy workers (holders of live claims on the
  pool's Leases), the queue (Leases any worker may claim), written to the status only when they changed; a
  Deployment deleted behind the pool's back is made again.
The pool's status has one writer: that timer.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from v2w_api import GROUP, VERSION, VIDEO2WORLD_POOL
from v2w_api.lease import LABEL_POOL, LEASE_GROUP, LEASE_VERSION, LeaseState
from v2w_api.pool import PoolCondition, Video2WorldPoolSpec, Video2WorldPoolStatus

from . import metrics, workers
from .config import OperatorConfig
from .kube import api_client, custom_objects

FIELD_MANAGER = "video2world-operator"
STATUS_EVERY_SECONDS = 2.0
LEASES = "leases"


def parse_spec(spec: Any) -> Video2WorldPoolSpec:
    return Video2WorldPoolSpec.model_validate(dict(spec))


def children(name: str, namespace: str, uid: str, spec: Video2WorldPoolSpec,
             config: OperatorConfig) -> list[dict[str, Any]]:
    """What the pool owns, in the order it is applied (the ServiceAccount before the pods that run as it)."""
    if not config.pool_worker_cluster_role:
        raise ValueError("the operator has no pool worker ClusterRole configured (V2W_POOL_WORKER_CLUSTER_ROLE; the "
                         "chart sets it)")
    return [workers.service_account(name, namespace, uid),
            workers.role_binding(name, namespace, uid, config.pool_worker_cluster_role),
            workers.deployment(name, namespace, uid, spec, config)]


def _apply(doc: dict[str, Any]) -> None:
    """Server-side apply: creates the object or makes it what we built (fields we no longer set go)."""
    meta = doc["metadata"]
    kwargs = dict(field_manager=FIELD_MANAGER, force=True, _content_type="application/apply-patch+yaml")
    api = api_client()
    if doc["kind"] == "Deployment":
        client.AppsV1Api(api).patch_namespaced_deployment(meta["name"], meta["namespace"], doc, **kwargs)
    elif doc["kind"] == "ServiceAccount":
        client.CoreV1Api(api).patch_namespaced_service_account(meta["name"], meta["namespace"], doc, **kwargs)
    elif doc["kind"] == "RoleBinding":
        client.RbacAuthorizationV1Api(api).patch_namespaced_role_binding(meta["name"], meta["namespace"], doc,
                                                                          **kwargs)
    else:  # pragma: no cover - workers.py builds only these
        raise ValueError(f"unexpected kind {doc['kind']}")


def _condition(type_: str, status: bool, reason: str, message: str, generation: int | None,
               previous: list[PoolCondition], now: datetime) -> PoolCondition:
    value = "True" if status else "False"
    before = next((c for c in previous if c.type == type_), None)
    moved = before is None or before.status != value
    return PoolCondition(type=type_, status=value, reason=reason, message=message,
                         last_transition_time=now if moved else before.last_transition_time,
                         observed_generation=generation)


def derive_status(previous: Video2WorldPoolStatus, name: str, wanted: int, generation: int | None,
                  deployment: dict[str, Any] | None, leases: list[dict[str, Any]], now: datetime) -> Video2WorldPoolStatus:
    """The pool's status from its Deployment (None: not there yet) and its job Leases. Pure."""
    dep = (deployment or {}).get("status") or {}
    states = [LeaseState.of(lease) for lease in leases]
    busy = len({s.holder for s in states if s.held(now) and s.outcome is None})
    queue = sum(1 for s in states if s.claimable(now))
    ready = int(dep.get("readyReplicas") or 0)
    updated = int(dep.get("updatedReplicas") or 0)
    rolled = (deployment is not None and (dep.get("observedGeneration") or 0) >= (deployment.get("metadata") or {})
              .get("generation", 0) and updated >= wanted)
    if wanted == 0:
        ready_cond = (True, "ScaledToZero", f"scaled to 0 workers; {queue} job(s) wait for replicas > 0"
                      if queue else "scaled to 0 workers")
    elif deployment is None:
        ready_cond = (False, "NoDeployment", f"the workers' Deployment {workers.resource_name(name)} does not exist "
                      "yet (see the pool's events)")
    elif ready >= wanted and rolled:
        ready_cond = (True, "WorkersReady", f"{ready} of {wanted} workers ready, {busy} busy, {queue} job(s) waiting")
    else:
        ready_cond = (False, "WorkersStarting", f"{ready} of {wanted} workers ready (loading models or starting)")
    progressing = not rolled and deployment is not None and wanted > 0
    conditions = [
        _condition("Ready", ready_cond[0], ready_cond[1], ready_cond[2], generation, previous.conditions, now),
        _condition("Progressing", progressing, "RollingOut" if progressing else "Settled",
                   "replacing workers with the current spec" if progressing else "every worker runs the current spec",
                   generation, previous.conditions, now),
    ]
    return Video2WorldPoolStatus(replicas=int(dep.get("replicas") or 0), ready_replicas=ready, busy_workers=busy,
                                 queue_length=queue, selector=workers.selector(name),
                                 deployment_name=workers.resource_name(name), conditions=conditions,
                                 observed_generation=generation, message=ready_cond[2])


def _read_deployment(name: str, namespace: str) -> dict[str, Any] | None:
    try:
        found = client.AppsV1Api(api_client()).read_namespaced_deployment(workers.resource_name(name), namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return api_client().sanitize_for_serialization(found)


def list_leases(pool: str, namespace: str) -> list[dict[str, Any]]:
    """The Leases of the pool's jobs (labelled with the pool)."""
    found = custom_objects().list_namespaced_custom_object(LEASE_GROUP, LEASE_VERSION, namespace, LEASES,
                                                           label_selector=f"{LABEL_POOL}={pool}")
    return list(found.get("items") or [])


# --- kopf handlers --------------------------------------------------------------------------------------------

def _config() -> OperatorConfig:
    from .handlers import CONFIG  # the one configuration the operator read at start
    return CONFIG


def _read_status(status: Any) -> Video2WorldPoolStatus:
    try:
        return Video2WorldPoolStatus.model_validate(dict(status or {}))
    except ValidationError:
        return Video2WorldPoolStatus()


def apply_workers(spec: kopf.Spec, meta: kopf.Meta, name: str, namespace: str, uid: str, logger: logging.Logger,
                  **_: Any) -> None:
    """Make the workers what the spec says (idempotent: create, resume and every spec change)."""
    try:
        pool = parse_spec(spec)
        docs = children(name, namespace, uid, pool, _config())
    except (ValidationError, ValueError) as exc:
        # Said in an Event; the status (its one writer is the timer) reads "no Deployment".
        message = f"cannot run the pool's workers: {exc}"
        kopf.warn(body_of(meta, name, namespace), reason="InvalidSpec", message=message)
        raise kopf.PermanentError(message)
    for doc in docs:
        _apply(doc)
    logger.info("pool %s/%s: %d worker(s) of %s %sp applied", namespace, name, pool.replicas, pool.model.size,
                pool.generation.resolution)


def body_of(meta: kopf.Meta, name: str, namespace: str) -> dict[str, Any]:
    """Enough of the pool for an Event to name it."""
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": VIDEO2WORLD_POOL.kind,
            "metadata": {"name": name, "namespace": namespace, "uid": meta.get("uid")}}


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _write_status(patch: kopf.Patch, stored: Any, new: Video2WorldPoolStatus) -> None:
    before, wire = dict(stored or {}), new.to_wire()
    for key in sorted(before.keys() | wire.keys()):
        if before.get(key) != wire.get(key):
            patch.status[key] = wire.get(key)


def observe(spec: kopf.Spec, meta: kopf.Meta, name: str, namespace: str, uid: str, status: kopf.Status,
            patch: kopf.Patch, **_: Any) -> None:
    """The pool's status from its Deployment and Leases; written only where it changed."""
    try:
        pool = parse_spec(spec)
    except ValidationError:
        return  # apply_workers reported it
    wanted = pool.replicas
    deployment = _read_deployment(name, namespace)
    if deployment is None and _config().pool_worker_cluster_role:
        # Deleted behind the pool's back (or never made, the API server away at the time): made again.
        for doc in children(name, namespace, uid, pool, _config()):
            _apply(doc)
        deployment = _read_deployment(name, namespace)
    leases = list_leases(name, namespace)
    previous = _read_status(status)
    new = derive_status(previous, name, wanted, meta.get("generation"), deployment, leases, _now())
    # A condition's time moves only with its status: an unchanged pool writes nothing.
    _write_status(patch, status, new)


def pool_summary(namespace: str, name: str, status: kopf.Status, **_: Any) -> dict[Any, Any]:
    """Each pool as the metrics see it (deleted pools leave the index)."""
    return {(namespace, name): metrics.summarize_pool(namespace, name, status)}


def watch_pools(**indices: Any) -> None:
    metrics.POOLS.watch(indices[POOL_SUMMARIES])


def register() -> None:
    plural = VIDEO2WORLD_POOL.plural
    kopf.on.resume(GROUP, VERSION, plural, id="apply-workers")(apply_workers)
    kopf.on.create(GROUP, VERSION, plural, id="apply-workers")(apply_workers)
    kopf.on.update(GROUP, VERSION, plural, field="spec", id="apply-workers")(apply_workers)
    kopf.timer(GROUP, VERSION, plural, interval=STATUS_EVERY_SECONDS, id="pool-status")(observe)
    kopf.index(GROUP, VERSION, plural, id=POOL_SUMMARIES)(pool_summary)
    kopf.on.startup(id="watch-pools")(watch_pools)


POOL_SUMMARIES = "summaries_video2worldpools"
