"""Best-of-N that really ranks, end to end: the videos of a Video2WorldJob, one of them given a flash frame by this
test (a flawed generator, never the product), judged by a BestOfNJob with skipGeneration and the tiny critic that
answers. The flawed video ranks last, the winner is a clean one, and the status links open the results in a
browser: the presigned index page, and the best video, which plays."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

from tests.e2e.helpers import DISABLED, phase_is, read_result, s3_key

pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
PROMPT = 'Take {i} of the depot at night. <b onmouseover="x">bold?</b>'
FLAWED = "take-1"


@pytest.fixture(scope="module")
def judged(e2e, tmp_path_factory):
    """The takes, the copy the test made of them with one flawed, and the finished BestOfNJob."""
    from v2w_runtime.bestofn import read_video
    from v2w_runtime.outputs import write_mp4
    from v2w_runtime.tiny.critic import inject_artifact

    ns = e2e.namespace()
    batch = [{"input": f"s3://{e2e.bucket}/inputs/input{i}.jpg", "prompt": PROMPT.format(i=i), "output": f"take-{i}"}
             for i in range(3)]
    e2e.apply(ns, e2e.job("Video2WorldJob", "takes", {"batch": batch, **DISABLED}))
    made, _ = e2e.wait_for(ns, "v2wjob", "takes", phase_is("Succeeded", "Failed"), what="the videos to judge")
    assert made["status"]["phase"] == "Succeeded", made["status"]

    # The test's flawed generator: the takes and their run records, copied to a folder to judge, one with a flash.
    client, work = e2e.minio.client(), tmp_path_factory.mktemp("takes")
    source = f"results/{ns}/takes/"
    to_judge = f"to-judge/{ns}/"
    for item in client.list_objects_v2(Bucket=e2e.bucket, Prefix=source)["Contents"]:
        name = item["Key"][len(source):]
        if not name.startswith("take-") or not name.endswith((".mp4", ".json")):
            continue
        local = work / name
        client.download_file(e2e.bucket, item["Key"], str(local))
        if name == f"{FLAWED}.mp4":
            frames, fps = read_video(local)
            write_mp4(inject_artifact(frames, "flash", index=len(frames) // 2), local, int(fps))
        client.upload_file(str(local), e2e.bucket, to_judge + name)
    before = {o["Key"] for o in client.list_objects_v2(Bucket=e2e.bucket, Prefix=to_judge)["Contents"]}

    e2e.apply(ns, e2e.job("BestOfNJob", "judge", {
        "bestOfN": {"skipGeneration": True, "videosUri": f"s3://{e2e.bucket}/{to_judge}", "critic": {"numTrials": 3}},
        **DISABLED}))
    obj, _ = e2e.wait_for(ns, "bonjob", "judge", phase_is("Succeeded", "Failed"), timeout=400, what="a final phase")
    after = {o["Key"] for o in client.list_objects_v2(Bucket=e2e.bucket, Prefix=to_judge)["Contents"]}
    assert after == before, "the videos judged are read, never written"
    return ns, obj


def test_the_flawed_video_ranks_last_and_a_clean_one_wins(e2e, judged):
    ns, obj = judged
    status = obj["status"]
    assert status["phase"] == "Succeeded", status
    result = read_result(e2e, obj)
    ranked = [v.name.split("_score")[0] for v in result.videos]
    assert sorted(ranked) == ["take-0", "take-1", "take-2"] and ranked[-1] == FLAWED, ranked
    flawed = result.videos[-1]
    assert flawed.trials.parsed == 3 and flawed.score <= 33
    for video in result.videos[:-1]:
        assert video.trials.parsed >= 2 and video.score > flawed.score
        # A score is the share of the parsed trials that answered No, in the file name too.
        assert video.score == round(100 * video.trials.no_anomaly / video.trials.parsed)
        assert video.name.endswith(f"_score{video.score:03d}.mp4")
    assert status["best"]["name"] == result.best == result.videos[0].name
    assert not status["best"]["name"].startswith(FLAWED)
    assert [o["score"] for o in status["outputs"]] == [v.score for v in result.videos]
    assert {v.seed for v in result.videos} == {0, 1, 2}  # read from the takes' run records
    assert status["best"]["uri"].startswith(f"s3://{e2e.bucket}/results/{ns}/judge/")
    table = e2e.kubectl("get", "bonjobs", "-n", ns).stdout
    assert f"{result.best_video().score}" in table.splitlines()[1]


def test_the_status_links_open_the_results(e2e, judged):
    _, obj = judged
    status = obj["status"]
    expires = datetime.fromisoformat(status["linksExpireAt"].replace("Z", "+00:00"))
    assert timedelta(minutes=50) < expires - datetime.now(timezone.utc) <= timedelta(hours=1)
    client = e2e.minio.client()
    links = [(status["best"]["url"], status["best"]["uri"]), (status["best"]["reportUrl"], status["best"]["reportUri"]),
             (status["indexUrl"], status["indexUri"])] + [(o["url"], o["uri"]) for o in status["outputs"]]
    for url, uri in links:
        assert url.startswith(e2e.minio.endpoint) and "X-Amz-Signature=" in url
        bucket, key = s3_key(uri)
        got = requests.get(url, timeout=10)
        assert got.status_code == 200 and got.content == client.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert requests.get(url.split("?")[0], timeout=10).status_code == 403  # the bucket stays private
    assert e2e.minio.secret_key not in str(status)


def test_the_index_and_the_best_video_in_a_browser(e2e, judged, tmp_path):
    from tests.bestofn.cdp import Browser, find_chromium
    from tests.bestofn.test_browser import PROBE

    executable = find_chromium()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed")
        pytest.skip("chromium is not installed")
    _, obj = judged
    status = obj["status"]
    browser = Browser(executable, tmp_path / "profile")
    try:
        browser.open(status["indexUrl"])  # the presigned index page: the ranking, flawed last
        rows = browser.evaluate("[...document.querySelectorAll('tr.entry')].map(r => r.dataset.name)")
        browser.screenshot(ARTIFACTS / "index-presigned.png")
        assert len(rows) == 3 and rows[-1].startswith(FLAWED), rows
        browser.open(status["best"]["reportUrl"])  # its report: the take's prompt, markup shown as text
        page = browser.evaluate("""({prompt: (document.getElementById('prompt') || {}).textContent || '',
                                     parsed: document.querySelectorAll('b[onmouseover]').length})""")
        assert '<b onmouseover="x">bold?</b>' in page["prompt"] and page["parsed"] == 0, page
        browser.open(status["best"]["url"])  # the best video, straight from S3 through its presigned link
        info = browser.evaluate(PROBE, timeout=60)
        assert "error" not in info and info["readyState"] >= 2 and info["played"], info
        assert (info["width"], info["height"]) == (96, 64)
    finally:
        browser.close()
