"""Presigned links in the status: beside every video, report and index URI, kept across polls, renewed late."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from v2w_api.status import BestOfNJobStatus, BestStatus, OutputStatus, Video2WorldJobStatus
from v2w_operator import links

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
TTL = 3600


def sign(uri: str) -> str:
    return uri.replace("s3://", "https://s3.example/") + "?X-Amz-Signature=abc"


def bon() -> BestOfNJobStatus:
    return BestOfNJobStatus(
        outputs=[OutputStatus(name="a_score100.mp4", verdict="Passed", uri="s3://b/j/a_score100.mp4",
                              report_uri="s3://b/j/a_score100.html"),
                 OutputStatus(name="x.mp4", verdict="Blocked", reason="guardrail")],
        best=BestStatus(name="a_score100.mp4", uri="s3://b/j/a_score100.mp4", score=100,
                        report_uri="s3://b/j/a_score100.html"),
        index_uri="s3://b/j/index.html")


def test_every_uri_gets_its_link_and_the_status_says_until_when():
    linked = links.attach(bon(), sign, NOW, TTL)
    assert linked.outputs[0].url == "https://s3.example/b/j/a_score100.mp4?X-Amz-Signature=abc"
    assert linked.outputs[0].report_url.endswith("a_score100.html?X-Amz-Signature=abc")
    assert linked.outputs[1].url is None  # a blocked video has nothing to open
    assert linked.best.url == linked.outputs[0].url and linked.index_url.endswith("index.html?X-Amz-Signature=abc")
    assert linked.links_expire_at == NOW + timedelta(seconds=TTL)
    assert links.attach(Video2WorldJobStatus(), sign, NOW, TTL).outputs == []


def test_links_are_due_when_missing_or_near_their_end_only():
    assert not links.due(Video2WorldJobStatus(), NOW, TTL)  # nothing to link yet
    assert links.due(bon(), NOW, TTL)
    linked = links.attach(bon(), sign, NOW, TTL)
    assert not links.due(linked, NOW + timedelta(seconds=TTL * 0.7), TTL)
    assert links.due(linked, NOW + timedelta(seconds=TTL * 0.8), TTL)


def test_a_poll_that_reads_the_same_results_keeps_the_links():
    linked = links.attach(bon(), sign, NOW, TTL)
    again = links.keep(linked, bon())  # a new derivation, without links
    assert again.outputs[0].url == linked.outputs[0].url and again.index_url == linked.index_url
    assert again.links_expire_at == linked.links_expire_at and not links.due(again, NOW, TTL)
    moved = bon()
    moved.outputs[0].uri = "s3://b/j/a_score067.mp4"
    assert links.keep(linked, moved).outputs[0].url is None  # another object: signed anew
