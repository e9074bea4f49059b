"""MD5 sums of upstream's release files, and reading a table of one's own.

`UPSTREAM_MD5` is the part of upstream's own table (`MD5_CHECKSUM_LOOKUP` in nvidia-cosmos/cosmos-predict2's
scripts/download_checkpoints.py, which checks a download with it) that covers what this runtime loads:
the Video2World DiT variants and VAE, Cosmos-Reason1-7B, t5-11b and the guardrail's release files. Paths
are relative to the `checkpoints/` tree. A release can change on the Hub after that table was written:
`--md5 FILE` checks against a table the user gives instead (`md5sum` output, or a JSON object of path to sum).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from .common import CheckpointError

UPSTREAM_MD5 = {
    "nvidia/Cosmos-Predict2-2B-Video2World/model-720p-16fps.pt": "66157e5aece452a5a121cbb6fe0580ac",
    "nvidia/Cosmos-Predict2-2B-Video2World/model-720p-10fps.pt": "1884e792fe3a57c3384c68ff1c0ef0d3",
    "nvidia/Cosmos-Predict2-2B-Video2World/model-480p-10fps.pt": "af1e352c5a8fb52ee1de19e307731b6b",
    "nvidia/Cosmos-Predict2-2B-Video2World/model-480p-16fps.pt": "dad6861b72d595f6fae8d91c08a58e9e",
    "nvidia/Cosmos-Predict2-14B-Video2World/model-720p-16fps.pt": "79c86aa3c91897d9d402e70a3525ed96",
    "nvidia/Cosmos-Predict2-14B-Video2World/model-720p-10fps.pt": "34730e3d5e65c4c590f3a88ca3fd4e74",
    "nvidia/Cosmos-Predict2-14B-Video2World/model-480p-10fps.pt": "b1dcd8adbe82e69496532d1e237c7022",
    "nvidia/Cosmos-Predict2-14B-Video2World/model-480p-16fps.pt": "53a04f51880272d9f4a5c4460b82966d",
    "nvidia/Cosmos-Predict2-2B-Video2World/tokenizer/tokenizer.pth": "854fcb755005951fa5b329799af6199f",
    "nvidia/Cosmos-Predict2-14B-Video2World/tokenizer/tokenizer.pth": "854fcb755005951fa5b329799af6199f",
    "nvidia/Cosmos-Reason1-7B/model-00001-of-00004.safetensors": "90198d3b3dab5a00b7b9288cecffa5e9",
    "nvidia/Cosmos-Reason1-7B/model-00002-of-00004.safetensors": "6bde197d212f2a83ae19585b87de500e",
    "nvidia/Cosmos-Reason1-7B/model-00003-of-00004.safetensors": "c999ec0bc79fccf2f2cdba598d4e951f",
    "nvidia/Cosmos-Reason1-7B/model-00004-of-00004.safetensors": "232e93dfc82361ea8b0678fffc8660ef",
    "google-t5/t5-11b/pytorch_model.bin": "f890878d8a162e0045a25196e27089a3",
    "nvidia/Cosmos-Guardrail1/face_blur_filter/Resnet50_Final.pth": "bce939bc22d8cec91229716dd932e56e",
    "nvidia/Cosmos-Guardrail1/video_content_safety_filter/safety_filter.pt": "b46dc2ad821fc3b0d946549d7ade19cf",
    "nvidia/Cosmos-Guardrail1/video_content_safety_filter/models--google--siglip-so400m-patch14-384/snapshots/"
    "9fdffc58afc957d1a03a25b10dba0329ab15c2a3/model.safetensors": "f4c887e55e159f96453e18a1d6ca984f",
    "meta-llama/Llama-Guard-3-8B/model-00001-of-00004.safetensors": "5748060ae47b335dc19263060c921a54",
    "meta-llama/Llama-Guard-3-8B/model-00002-of-00004.safetensors": "89e7dce10959cab81c0d09468a873f33",
    "meta-llama/Llama-Guard-3-8B/model-00003-of-00004.safetensors": "e7e5f50ecdb02a946d071373a52c01b8",
    "meta-llama/Llama-Guard-3-8B/model-00004-of-00004.safetensors": "a94c830cafe5e1d8d54ea2f83378b234",
}

_HEX = re.compile(r"[0-9a-f]{32}")


def read_table(path: str | Path) -> dict[str, str]:
    """A table of expected sums: `md5sum` lines (`<sum>  <path>`) or a JSON object {path: sum}."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"--md5 {path}: cannot be read ({exc})") from None
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"--md5 {path}: not valid JSON ({exc})") from None
        table = {str(k): str(v).lower() for k, v in data.items()}
    else:
        table = {}
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.strip().split(None, 1)
            if len(parts) != 2:
                raise CheckpointError(f"--md5 {path}:{number}: expected '<md5>  <path>', found {line.strip()!r}")
            table[parts[1].lstrip("*")] = parts[0].lower()
    table = {k.removeprefix("./").lstrip("/"): v for k, v in table.items()}
    bad = [k for k, v in table.items() if not _HEX.fullmatch(v)]
    if bad:
        raise CheckpointError(f"--md5 {path}: not an MD5 sum for {', '.join(bad[:5])}")
    return table


def md5_of(path: Path, chunk: int = 16 * 1024 * 1024) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


__all__ = ["UPSTREAM_MD5", "md5_of", "read_table"]
