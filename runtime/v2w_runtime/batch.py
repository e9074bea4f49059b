"""Batch input: the seed's JSON list of `{input_video, prompt, output_video}` entries.

Each entry may also set `negative_prompt` and `seed`. The file may be local, on a PVC or in S3.
The API's spelling of an entry (`input`, `output`, `negativePrompt`) is accepted as well. A file
that is not such a list is refused as a whole, with the entry and field named; a bad input inside one
entry is that entry's failure only (decided later, when it is generated).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from v2w_api.spec import Prompt

from . import storage


class BatchError(ValueError):
    """The batch file cannot be used; the message names the file, the entry and the field."""


class BatchItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The seed's keys; the API's BatchEntry spelling (`input`, `output`, `negativePrompt`) is accepted too.
    input_video: str = Field(
        ..., min_length=1, validation_alias=AliasChoices("input_video", "input"),
        description="Conditioning image or video (path, pvc://, s3:// or https://).",
    )
    prompt: Prompt = Field(..., description="Text prompt (the API's rule: not empty, not only white space).")
    output_video: str = Field(
        ..., min_length=1, validation_alias=AliasChoices("output_video", "output"),
        description="Output file, inside the output folder.",
    )
    negative_prompt: str | None = Field(None, validation_alias=AliasChoices("negative_prompt", "negativePrompt"))
    seed: int | None = Field(None, ge=0, le=2**32 - 1)


def parse_batch(data, name: str) -> list[BatchItem]:
    if not isinstance(data, list):
        raise BatchError(f"batch file {name}: expected a JSON list of entries, found {type(data).__name__}")
    if not data:
        raise BatchError(f"batch file {name}: the list is empty")
    items = []
    for index, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise BatchError(f"batch file {name}: entry {index} is {type(entry).__name__}, expected an object")
        try:
            items.append(BatchItem.model_validate(entry))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'entry'}: {err['msg'].lower()}" for err in exc.errors()
            )
            raise BatchError(f"batch file {name}: entry {index}: {problems}") from None
    return items


def load_batch(uri: str, cache: Path) -> list[BatchItem]:
    try:
        raw = storage.read_bytes(uri, cache)
    except storage.StorageError as exc:
        raise BatchError(f"batch file {uri}: {exc}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BatchError(f"batch file {uri}: not valid JSON ({exc})") from None
    return parse_batch(data, uri)


__all__ = ["BatchError", "BatchItem", "load_batch", "parse_batch"]
