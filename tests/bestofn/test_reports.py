"""The HTML pages: escaping, the ranking, the score chart, videos as files next to the pages, and the names
that carry the score."""

from __future__ import annotations

import re

from v2w_api.manifest import CriticTrials
from v2w_runtime.critic import Critique, count_trials, parse_answer, score
from v2w_runtime.reports import rank, render_index, render_report

EVIL = '<script>window.__xss=1</script><img src=x onerror="alert(1)">'


def critique(name: str, answers: list[str], seed: int | None = 1, prompt: str = "a bus") -> Critique:
    trials = [parse_answer(a, trial=i, seed=i) for i, a in enumerate(answers)]
    counts = count_trials(trials)
    return Critique(video=name, seed=seed, prompt=prompt, trials=trials, counts=counts, score=score(counts))


YES = "<think>Components:\n- bus: moves\nAnomalies:\n- bus: wheel melts</think><answer>Yes</answer>"
NO = "<think>Components:\n- bus: moves\nAnomalies:\n- none</think><answer>No</answer>"


def test_names_carry_the_score():
    c = critique("gen03_seed12", [NO, NO, YES])
    assert c.score == 67
    assert (c.video_file, c.critique_file, c.report_file) == (
        "gen03_seed12_score067.mp4", "gen03_seed12_score067.json", "gen03_seed12_score067.html")


def test_ranking_best_first_and_stable():
    a = critique("a", [NO, YES, YES])  # 33
    b = critique("b", [NO, NO, NO])  # 100
    c = critique("c", [NO, "garbage", "garbage"])  # 100, fewer readable answers
    d = critique("d", [YES, YES])  # 0
    e = critique("e", [NO, NO, YES])  # 67
    assert [x.video for x in rank([a, b, c, d, e])] == ["b", "c", "e", "a", "d"]
    assert [x.video for x in rank([e, d, c, b, a])] == ["b", "c", "e", "a", "d"]


def test_report_escapes_model_and_user_text():
    evil_answer = f"<think>Components:\n- {EVIL}: odd\nAnomalies:\n- {EVIL}\n</think><answer>Yes</answer>"
    c = critique("v", [evil_answer, NO], prompt=f"A bus {EVIL}")
    c.refined_prompt = f"Refined {EVIL}"
    page = render_report(c)
    assert "<script>window" not in page and "<img src=x" not in page
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in page
    assert page.count("&lt;img src=x onerror=&#34;alert(1)&#34;&gt;") >= 4  # prompt, refined, component, anomaly
    assert "script-src 'none'" in page  # CSP as a second wall
    # The video is the file next to the page, not a copy inside it.
    assert '<source src="v_score050.mp4" type="video/mp4">' in page and "base64" not in page.split("poster")[0]
    assert 'id="score">050<' in page
    assert "<strong class=\"mid\">unparsable</strong>" not in page


def test_report_shows_every_trial_and_unparsable_ones():
    c = critique("v", [NO, "no idea", YES])
    page = render_report(c)
    assert page.count('class="trial"') == 3
    assert "<strong class=\"mid\">unparsable</strong>" in page and "wheel melts" in page


def test_index_lists_all_in_rank_order_with_their_score_chart_and_video():
    ranked = rank([critique("a", [YES]), critique("b", [NO]), critique("c", [NO, YES, "no idea"], prompt=EVIL)])
    page = render_index(ranked, prompt=EVIL, best_file="best.mp4")
    assert re.findall(r'data-name="([^"]+)"', page) == ["b", "c", "a"]
    assert "<script>" not in page
    assert 'href="b_score100.html"' in page and 'href="best.mp4"' in page
    # per video: a bar as wide as its score, one mark per trial (parsed or not), and its own playable video
    assert re.findall(r'class="fill (\w+)" style="width:(\d+)%"', page) == [("good", "100"), ("mid", "50"), ("bad", "0")]
    row_c = page[page.index('data-name="c"'):page.index('data-name="a"')]
    assert re.findall(r'<span class="(no|yes|unparsed)"></span>', row_c) == ["no", "yes", "unparsed"]
    assert "1 unparsable, not scored" in row_c and '<source src="c_score050.mp4"' in row_c
    assert "wheel melts (1 of 3 trials)" in row_c  # the anomaly the critic named


def test_report_lists_the_components_of_cosmos_reason1_s_template():
    answer = ("<think><overview>A bus leaves.</overview><component name=\"Bus\"><analysis>Moves on.</analysis>"
              "<anomaly>No</anomaly></component><component name=\"Light\"><analysis>One frame flashes white."
              "</analysis><anomaly>Yes</anomaly></component></think><answer>Yes</answer>")
    page = render_report(critique("v", [answer]))
    components = re.search(r'<ul class="components">(.*?)</ul>', page, re.S).group(1)
    anomalies = re.search(r'<ul class="anomalies">(.*?)</ul>', page, re.S).group(1)
    assert "Bus: Moves on." in components and "Light: One frame flashes white." in components
    assert "Light: One frame flashes white." in anomalies and "Bus" not in anomalies
    assert '<p class="overview">A bus leaves.</p>' in page


def test_empty_index():
    assert "No video was scored" in render_index([])


def test_counts_model_is_the_manifest_one():
    assert isinstance(critique("x", [NO]).counts, CriticTrials)
