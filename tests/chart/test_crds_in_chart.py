"""The chart ships the generated CRDs unchanged: `charts/video2world-operator/crds/` equals `crds/`."""

from __future__ import annotations

from tests.chart.helm import CHART, ROOT

SYNC = "cp crds/*.yaml charts/video2world-operator/crds/"


def test_chart_crds_are_exact_copies_of_the_generated_ones():
    generated = {p.name: p.read_bytes() for p in sorted((ROOT / "crds").glob("*.yaml"))}
    shipped = {p.name: p.read_bytes() for p in sorted((CHART / "crds").glob("*.yaml"))}
    assert generated, "crds/ is empty: run `python -m v2w_operator.crds`"
    assert sorted(shipped) == sorted(generated), f"the chart's CRD files differ from crds/: run `{SYNC}`"
    stale = [name for name in generated if shipped[name] != generated[name]]
    assert not stale, f"the chart's copies of {stale} are out of date: run `{SYNC}`"


def test_chart_has_no_other_files_in_crds():
    extra = [p.name for p in (CHART / "crds").iterdir() if not p.name.endswith(".yaml")]
    assert not extra, f"unexpected files in the chart's crds/: {extra}"
