"""The base class of every API model, and the URI patterns shared by the spec and the runtime."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, WrapValidator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

GROUP = "video2world.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Patterns are written so that Python's `re`, pydantic's Rust regex and Kubernetes' ECMA-262
# validation read them the same way (no look-arounds, no backreferences).
# No `\s`: Go's RE2 (the API server) reads it as ASCII space only, pydantic's Rust regex as every Unicode
# space, so the two disagreed on a URI holding U+00A0 or U+2028. This class spells out controls, space and
# every Unicode White_Space character in the `\x{...}` form both RE2 and Rust read (Python's `re` does not:
# see `python_pattern`).
NOT_SPACE = r"[^\x00-\x20\x7f\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]"
# Unicode's White_Space characters: what CEL's `trim()` on the API server removes (Go's unicode.IsSpace), and
# so what counts as blank on both sides. Python's own `str.strip()` also removes \x1c-\x1f, which Go keeps.
WHITE_SPACE = "\t\n\v\f\r \x85\xa0\u1680" + "".join(chr(c) for c in range(0x2000, 0x200B)) + "\u2028\u2029\u202f\u205f\u3000"
S3_URI = r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/" + NOT_SPACE + r"*)?$"
PVC_URI = r"^pvc://[a-z0-9]([\-a-z0-9]*[a-z0-9])?(/" + NOT_SPACE + r"*)?$"
HTTP_URI = r"^https?://[^/" + NOT_SPACE[2:] + r"+(/" + NOT_SPACE + r"*)?$"
# A checkpoint or weights file lives on a PVC or in S3.
STORAGE_URI = r"^(s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]|pvc://[a-z0-9]([\-a-z0-9]*[a-z0-9])?)(/" + NOT_SPACE + r"*)?$"
# An input image or video may also be fetched over HTTP(S).
# (One path part for all three schemes: the API server's rule costs the length of the pattern.)
INPUT_URI = (r"^(s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]|pvc://[a-z0-9]([\-a-z0-9]*[a-z0-9])?|https?://[^/"
             + NOT_SPACE[2:] + r"+)(/" + NOT_SPACE + r"*)?$")
# A `..` path segment anywhere in a URI: refused so that no URI can climb out of its volume or prefix.
DOT_DOT_SEGMENT = r"(^|/)\.\.(/|$)"
# Output names are single path segments: nothing a user writes can leave the job's output prefix.
OUTPUT_NAME = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$"
DNS_LABEL = r"^[a-z0-9]([\-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([\-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([\-a-z0-9]*[a-z0-9])?)*$"

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".gif")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def python_pattern(pattern: str) -> str:
    """The same pattern for Python's `re` (which spells `\\x{a0}` as `\\u00a0`)."""
    return re.sub(r"\\x\{([0-9a-fA-F]+)\}", lambda m: "\\u" + m.group(1).rjust(4, "0"), pattern)


def has_dot_dot_segment(uri: str) -> bool:
    return re.search(DOT_DOT_SEGMENT, uri.split("://", 1)[-1]) is not None


def is_blank(text: str) -> bool:
    """True for an empty text or one of white space only, as the API server's CEL `trim()` reads it."""
    return not text.strip(WHITE_SPACE)


def is_image_uri(uri: str) -> bool:
    """True when the URI's path names a still image by its suffix (query strings ignored)."""
    path = uri.split("?", 1)[0].lower()
    return path.endswith(IMAGE_SUFFIXES)


def cel(rule: str, message: str, field_path: str | None = None, reason: str | None = None) -> dict[str, Any]:
    """One `x-kubernetes-validations` entry."""
    entry: dict[str, Any] = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    if reason:
        entry["reason"] = reason
    return entry


# The JSON-schema key that carries a pattern's message to the CRD generator, which turns the pattern into a
# CEL rule with that message (the API server's own refusal of a pattern shows the raw regex).
PATTERN_MESSAGE = "x-v2w-pattern-message"


def _readable(message: str):
    def check(value: Any, handler) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            if any(err["type"] == "string_pattern_mismatch" for err in exc.errors()):
                raise PydanticCustomError("string_pattern_mismatch", message) from None
            raise

    return WrapValidator(check)


def matching(pattern: str, message: str, max_length: int, *validators: Any, rules: list[dict] | tuple = ()) -> Any:
    """A string that must match `pattern`, refused with `message` a person reads ("must be an s3:// URI
    with a bucket") by pydantic and, through the CEL rule the CRD generator makes of it, by the API server.
    `validators` come after the pattern (outermost last); `rules` are further CEL rules of the field."""
    extra: dict[str, Any] = {PATTERN_MESSAGE: message}
    if rules:
        extra["x-kubernetes-validations"] = list(rules)
    return Annotated[str, StringConstraints(pattern=pattern, max_length=max_length), _readable(message), *validators,
                     Field(json_schema_extra=extra)]


class APIModel(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields refused (as `kubectl apply` does)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON form Kubernetes stores: camelCase keys, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
