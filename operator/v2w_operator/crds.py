"""Generates the CustomResourceDefinitions in `crds/` from the pydantic models.

The models are the single source of truth. This module turns their JSON schema into a structural
OpenAPI v3 schema as Kubernetes wants it: references inlined, optional fields without `null`
branches, CRD defaults that fill nested groups, the models' CEL rules kept, status and printer
columns added. `python -m v2w_operator.crds --check` fails when `crds/` is out of date.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import sys
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from v2w_api import (BEST_OF_N_JOB, GROUP, VERSION, VIDEO2WORLD_JOB, VIDEO2WORLD_POOL, BestOfNJob, KindNames,
                     Video2WorldJob, Video2WorldPool)
from v2w_api.base import PATTERN_MESSAGE, cel

# Keys of pydantic's JSON schema that a structural CRD schema does not take.
_DROPPED_KEYS = {"title", "$schema", "discriminator"}

# Once a job's PyTorchJob exists the API server refuses spec edits (they could not reach the running
# pods and the status would describe a spec that never ran); suspend alone may change. Before that, a
# job waiting for its Secret, say, can still be fixed in place.
MUTABLE_WHILE_RUNNING = {"suspend"}

# A job name becomes its child's (`v2w-<name>`) and that one's replica Services (a PyTorchJob's `…-worker-<i>`) or
# pod host names (a TrainJob's `…-node-0-<i>`), which are DNS labels of at most 63 characters.
MAX_NAME_LENGTH = 48


class SchemaError(ValueError):
    """The models produced something a structural schema cannot express."""


def _resolve(node: Any, defs: dict[str, Any], path: str) -> Any:
    if isinstance(node, list):
        return [_resolve(item, defs, f"{path}[]") for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").split("/")[-1]]
        merged = copy.deepcopy(target)
        merged.update(node)  # the field's own description/default win over the referenced model's
        node = merged
    for key in ("anyOf", "oneOf"):
        if key in node:
            branches = [b for b in node.pop(key) if b != {"type": "null"}]
            if len(branches) != 1:
                raise SchemaError(f"{path}: a union of {len(branches)} types is not structural")
            branch = _resolve(branches[0], defs, path)
            for k, v in branch.items():
                node.setdefault(k, v)
            if node.get("default", "") is None:
                del node["default"]
    if "allOf" in node:
        parts = node.pop("allOf")
        for part in parts:
            for k, v in _resolve(part, defs, path).items():
                node.setdefault(k, v)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "propertyNames" in node:
        # Kubernetes has no propertyNames: bound the map keys with a CEL rule instead.
        names = node.pop("propertyNames")
        if "maxLength" in names:
            node.setdefault("x-kubernetes-validations", []).append(
                cel(f"self.all(k, size(k) <= {names['maxLength']})", f"keys must be at most {names['maxLength']} characters"))
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS or key == "$defs":
            continue
        if key == "additionalProperties" and value is False:
            continue  # unknown fields are pruned, and refused by kubectl's strict field validation
        if key == "default" and value is None:
            continue
        if key == "properties":
            out[key] = {name: _resolve(sub, defs, f"{path}.{name}") for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = _resolve(value, defs, f"{path}[]")
        else:
            out[key] = value
    if "properties" in out:
        out.setdefault("type", "object")
    if "pattern" in out:
        out = _pattern_as_rule(out, path)
    return out


def _pattern_as_rule(node: dict[str, Any], path: str) -> dict[str, Any]:
    """A pattern becomes a CEL rule with the message its type gives: the API server's own refusal of a
    pattern shows the raw regex (`should match '^s3://…'`), a rule shows the message."""
    message = node.pop(PATTERN_MESSAGE, None)
    if message is None:
        raise SchemaError(f"{path}: a pattern without a message a person can read (use v2w_api.base.matching)")
    pattern = node.pop("pattern")
    if "'" in pattern:
        raise SchemaError(f"{path}: the pattern holds a quote, which a CEL raw string cannot")
    if "maxLength" not in node:
        raise SchemaError(f"{path}: a pattern rule needs a maxLength to bound its cost")
    node["x-kubernetes-validations"] = [cel(f"self.matches(r'{pattern}')", message),
                                        *node.get("x-kubernetes-validations", [])]
    return node


def _cel_literal(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else str(value)


def _rules_instead_of_blocking_checks(node: Any, list_map_keys: tuple[str, ...] = ()) -> None:
    """Enums and required fields of the spec as CEL rules with messages.

    The API server skips every CEL rule of an object once a schema check of the kind it calls blocking
    failed (an enum, a required field, a type, maxLength, maxItems), and then adds the line "some validation
    rules were not checked because the object was invalid". As rules, a wrong enum value or a missing field
    is reported with the others and without that line. Types and lengths stay schema checks (a rule's cost
    is bounded by them), and so do the keys of a list-map, which Kubernetes needs required."""
    if not isinstance(node, dict):
        return
    rules: list[dict[str, Any]] = []
    if "enum" in node and node.get("type") in ("string", "integer", "number"):
        values = node.pop("enum")
        shown = ", ".join(str(v) for v in values)
        rules.append(cel(f"self in [{', '.join(_cel_literal(v) for v in values)}]", f"must be one of: {shown}"))
        description = node.get("description", "")
        if not all(str(v) in description for v in values):  # `kubectl explain` shows the values still
            node["description"] = f"{description} One of: {shown}.".strip()
    required = [name for name in node.get("required", []) if name not in list_map_keys]
    if required:
        kept = [name for name in node["required"] if name in list_map_keys]
        if kept:
            node["required"] = kept
        else:
            del node["required"]
        for name in required:
            rules.append(cel(f"has(self.{name})", f"{name} is required", f".{name}", reason="FieldValueRequired"))
    if rules:
        node["x-kubernetes-validations"] = rules + node.get("x-kubernetes-validations", [])
    for sub in (node.get("properties") or {}).values():
        _rules_instead_of_blocking_checks(sub)
    if isinstance(node.get("items"), dict):
        _rules_instead_of_blocking_checks(node["items"], tuple(node.get("x-kubernetes-list-map-keys", ())))
    if isinstance(node.get("additionalProperties"), dict):
        _rules_instead_of_blocking_checks(node["additionalProperties"])


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel class behind an annotation such as `X`, `X | None` or `Optional[X]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None and typing.get_origin(annotation) not in (list, dict):
            return found
    return None


def _apply_group_defaults(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Give every nested group that pydantic fills by default the same CRD default.

    Kubernetes applies a property's defaults only when its parent object exists, and validates a
    default with the group's CEL rules as it stands, so the default is the group's full default value.
    """
    props = schema.get("properties", {})
    for name, field in model.model_fields.items():
        key = field.alias or name
        sub_model = _model_of(field.annotation)
        if key not in props or sub_model is None:
            continue
        factory = field.default_factory
        if isinstance(factory, type) and issubclass(factory, BaseModel):
            props[key]["default"] = factory().model_dump(mode="json", by_alias=True, exclude_none=True)
        _apply_group_defaults(props[key], sub_model)


def _strip_defaults(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_defaults(v) for k, v in node.items() if k != "default"}
    if isinstance(node, list):
        return [_strip_defaults(v) for v in node]
    return node


def _immutability_rule(spec_schema: dict[str, Any]) -> dict[str, Any]:
    terms = []
    for field in spec_schema["properties"]:
        if field in MUTABLE_WHILE_RUNNING:
            continue
        terms.append(
            f"(has(self.spec.{field}) == has(oldSelf.spec.{field}) && "
            f"(!has(self.spec.{field}) || self.spec.{field} == oldSelf.spec.{field}))"
        )
    rule = (
        "!has(oldSelf.status) || (!has(oldSelf.status.childName) && !has(oldSelf.status.pytorchJobName)) || "
        f"({' && '.join(terms)})"
    )
    return cel(
        rule,
        "spec is immutable once the job's child (PyTorchJob or TrainJob) exists; only spec.suspend may change",
        ".spec",
    )


def openapi_schema(resource: type[BaseModel]) -> dict[str, Any]:
    raw = resource.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    schema = _resolve(raw, defs, resource.__name__)
    props = schema["properties"]
    props["metadata"] = {"type": "object"}
    props["apiVersion"] = {"type": "string", "description": "video2world.io/v1alpha1"}
    props["kind"] = {"type": "string", "description": resource.__name__}
    spec_model = resource.model_fields["spec"].annotation
    status_model = _model_of(resource.model_fields["status"].annotation)
    _apply_group_defaults(props["spec"], spec_model)
    _rules_instead_of_blocking_checks(props["spec"])
    props["status"] = _strip_defaults(props["status"])
    conditions = props["status"]["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    assert status_model is not None
    schema["required"] = ["spec"]
    schema["description"] = (resource.__doc__ or "").strip()
    schema["x-kubernetes-validations"] = [
        cel(
            f"size(self.metadata.name) <= {MAX_NAME_LENGTH}",
            f"metadata.name must be at most {MAX_NAME_LENGTH} characters: it names the job's child and its pods",
        ),
        # The training-operator's webhook and Trainer v2 take only DNS-1035 labels as child names, and `v2w-<name>`
        # is one exactly when the name has no dot (Kubernetes already keeps it to lower-case letters, digits, '-', '.').
        cel("!self.metadata.name.contains('.')",
            "metadata.name must not contain '.': it names the job's child (PyTorchJob or TrainJob), whose controller "
            "takes only DNS labels"),
        _immutability_rule(props["spec"]),
    ]
    return schema


def _printer_columns(names: KindNames) -> list[dict[str, Any]]:
    columns = [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Lifecycle phase."},
        {"name": "Progress", "type": "string", "jsonPath": ".status.progress.summary", "description": "Videos and steps done."},
        {"name": "GPUs", "type": "integer", "jsonPath": ".spec.parallelism.gpus", "description": "GPUs in all."},
    ]
    if names is BEST_OF_N_JOB:
        columns.append(
            {"name": "Best", "type": "integer", "jsonPath": ".status.best.score", "description": "Best critic score, 0-100."}
        )
    columns += [
        {"name": "Model", "type": "string", "jsonPath": ".spec.model.size", "priority": 1, "description": "Model size."},
        {"name": "Child", "type": "string", "jsonPath": ".status.childName", "priority": 1,
         "description": "The child that runs the pods (status.childKind: PyTorchJob or TrainJob)."},
        {"name": "Cold start", "type": "number", "jsonPath": ".status.coldStart.seconds", "priority": 1,
         "description": "Seconds from the pod's start to the first sampling step (status.coldStart has the parts)."},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return columns


def crd(names: KindNames, resource: type[BaseModel], schema: dict[str, Any] | None = None,
        columns: list[dict[str, Any]] | None = None, subresources: dict[str, Any] | None = None) -> dict[str, Any]:
    """The CRD of a kind: a job's by default (its schema and columns), or the schema, columns and subresources given."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": names.crd_name},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": names.kind,
                "listKind": f"{names.kind}List",
                "plural": names.plural,
                "singular": names.singular,
                "shortNames": list(names.short_names),
                "categories": list(names.categories),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": subresources or {"status": {}},
                    "additionalPrinterColumns": columns or _printer_columns(names),
                    "schema": {"openAPIV3Schema": schema or openapi_schema(resource)},
                }
            ],
        },
    }


# A pool's name becomes its Deployment's (`v2wpool-<name>`), whose ReplicaSets and pods add suffixes.
MAX_POOL_NAME_LENGTH = 40


def pool_schema() -> dict[str, Any]:
    """The pool's schema: the jobs' groups (same defaults and rules); its spec may change at any time (a new
    spec rolls the workers)."""
    raw = Video2WorldPool.model_json_schema(by_alias=True, mode="validation")
    schema = _resolve(raw, raw.get("$defs", {}), Video2WorldPool.__name__)
    props = schema["properties"]
    props["metadata"] = {"type": "object"}
    props["apiVersion"] = {"type": "string", "description": "video2world.io/v1alpha1"}
    props["kind"] = {"type": "string", "description": "Video2WorldPool"}
    _apply_group_defaults(props["spec"], Video2WorldPool.model_fields["spec"].annotation)
    _rules_instead_of_blocking_checks(props["spec"])
    props["status"] = _strip_defaults(props["status"])
    conditions = props["status"]["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    schema["required"] = ["spec"]
    schema["description"] = (Video2WorldPool.__doc__ or "").strip()
    schema["x-kubernetes-validations"] = [
        cel(f"size(self.metadata.name) <= {MAX_POOL_NAME_LENGTH}",
            f"metadata.name must be at most {MAX_POOL_NAME_LENGTH} characters: it names the workers' Deployment"),
        cel("!self.metadata.name.contains('.')", "metadata.name must not contain '.': it names the workers' "
            "Deployment and ServiceAccount"),
    ]
    return schema


def pool_crd() -> dict[str, Any]:
    names = VIDEO2WORLD_POOL
    columns = [
        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas", "description": "Workers wanted."},
        {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas", "description": "Workers up."},
        {"name": "Busy", "type": "integer", "jsonPath": ".status.busyWorkers", "description": "Workers running a job."},
        {"name": "Queue", "type": "integer", "jsonPath": ".status.queueLength", "description": "Jobs waiting for a worker."},
        {"name": "Model", "type": "string", "jsonPath": ".spec.model.size", "description": "Model size."},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    scale = {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
             "labelSelectorPath": ".status.selector"}
    return crd(names, Video2WorldPool, pool_schema(), columns, {"status": {}, "scale": scale})


def all_crds() -> dict[str, dict[str, Any]]:
    """File name → CRD, for every kind."""
    return {
        f"{GROUP}_{VIDEO2WORLD_JOB.plural}.yaml": crd(VIDEO2WORLD_JOB, Video2WorldJob),
        f"{GROUP}_{BEST_OF_N_JOB.plural}.yaml": crd(BEST_OF_N_JOB, BestOfNJob),
        f"{GROUP}_{VIDEO2WORLD_POOL.plural}.yaml": pool_crd(),
    }


def peering_crds() -> dict[str, dict[str, Any]]:
    """kopf's peering kinds (kopf.dev/v1), in which replicas run with `--peering` keep their keep-alives and elect the
    one that acts: ClusterKopfPeering for an operator of all namespaces, KopfPeering for one of some namespaces.
    kopf writes each replica's entry under `status` of the main resource (no status subresource)."""
    docs = {}
    for kind, scope in (("ClusterKopfPeering", "Cluster"), ("KopfPeering", "Namespaced")):
        plural = kind.lower() + "s"
        docs[f"kopf.dev_{plural}.yaml"] = {
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.kopf.dev"},
            "spec": {"group": "kopf.dev", "scope": scope,
                     "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                         "type": "object", "description": "kopf's peering: the keep-alives of the operator's replicas.",
                         "properties": {"status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}]},
        }
    return docs


HEADER = "# Generated by `python -m v2w_operator.crds` from the pydantic models. Do not edit.\n"


def render(doc: dict[str, Any]) -> str:
    return HEADER + yaml.safe_dump(doc, sort_keys=False, width=120, allow_unicode=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write (or check) the CRDs generated from the API models.")
    parser.add_argument("--out", type=Path, default=Path("crds"), help="folder for the CRD YAML files (default: crds)")
    parser.add_argument("--chart", type=Path, default=Path("charts/video2world-operator/crds"),
                        help="the Helm chart's copy, kept identical (default: charts/video2world-operator/crds)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a folder differs from the models")
    args = parser.parse_args(argv)
    drift = False
    targets = [(folder / name, doc) for folder in (args.out, args.chart)
               for name, doc in {**all_crds(), **peering_crds()}.items()]
    for path, doc in targets:
        text = render(doc)
        if args.check:
            current = path.read_text() if path.exists() else ""
            if current != text:
                drift = True
                sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), text.splitlines(True), str(path), "generated"))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if drift:
        print("the CRDs are out of date: run `python -m v2w_operator.crds`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
