"""HTTPS links a person can click: presigned URLs next to the s3:// URIs of a job's status.

The operator makes them when the platform gives it an endpoint that browsers reach and a lifetime (chart
values `links.publicEndpoint`, `links.ttlSeconds`). They are signed with the job's own credentials, so a
link opens exactly what the job's owner may read, and renewed once less than a quarter of their lifetime is
left (status.linksExpireAt says when they stop working). A presigned URL names the key that signed it
(`X-Amz-Credential`), never its secret.

Pure functions on the status models: the signing itself is passed in.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable

from v2w_api.status import BestOfNJobStatus, JobStatus

Sign = Callable[[str], str]  # s3:// URI -> presigned https:// URL

RENEW_WHEN_LEFT = 0.25  # of the lifetime


def _uris(status: JobStatus) -> list[str]:
    found = [u for o in status.outputs for u in (o.uri, o.report_uri) if u]
    if isinstance(status, BestOfNJobStatus):
        found += [u for u in (status.best.uri if status.best else None,
                              status.best.report_uri if status.best else None, status.index_uri) if u]
    return found


def due(status: JobStatus, now: datetime, ttl_seconds: int) -> bool:
    """Whether the status has results without links, or links near their end."""
    if not _uris(status):
        return False
    if status.links_expire_at is None or not _all_linked(status):
        return True
    return status.links_expire_at - now < timedelta(seconds=ttl_seconds * RENEW_WHEN_LEFT)


def _all_linked(status: JobStatus) -> bool:
    pairs = [(o.uri, o.url) for o in status.outputs] + [(o.report_uri, o.report_url) for o in status.outputs]
    if isinstance(status, BestOfNJobStatus):
        if status.best:
            pairs += [(status.best.uri, status.best.url), (status.best.report_uri, status.best.report_url)]
        pairs.append((status.index_uri, status.index_url))
    return all(link for uri, link in pairs if uri)


def attach(status: JobStatus, sign: Sign, now: datetime, ttl_seconds: int) -> JobStatus:
    """A copy of `status` with a fresh link beside every s3:// URI of a video, a report and the index."""
    new = status.model_copy(deep=True)

    def link(uri: str | None) -> str | None:
        return sign(uri) if uri else None

    for output in new.outputs:
        output.url, output.report_url = link(output.uri), link(output.report_uri)
    if isinstance(new, BestOfNJobStatus):
        if new.best:
            new.best.url, new.best.report_url = link(new.best.uri), link(new.best.report_uri)
        new.index_url = link(new.index_uri)
    new.links_expire_at = now + timedelta(seconds=ttl_seconds)
    return new


def keep(previous: JobStatus, new: JobStatus) -> JobStatus:
    """`new` with the links of `previous` where the URI they sign is the same (a poll re-reads the result)."""
    kept = new.model_copy(deep=True)
    old = {o.name: o for o in previous.outputs}
    for output in kept.outputs:
        before = old.get(output.name)
        if before and before.uri == output.uri and before.report_uri == output.report_uri:
            output.url, output.report_url = before.url, before.report_url
    if isinstance(kept, BestOfNJobStatus) and isinstance(previous, BestOfNJobStatus):
        if kept.best and previous.best and kept.best.uri == previous.best.uri:
            kept.best.url, kept.best.report_url = previous.best.url, previous.best.report_url
        if kept.index_uri == previous.index_uri:
            kept.index_url = previous.index_url
    kept.links_expire_at = previous.links_expire_at
    return kept


__all__ = ["Sign", "attach", "due", "keep"]
