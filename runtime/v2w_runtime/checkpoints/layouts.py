"""The three checkpoint layouts a user may have, and where each component of the model is in each.

1. A diffusers folder: `model_index.json`, `transformer/`, `vae/`, `text_encoder/`, `tokenizer/`,
   `scheduler/` (what `Cosmos2VideoToWorldPipeline.save_pretrained` writes; the plain downloaded Hub folder
   of `nvidia/Cosmos-Predict2-{2B,14B}-Video2World` is one).
2. The same Hub repository in a Hugging Face cache: `models--nvidia--Cosmos-Predict2-2B-Video2World/` with
   `refs/main` naming the snapshot in `snapshots/<rev>/` (the folder itself, or the cache that holds it).
3. Upstream's `checkpoints/` tree as its download script writes it (the folder that holds `nvidia/`,
   `google-t5/`, `meta-llama/`; or, as the seed's default path names it, its
   `nvidia/Cosmos-Predict2-<size>-Video2World` folder): the native DiT `model-<res>p-<fps>fps.pt` for the
   run's resolution and frame rate, the native Wan 2.1 VAE `tokenizer/tokenizer.pth`, the T5 encoder and
   tokenizer of `google-t5/t5-11b`, and the scheduler Cosmos-Predict2 samples with (built in).

`resolve_model` lists the location once and finds every component without reading a weight; a missing
component is named with the file looked for in this layout and where the other layouts keep it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from .common import CheckpointError, check_model_size, shown
from .tree import Tree, parent_uri

LAYOUT_DIFFUSERS = "diffusers folder"
LAYOUT_HUB = "Hugging Face cache snapshot"
LAYOUT_UPSTREAM = "upstream checkpoints/ tree"

COMPONENTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
WHAT = {"transformer": "DiT (transformer)", "vae": "VAE", "text_encoder": "T5 text encoder",
        "tokenizer": "T5 tokenizer", "scheduler": "scheduler"}

# Upstream's tree, by the paths its scripts/download_checkpoints.py gives each Hub repository.
UPSTREAM_T5 = "google-t5/t5-11b"
UPSTREAM_REASON1 = "nvidia/Cosmos-Reason1-7B"
UPSTREAM_GUARDRAIL = "nvidia/Cosmos-Guardrail1"
UPSTREAM_LLAMA_GUARD = "meta-llama/Llama-Guard-3-8B"
UPSTREAM_VAE = "tokenizer/tokenizer.pth"
# The DiT variants upstream releases: resolution 480/720, frame rate 10/16 (model-720p-16fps.pt is the default).
VARIANT_FPS = (10, 16)
VARIANT = re.compile(r"model-(?P<res>\d+)p-(?P<fps>\d+)fps\.pt")
_MODEL_FOLDER = re.compile(r"Cosmos-Predict2-(?P<size>[0-9.]+B)-Video2World")

# What diffusers reads from each folder of a diffusers-format model.
_WEIGHTS = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json")
_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "spiece.model")
_DIFFUSERS_FILES = {
    "transformer": "transformer/config.json with transformer/diffusion_pytorch_model*.safetensors",
    "vae": "vae/config.json with vae/diffusion_pytorch_model*.safetensors",
    "text_encoder": "text_encoder/config.json with text_encoder/model*.safetensors",
    "tokenizer": "tokenizer/tokenizer_config.json (or tokenizer.json, spiece.model)",
    "scheduler": "scheduler/scheduler_config.json",
}
# The scheduler Cosmos-Predict2's diffusers pipeline is saved with (diffusers' conversion script:
# FlowMatchEulerDiscreteScheduler(use_karras_sigmas=True)); the pipeline itself sets the EDM range
# (sigma_max 80, sigma_min 0.002, sigma_data 1, final_sigmas_type "sigma_min") on whatever it is given.
BUILTIN_SCHEDULER = {"use_karras_sigmas": True, "shift": 1.0}


def model_repo(size: str) -> str:
    return f"Cosmos-Predict2-{size}-Video2World"


def model_folder(size: str) -> str:
    """The model's folder in upstream's tree."""
    return f"nvidia/{model_repo(size)}"


def variant_fps(fps: int) -> int:
    """The released frame rate nearest to the run's (10 or 16; halfway goes to 16)."""
    return min(VARIANT_FPS, key=lambda v: (abs(v - fps), -v))


def variant_file(resolution: int, fps: int) -> str:
    return f"model-{resolution}p-{variant_fps(fps)}fps.pt"


def _upstream_files(component: str, size: str, resolution: int, fps: int) -> str:
    folder = model_folder(size)
    return {
        "transformer": f"{folder}/{variant_file(resolution, fps)}",
        "vae": f"{folder}/{UPSTREAM_VAE}",
        "text_encoder": f"{UPSTREAM_T5}/config.json with {UPSTREAM_T5}/pytorch_model.bin",
        "tokenizer": f"{UPSTREAM_T5}/tokenizer.json (or spiece.model)",
        "scheduler": "nothing (built in)",
    }[component]


@dataclass
class Component:
    """Where one component was found: the layout it is in and its files (relative to `tree`)."""

    name: str
    kind: str  # "diffusers" (a from_pretrained folder), "native" (an upstream file), "hf" (t5-11b), "builtin"
    tree: Tree
    path: str = ""  # the folder or file, relative to the tree
    files: tuple[str, ...] = ()

    @property
    def bytes(self) -> int:
        return sum(self.tree.size(f) for f in self.files)

    @property
    def uri(self) -> str:
        return self.tree.uri_of(self.path) if self.path else "(built in)"

    def record(self) -> dict:
        out = {"layout": self.kind, "at": self.uri}
        if self.files:
            out["bytes"] = self.bytes
        return out

    def describe(self) -> str:
        if self.kind == "builtin":
            return "built in: FlowMatchEulerDiscreteScheduler with Karras sigmas, as diffusers' Cosmos2 pipeline"
        return f"{self.uri} ({self.kind}, {len(self.files)} file(s))"


@dataclass
class ModelSource:
    """A Video2World model located: its layout, every component found, and what is missing."""

    uri: str  # as the run names it
    layout: str
    tree: Tree  # the folder the component paths are relative to
    model_size: str
    resolution: int
    fps: int
    components: dict[str, Component] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # component -> what was looked for
    variant: str | None = None  # upstream: the DiT file the run's resolution and frame rate chose
    variants: list[str] = field(default_factory=list)  # upstream: every DiT variant the tree has
    upstream_root: str | None = None  # upstream: the tree's URI (for the refiner's and guardrail's defaults)
    notes: list[str] = field(default_factory=list)
    _dit: dict | None = field(default=None, repr=False)

    def require(self) -> "ModelSource":
        """CheckpointError naming every missing component and the file looked for in each layout."""
        if self.missing:
            parts = [f"the {WHAT[c]}: {why}" for c, why in self.missing.items()]
            raise CheckpointError(f"checkpoint {self.uri} ({self.layout}) is missing " + "; ".join(parts))
        return self

    def architecture(self) -> dict:
        """The DiT's config (its heads, layers...), from config.json or the native file's shapes.

        Refuses a DiT of the other model size. A native file is read memory-mapped (its shapes, no
        weights), downloaded first when the tree is in S3.
        """
        self.require()
        found = self.components["transformer"]
        if found.kind == "native":
            config = self.native_dit()[1]
        else:
            try:
                config = json.loads(found.tree.read_text(f"{found.path}/config.json"))
            except json.JSONDecodeError as exc:
                raise CheckpointError(f"{found.tree.uri_of(found.path + '/config.json')}: not JSON ({exc})") from None
        check_model_size(config, self.model_size, found.uri)
        return config

    def native_dit(self) -> tuple[dict, dict]:
        """The native DiT's state dict in diffusers' names and its config (read once, memory-mapped)."""
        if self._dit is None:
            from .convert import dit_config, dit_to_diffusers, unwrap_state
            from .files import read_tensors

            found = self.components["transformer"]
            name = found.uri
            unwrapped = unwrap_state(read_tensors(found.tree.local(found.path), name), name)
            state = dit_to_diffusers(unwrapped.state, name)
            self._dit = {"state": state, "config": dit_config(state, self.model_size, name), "notes": unwrapped.notes}
        return self._dit["state"], self._dit["config"]

    def release_dit(self) -> None:
        self._dit = None

    def record(self) -> dict:
        """What the run record says about where the model came from."""
        out = {"checkpoint": self.uri, "layout": self.layout,
               "components": {name: c.record() for name, c in self.components.items()}}
        if self.variant:
            out["dit_variant"] = self.variant
        if self.upstream_root:
            out["upstream_tree"] = self.upstream_root
        return out


def resolve_model(uri: str, model_size: str = "2B", resolution: int = 720, fps: int = 16,
                  cache=None) -> ModelSource:
    """Find every component of the `model_size` model at `uri` (any accepted layout) without reading weights.

    The result may miss components (see `ModelSource.require`); a location that is no accepted layout at
    all, or cannot be listed, is a CheckpointError.
    """
    try:
        tree = Tree.open(uri, cache)
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint {exc}") from None
    args = (model_size, resolution, fps)
    snapshot = _hub_snapshot(tree, model_size)
    if snapshot is not None:
        rel, notes = snapshot
        source = _diffusers(uri, LAYOUT_HUB, tree.sub(rel), *args)
        source.notes += notes
        return source
    if _is_upstream_root(tree):
        return _upstream(uri, tree, *args)
    if _is_native_model_folder(tree):
        return _upstream_from_model_folder(uri, tree, *args)
    if _is_diffusers(tree):
        return _diffusers(uri, LAYOUT_DIFFUSERS, tree, *args)
    raise CheckpointError(
        f"checkpoint {uri} is none of the accepted layouts: a {LAYOUT_DIFFUSERS} (model_index.json, transformer/, "
        f"vae/, text_encoder/, tokenizer/, scheduler/), a {LAYOUT_HUB} (models--nvidia--{model_repo(model_size)}/"
        f"refs/main and snapshots/<rev>/), or an {LAYOUT_UPSTREAM} ({model_folder(model_size)}/"
        f"{variant_file(resolution, fps)}, {model_folder(model_size)}/{UPSTREAM_VAE}, {UPSTREAM_T5}/); "
        f"it holds {shown(sorted(tree.files)) or 'no files'}"
    )


# ------------------------------------------------------------------------------------ recognising


def _is_diffusers(tree: Tree) -> bool:
    return tree.has("model_index.json") or any(tree.is_dir(c) for c in ("transformer", "vae", "text_encoder", "scheduler"))


def _is_upstream_root(tree: Tree) -> bool:
    if tree.is_dir(UPSTREAM_T5):
        return True
    return any(_MODEL_FOLDER.fullmatch(PurePosixPath(f).parts[1]) for f in tree.files
               if f.startswith("nvidia/") and len(PurePosixPath(f).parts) > 2)


def _is_native_model_folder(tree: Tree) -> bool:
    return not tree.has("model_index.json") and (tree.has(UPSTREAM_VAE) or any(VARIANT.fullmatch(f) for f in tree.files))


def _hub_snapshot(tree: Tree, size: str) -> tuple[str, list[str]] | None:
    """The snapshot folder (tree-relative) of the Hub repository of `size` in a Hugging Face cache, if any."""
    repo = f"models--nvidia--{model_repo(size)}"
    for base in ("", repo, f"hub/{repo}"):
        prefix = f"{base}/" if base else ""
        if tree.has(f"{prefix}refs/main") or tree.is_dir(f"{prefix}snapshots"):
            break
    else:
        return None
    if not base:
        named = _MODEL_FOLDER.search(PurePosixPath(tree.uri.rstrip("/")).name)
        if named and named.group("size") != size:
            raise CheckpointError(f"checkpoint {tree.uri} is the Hugging Face cache of the {named.group('size')} "
                                  f"model but the run's model size is {size}")
    snapshots = sorted({PurePosixPath(f).parts[0] for f in tree.sub(f"{prefix}snapshots").files if "/" in f})
    if tree.has(f"{prefix}refs/main"):
        rev = tree.read_text(f"{prefix}refs/main").strip()
        if rev not in snapshots:
            raise CheckpointError(f"checkpoint {tree.uri_of(prefix + 'refs/main')} names revision {rev!r}, but "
                                  f"{tree.uri_of(prefix + 'snapshots/' + rev)} is missing (an interrupted download?)")
        notes = [f"revision {rev} (refs/main)"]
    elif len(snapshots) == 1:
        rev, notes = snapshots[0], [f"revision {snapshots[0]} (the only snapshot; no refs/main)"]
    else:
        raise CheckpointError(f"checkpoint {tree.uri_of(prefix + 'refs/main')} is missing and "
                              f"{tree.uri_of(prefix + 'snapshots')} holds {len(snapshots)} snapshots: "
                              "say which one with its snapshots/<rev> folder")
    snapshot = f"{prefix}snapshots/{rev}"
    broken = [b for b in tree.broken if b.startswith(snapshot + "/")]
    if broken:
        notes.append(f"{len(broken)} link(s) to missing blobs: {shown(broken)}")
    return snapshot, notes


# --------------------------------------------------------------------------------------- diffusers


def _diffusers(uri: str, layout: str, tree: Tree, size: str, resolution: int, fps: int) -> ModelSource:
    source = ModelSource(uri, layout, tree, size, resolution, fps)
    for name in COMPONENTS:
        files = tree.under(name)
        names = {PurePosixPath(f).name for f in files}
        if name == "tokenizer":
            ok = bool(names & set(_TOKENIZER_FILES))
        elif name == "scheduler":
            ok = "scheduler_config.json" in names
        else:
            ok = "config.json" in names and any(n.endswith(_WEIGHTS) for n in names)
        if ok:
            source.components[name] = Component(name, "diffusers", tree, name, tuple(files))
        else:
            here = _DIFFUSERS_FILES[name]
            state = "folder missing" if not files else "incomplete"
            source.missing[name] = (f"looked for {here} in this {layout} ({name}/ {state}); an "
                                    f"{LAYOUT_UPSTREAM} holds it as {_upstream_files(name, size, resolution, fps)}")
    return source


# ---------------------------------------------------------------------------------------- upstream


def _upstream_from_model_folder(uri: str, tree: Tree, size: str, resolution: int, fps: int) -> ModelSource:
    """A native model folder: the `nvidia/Cosmos-Predict2-<size>-Video2World` of an upstream tree."""
    parts = PurePosixPath(uri.rstrip("/").split("://", 1)[-1]).parts
    named = _MODEL_FOLDER.fullmatch(parts[-1]) if parts else None
    if named is None or len(parts) < 2 or parts[-2] != "nvidia":
        raise CheckpointError(
            f"checkpoint {uri} holds upstream's native files ({shown(sorted(tree.files))}) but is not the "
            f"{model_folder(size)} folder of an {LAYOUT_UPSTREAM}: point the checkpoint at the tree (the folder "
            f"that holds nvidia/ and {UPSTREAM_T5}/), where the T5 encoder is found too"
        )
    if named.group("size") != size:
        raise CheckpointError(f"checkpoint {uri} is the {named.group('size')} model's folder but the run's model "
                              f"size is {size}")
    root = parent_uri(uri, 2)
    try:
        root_tree = Tree.open(root, tree.cache) if root else None
    except CheckpointError:
        root_tree = None
    if root_tree is None:
        raise CheckpointError(f"checkpoint {uri}: the {LAYOUT_UPSTREAM} that holds it cannot be listed")
    source = _upstream(root, root_tree, size, resolution, fps)
    source.uri = uri
    source.notes.append(f"the model folder of the upstream tree {root}")
    return source


def _upstream(uri: str, tree: Tree, size: str, resolution: int, fps: int) -> ModelSource:
    source = ModelSource(uri, LAYOUT_UPSTREAM, tree, size, resolution, fps, upstream_root=uri)
    folder = model_folder(size)
    source.variants = sorted(PurePosixPath(f).name for f in tree.under(folder)
                             if "/" not in f[len(folder) + 1:] and VARIANT.fullmatch(PurePosixPath(f).name))
    source.variant = variant_file(resolution, fps)

    def other_layouts(name: str) -> str:
        return f"a {LAYOUT_DIFFUSERS} or {LAYOUT_HUB} holds it as {_DIFFUSERS_FILES[name]}"

    dit = f"{folder}/{source.variant}"
    if tree.has(dit):
        source.components["transformer"] = Component("transformer", "native", tree, dit, (dit,))
        if variant_fps(fps) != fps:
            source.notes.append(f"{source.variant}: upstream releases 10 and 16 fps models; {fps} fps runs on the "
                                f"{variant_fps(fps)} fps one")
    else:
        why = f"looked for {dit} in this {LAYOUT_UPSTREAM}"
        if source.variants:
            why += (f" (it has {', '.join(source.variants)}: run at that resolution and frame rate, or add the "
                    f"{resolution}p {variant_fps(fps)} fps model with upstream's download_checkpoints.py)")
        elif not tree.is_dir(folder):
            others = sorted({"/".join(PurePosixPath(f).parts[:2]) for f in tree.files if f.startswith("nvidia/")})
            why += f" ({folder}/ is missing; the tree has {shown(others) or 'no nvidia/ models'})"
        source.missing["transformer"] = f"{why}; {other_layouts('transformer')}"
    vae = f"{folder}/{UPSTREAM_VAE}"
    if tree.has(vae):
        source.components["vae"] = Component("vae", "native", tree, vae, (vae,))
    else:
        source.missing["vae"] = f"looked for {vae} in this {LAYOUT_UPSTREAM}; {other_layouts('vae')}"
    t5 = tree.under(UPSTREAM_T5)
    names = {f[len(UPSTREAM_T5) + 1:] for f in t5}
    weights = _t5_weights(names)
    if "config.json" in names and weights:
        files = tuple(f"{UPSTREAM_T5}/{n}" for n in ["config.json", *weights])
        source.components["text_encoder"] = Component("text_encoder", "hf", tree, UPSTREAM_T5, files)
    else:
        source.missing["text_encoder"] = (f"looked for {_upstream_files('text_encoder', size, resolution, fps)} "
                                          f"in this {LAYOUT_UPSTREAM}; {other_layouts('text_encoder')}")
    tokenizer = sorted(n for n in names if n in _TOKENIZER_FILES or n in ("special_tokens_map.json",))
    if {"tokenizer.json", "spiece.model"} & set(tokenizer):
        files = tuple(f"{UPSTREAM_T5}/{n}" for n in tokenizer + (["config.json"] if "config.json" in names else []))
        source.components["tokenizer"] = Component("tokenizer", "hf", tree, UPSTREAM_T5, files)
    else:
        source.missing["tokenizer"] = (f"looked for {_upstream_files('tokenizer', size, resolution, fps)} in this "
                                       f"{LAYOUT_UPSTREAM}; {other_layouts('tokenizer')}")
    source.components["scheduler"] = Component("scheduler", "builtin", tree)
    return source


def _t5_weights(names: set[str]) -> list[str]:
    """The weight files transformers reads from a Hub T5 folder: safetensors if there, else the .bin files."""
    for single, index, suffix in (("model.safetensors", "model.safetensors.index.json", ".safetensors"),
                                  ("pytorch_model.bin", "pytorch_model.bin.index.json", ".bin")):
        if single in names:
            return [single]
        if index in names:
            return [index] + sorted(n for n in names if n.endswith(suffix) and "/" not in n)
    return []


__all__ = [
    "BUILTIN_SCHEDULER",
    "COMPONENTS",
    "LAYOUT_DIFFUSERS",
    "LAYOUT_HUB",
    "LAYOUT_UPSTREAM",
    "UPSTREAM_GUARDRAIL",
    "UPSTREAM_LLAMA_GUARD",
    "UPSTREAM_REASON1",
    "UPSTREAM_T5",
    "UPSTREAM_VAE",
    "VARIANT_FPS",
    "Component",
    "ModelSource",
    "model_folder",
    "model_repo",
    "resolve_model",
    "variant_file",
    "variant_fps",
]
