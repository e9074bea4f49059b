"""crds/ is exactly what the models generate, and the schemas are structural."""

from __future__ import annotations

from pathlib import Path

from v2w_operator import crds

ROOT = Path(__file__).resolve().parents[2]


def test_crds_have_not_drifted_from_the_models(capsys):
    chart = ROOT / "charts" / "video2world-operator" / "crds"
    assert crds.main(["--out", str(ROOT / "crds"), "--chart", str(chart), "--check"]) == 0, capsys.readouterr().out


def _walk(node, path="$"):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def test_schemas_are_structural():
    for name, doc in crds.all_crds().items():
        schema = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in _walk(schema):
            for forbidden in ("$ref", "anyOf", "oneOf", "allOf", "$defs", "const", "title"):
                assert forbidden not in node, f"{name}: {path} has {forbidden}"
            if "properties" in node or "items" in node:
                assert node.get("type") in ("object", "array"), f"{name}: {path} lacks a type"


def test_every_spec_field_is_described():
    for name, doc in crds.all_crds().items():
        spec = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        for path, node in _walk(spec):
            if path.endswith(".properties"):
                for field, sub in node.items():
                    assert sub.get("description"), f"{name}: {path}.{field} has no description"


def test_printer_columns_and_names():
    docs = {d["spec"]["names"]["kind"]: d for d in crds.all_crds().values()}
    v2w, bon = docs["Video2WorldJob"], docs["BestOfNJob"]
    assert v2w["spec"]["names"]["shortNames"] == ["v2wjob", "v2wjobs"]
    assert bon["spec"]["names"]["shortNames"] == ["bonjob", "bonjobs"]
    for doc in (v2w, bon):
        assert doc["spec"]["names"]["categories"] == ["video2world"]
        cols = [c["name"] for c in doc["spec"]["versions"][0]["additionalPrinterColumns"]]
        assert cols[:3] == ["Phase", "Progress", "GPUs"] and cols[-1] == "Age"
    assert "Best" in [c["name"] for c in bon["spec"]["versions"][0]["additionalPrinterColumns"]]


def test_every_pattern_is_a_rule_with_a_readable_message():
    """The API server refuses a schema `pattern` by printing the regex; every pattern is a CEL rule with the
    message its type gives instead, and the spec's enums and required fields are rules as well (a failed
    enum or required check would skip every rule and add "some validation rules were not checked")."""
    for name, doc in crds.all_crds().items():
        schema = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in _walk(schema):
            assert "pattern" not in node and "x-v2w-pattern-message" not in node, f"{name}: {path}"
            for rule in node.get("x-kubernetes-validations", []):
                assert rule.get("message") and "matches(r'^" not in rule["message"], f"{name}: {path}: {rule}"
        for path, node in _walk(schema["properties"]["spec"]):
            assert "enum" not in node, f"{name}: {path}"
            # list-map keys stay required: Kubernetes needs them so
            assert set(node.get("required", [])) <= {"output"}, f"{name}: {path}"


def test_a_pattern_without_a_message_is_refused_by_the_generator():
    import pytest

    with pytest.raises(crds.SchemaError, match="without a message"):
        crds._resolve({"type": "string", "pattern": "^a$", "maxLength": 3}, {}, "X.field")
