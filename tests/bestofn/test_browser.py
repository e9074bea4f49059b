"""The reports in a real browser: headless Chromium opens index.html and a report from disk.

Checks that the embedded H.264 MP4 loads, has a duration and plays, and that the injected <script>
and onerror handler in the prompt and critic text did not run. Screenshots go to test-artifacts/.
CI installs Debian's `chromium` package; set CI=1 to make a missing browser a failure, not a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from v2w_api.manifest import ResultManifest

from .cdp import Browser, find_chromium
from .conftest import INJECTED

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "bestofn"

PROBE = """
(async () => {
  const v = document.querySelector('video');
  if (!v) return {error: 'no video element'};
  if (v.readyState < 2) {
    await new Promise((resolve, reject) => {
      v.addEventListener('loadeddata', resolve, {once: true});
      v.addEventListener('error', () => reject(new Error('video error ' + (v.error && v.error.code))), {once: true});
      setTimeout(() => reject(new Error('timeout, readyState ' + v.readyState)), 20000);
    });
  }
  await v.play().catch(() => null);
  const start = v.currentTime;
  await new Promise(r => setTimeout(r, 700));
  return {
    duration: v.duration, readyState: v.readyState, width: v.videoWidth, height: v.videoHeight,
    played: v.currentTime !== start, xss: window.__xss === undefined ? null : window.__xss,
    prompt: (document.getElementById('prompt') || {}).textContent || '',
    rows: document.querySelectorAll('tr.entry').length, trials: document.querySelectorAll('.trial').length,
    h264: v.canPlayType('video/mp4; codecs="avc1.64001E"'),
  };
})()
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    executable = find_chromium()
    if executable is None:
        message = "chromium is not installed (apt-get install -y chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    chromium = Browser(executable, tmp_path_factory.mktemp("chromium-profile"))
    yield chromium
    chromium.close()


def _check_page(browser: Browser, page: Path, shot: str) -> dict:
    browser.open(page.resolve().as_uri())
    info = browser.evaluate(PROBE, timeout=60)
    browser.screenshot(ARTIFACTS / shot)
    assert "error" not in info, info
    assert info["readyState"] >= 2, info  # a decoded frame is there
    assert info["duration"] == pytest.approx(9 / 8, abs=0.1), info
    assert (info["width"], info["height"]) == (48, 32), info
    assert info["played"], info
    assert info["xss"] is None, "injected script ran"
    return info


def test_index_and_report_in_chromium(browser, bestofn_run: Path):
    result = ResultManifest.model_validate_json((bestofn_run / "result.json").read_text())
    info = _check_page(browser, bestofn_run / "index.html", "index.png")
    assert info["rows"] == 3
    assert INJECTED in info["prompt"]  # shown as text, not parsed as HTML

    report = Path(result.best_video().report_uri)
    info = _check_page(browser, report, "report.png")
    assert info["trials"] == 2
    assert INJECTED in info["prompt"]
    assert (ARTIFACTS / "index.png").stat().st_size > 1000 and (ARTIFACTS / "report.png").stat().st_size > 1000
