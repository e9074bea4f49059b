"""A pool worker's side of the pooled job's Lease (`v2w_api.lease`): find a free one, claim it, renew it, let go.

Every write is a PUT with the resourceVersion the worker read, so two workers that race for one Lease cannot
both win: the API server answers the slower one 409 Conflict, and it moves on to the next Lease. The worker
talks to the API server as its pod's ServiceAccount (in-cluster configuration), which may only get, list,
watch and update Leases in its own namespace.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from v2w_api.lease import (ANNOTATION_EXIT_CODE, ANNOTATION_MESSAGE, ANNOTATION_OUTCOME, ANNOTATION_STARTED,
                           LABEL_POOL, LeaseState, micro_time)

log = logging.getLogger("v2w_runtime.worker")

# Where the service-account token and CA are when they are not at the fixed in-cluster paths: the local
# stack's kubelet stand-in runs pods as processes and cannot mount /var/run/secrets. Read only when set.
SERVICEACCOUNT_DIR_ENV = "V2W_SERVICEACCOUNT_DIR"
MESSAGE_MAX = 1024  # a Lease message is one short line


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def load_incluster_api():
    """The API client of the pod's ServiceAccount (token and CA from the projected volume, server from
    KUBERNETES_SERVICE_HOST/PORT)."""
    from kubernetes import client, config
    from kubernetes.config import incluster_config

    folder = os.environ.get(SERVICEACCOUNT_DIR_ENV)
    configuration = client.Configuration()
    if folder:
        incluster_config.InClusterConfigLoader(token_filename=str(Path(folder) / "token"),
                                               cert_filename=str(Path(folder) / "ca.crt")).load_and_set(configuration)
    else:
        config.load_incluster_config(client_configuration=configuration)
    return client.ApiClient(configuration)


class RenewResult(str, Enum):
    RENEWED = "renewed"
    DELETED = "deleted"  # 404: the job (and with it its Lease) is gone
    SUSPENDED = "suspended"  # the job was suspended: stop, let go without an outcome
    LOST = "lost"  # another worker holds it now (ours expired)
    FAILED = "failed"  # the API server did not answer: try again at the next tick


@dataclass
class Claim:
    """A Lease this worker holds: its name, the run's arguments, and the resourceVersion of our last write."""

    name: str
    run_args: list[str]
    resource_version: str
    transitions: int
    job_name: str | None = None


def _single_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MESSAGE_MAX else line[: MESSAGE_MAX - 3] + "..."


class LeaseClient:
    """The Leases of one pool in one namespace, as worker `identity` (its pod name) sees and writes them."""

    def __init__(self, api_client: Any, namespace: str, pool: str, identity: str, duration_seconds: int) -> None:
        from kubernetes import client

        self.api = client.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.pool = pool
        self.identity = identity
        self.duration_seconds = duration_seconds
        self.listed_version: str | None = None

    # -- reading --------------------------------------------------------------------------------------------
    def _get(self, name: str) -> dict | None:
        from kubernetes.client.exceptions import ApiException

        try:
            response = self.api.read_namespaced_lease(name, self.namespace, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return json.loads(response.data)

    def list(self) -> list[dict]:
        response = self.api.list_namespaced_lease(self.namespace, label_selector=self.selector,
                                                  _preload_content=False)
        data = json.loads(response.data)
        self.listed_version = (data.get("metadata") or {}).get("resourceVersion")
        return data.get("items") or []

    @property
    def selector(self) -> str:
        return f"{LABEL_POOL}={self.pool}"

    def wait_for_change(self, timeout: float) -> None:
        """Waits up to `timeout` seconds for any change to the pool's Leases since the last list (a new job, a
        release): a watch from the listed resourceVersion, so that a change in between is not missed."""
        from kubernetes import watch

        if not self.listed_version:
            time.sleep(timeout)
            return
        stream = watch.Watch()
        try:
            for _ in stream.stream(self.api.list_namespaced_lease, self.namespace, label_selector=self.selector,
                                   resource_version=self.listed_version, timeout_seconds=max(1, int(timeout)),
                                   _request_timeout=timeout + 5):
                break
        except Exception as exc:  # 410 Gone (the version is too old) or the API server away: list again
            log.debug("watching the pool's leases: %s", exc)
            time.sleep(min(timeout, 0.5))
        finally:
            stream.stop()

    def claimable(self, now: datetime | None = None) -> list[dict]:
        """The pool's free Leases, oldest first (creation time, then name): the queue is the Leases themselves."""
        now = now or utcnow()
        free = [lease for lease in self.list() if LeaseState.of(lease).claimable(now)]
        return sorted(free, key=lambda lease: (lease["metadata"].get("creationTimestamp") or "",
                                               lease["metadata"]["name"]))

    # -- writing --------------------------------------------------------------------------------------------
    def _put(self, lease: dict) -> dict | None:
        """PUT with the resourceVersion read; None on 409 (someone wrote it since) or 404 (it is gone)."""
        from kubernetes.client.exceptions import ApiException

        try:
            response = self.api.replace_namespaced_lease(lease["metadata"]["name"], self.namespace, lease,
                                                         _preload_content=False)
        except ApiException as exc:
            if exc.status in (404, 409):
                return None
            raise
        return json.loads(response.data)

    def claim(self, now: datetime | None = None) -> Claim | None:
        """Claims the oldest free Lease this worker wins; None when there is none (or others won them all)."""
        for lease in self.claimable(now):
            claim = self.try_claim(lease)
            if claim is not None:
                return claim
        return None

    def try_claim(self, lease: dict) -> Claim | None:
        now = utcnow()
        state = LeaseState.of(lease)
        if not state.claimable(now) or not state.run_args:
            return None
        spec = lease.setdefault("spec", {})
        spec.update(holderIdentity=self.identity, acquireTime=micro_time(now), renewTime=micro_time(now),
                    leaseTransitions=state.transitions + 1)
        spec.setdefault("leaseDurationSeconds", self.duration_seconds)
        notes = lease["metadata"].setdefault("annotations", {})
        notes.setdefault(ANNOTATION_STARTED, now.strftime("%Y-%m-%dT%H:%M:%SZ"))
        notes.pop(ANNOTATION_MESSAGE, None)  # a message of an earlier attempt's release
        written = self._put(lease)
        if written is None:
            return None
        labels = written["metadata"].get("labels") or {}
        return Claim(name=state.name, run_args=state.run_args, resource_version=written["metadata"]["resourceVersion"],
                     transitions=state.transitions + 1, job_name=labels.get("video2world.io/job-name"))

    def renew(self, claim: Claim) -> RenewResult:
        """Renews the claim, or says why it cannot be: the job is gone or suspended, or another worker has it."""
        from kubernetes.client.exceptions import ApiException

        try:
            for _ in range(3):
                lease = self._get(claim.name)
                if lease is None:
                    return RenewResult.DELETED
                state = LeaseState.of(lease)
                if state.holder != self.identity or state.outcome is not None:
                    return RenewResult.LOST
                if state.suspended:
                    return RenewResult.SUSPENDED
                lease["spec"]["renewTime"] = micro_time(utcnow())
                written = self._put(lease)
                if written is not None:
                    claim.resource_version = written["metadata"]["resourceVersion"]
                    return RenewResult.RENEWED
                # 409: the operator wrote it in between (suspend, say): read it again
            return RenewResult.FAILED
        except (ApiException, OSError) as exc:
            log.warning("renewing lease %s failed: %s", claim.name, getattr(exc, "status", None) or exc)
            return RenewResult.FAILED
        except Exception as exc:  # urllib3's errors when the API server is away
            log.warning("renewing lease %s failed: %s", claim.name, type(exc).__name__)
            return RenewResult.FAILED

    def release(self, claim: Claim, outcome: str | None = None, exit_code: int | None = None,
                message: str | None = None) -> bool:
        """Lets go of the Lease, with the run's outcome (Succeeded / Failed) or without one (another worker
        may take it). False when it is gone or no longer ours (nothing to write)."""
        for _ in range(5):
            lease = self._get(claim.name)
            if lease is None:
                return False
            state = LeaseState.of(lease)
            if state.holder != self.identity:
                return False
            spec = lease["spec"]
            spec.pop("holderIdentity", None)
            spec.pop("renewTime", None)
            spec.pop("acquireTime", None)
            notes = lease["metadata"].setdefault("annotations", {})
            if outcome is not None:
                notes[ANNOTATION_OUTCOME] = outcome
                if exit_code is not None:
                    notes[ANNOTATION_EXIT_CODE] = str(exit_code)
            if message:
                notes[ANNOTATION_MESSAGE] = _single_line(message)
            if self._put(lease) is not None:
                return True
        return False


__all__ = ["Claim", "LeaseClient", "RenewResult", "SERVICEACCOUNT_DIR_ENV", "load_incluster_api"]
