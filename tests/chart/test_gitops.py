"""The GitOps examples: the kustomize pipeline builds into jobs the API accepts; the Argo CD Application and
the Flux HelmRelease point at the chart with values its schema accepts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from v2w_api import KINDS

from tests.chart.helm import CHART, ROOT, Helm, find

GITOPS = ROOT / "examples" / "gitops"
OVERLAYS = sorted(p.name for p in (GITOPS / "kustomize" / "overlays").iterdir())


def load_all(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kustomize(client_bin: Path, overlay: str) -> list[dict]:
    out = subprocess.run([str(client_bin / "kubectl"), "kustomize", str(GITOPS / "kustomize" / "overlays" / overlay)],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pipeline_overlay_builds_jobs_the_models_accept(client_bin, overlay):
    docs = kustomize(client_bin, overlay)
    assert sorted(d["kind"] for d in docs) == ["BestOfNJob", "Video2WorldJob"]
    for doc in docs:
        assert doc["metadata"]["namespace"] == f"video2world-{overlay}"
        assert doc["metadata"]["name"].endswith("-run-1")
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "city-scenes-pipeline"
        KINDS[doc["kind"]][1].model_validate(doc)


def test_overlays_differ_where_they_should(client_bin):
    staging = {d["kind"]: d["spec"] for d in kustomize(client_bin, "staging")}
    production = {d["kind"]: d["spec"] for d in kustomize(client_bin, "production")}
    assert staging["Video2WorldJob"]["model"]["size"] == "2B"
    assert staging["Video2WorldJob"]["generation"]["resolution"] == 480
    assert staging["BestOfNJob"]["output"]["uri"] == "s3://v2w-staging/pipelines"
    assert production["Video2WorldJob"]["model"]["size"] == "14B"
    assert production["Video2WorldJob"]["parallelism"] == {"gpus": 8, "contextParallelSize": 8}
    assert production["BestOfNJob"]["bestOfN"]["numGenerations"] == 8
    assert production["BestOfNJob"]["scheduling"]["queueName"] == "gpu-queue"


@pytest.mark.cluster
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pipeline_passes_the_api_servers_validation(crds_applied, client_bin, overlay):
    kube = crds_applied
    docs = kustomize(client_bin, overlay)
    namespace = docs[0]["metadata"]["namespace"]
    kube.kubectl("create", "namespace", namespace, check=False)
    text = yaml.safe_dump_all(docs)
    result = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=text, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(docs)


def test_argocd_application_renders_with_its_values(helm: Helm):
    app = yaml.safe_load((GITOPS / "argocd" / "operator-application.yaml").read_text())
    assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application"
    source = app["spec"]["source"]
    assert (ROOT / source["path"]) == CHART
    assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]
    docs = helm.render(source["helm"]["valuesObject"], release=source["helm"]["releaseName"],
                       namespace=app["spec"]["destination"]["namespace"])
    monitor = find(docs, "ServiceMonitor")
    assert monitor["metadata"]["namespace"] == "video2world-system"


def test_argocd_pipeline_application_points_at_an_overlay():
    app = yaml.safe_load((GITOPS / "argocd" / "pipeline-application.yaml").read_text())
    path = ROOT / app["spec"]["source"]["path"]
    assert (path / "kustomization.yaml").exists()
    assert app["spec"]["destination"]["namespace"] == f"video2world-{path.name}"


def test_flux_helmrelease_installs_and_upgrades_crds_and_renders(helm: Helm):
    docs = load_all(GITOPS / "flux" / "helmrelease.yaml")
    release = find(docs, "HelmRelease")
    source = find(load_all(GITOPS / "flux" / "gitrepository.yaml"), "GitRepository")
    spec = release["spec"]
    assert release["apiVersion"] == "helm.toolkit.fluxcd.io/v2"
    assert spec["install"]["crds"] == spec["upgrade"]["crds"] == "CreateReplace"
    chart = spec["chart"]["spec"]
    assert (ROOT / chart["chart"]) == CHART
    assert chart["sourceRef"] == {"kind": "GitRepository", "name": source["metadata"]["name"],
                                  "namespace": source["metadata"]["namespace"]}
    rendered = helm.render(spec["values"], release=release["metadata"]["name"],
                           namespace=release["metadata"]["namespace"])
    deployment = find(rendered, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=video2world-production" in args


def test_flux_pipeline_health_expressions_cover_both_kinds():
    kustomization = find(load_all(GITOPS / "flux" / "pipeline-kustomization.yaml"), "Kustomization")
    spec = kustomization["spec"]
    assert (ROOT / spec["path"] / "kustomization.yaml").exists()
    exprs = {e["kind"]: e for e in spec["healthCheckExprs"]}
    assert set(exprs) == set(KINDS)
    for expr in exprs.values():
        assert expr["apiVersion"] == "video2world.io/v1alpha1"
        assert expr["current"] == "status.phase == 'Succeeded'" and expr["failed"] == "status.phase == 'Failed'"
