"""What a run leaves behind: H.264 MP4s, their side files, and where they are published.

Every file is written under a temporary name and renamed when complete, so nothing half-written is
ever presented as done. With an S3 output prefix, files are staged locally and uploaded as they finish.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from v2w_api.manifest import PROGRESS_FILE, RESULT_FILE

from . import storage


class OutputPathError(ValueError):
    """An output name would leave the output folder or prefix."""


@dataclass
class OutputTarget:
    """The output folder (local) and, optionally, the S3 prefix it is published to."""

    root: Path
    uri: str | None = None  # s3://bucket/prefix when uploading
    # The run's own progress and result files (RunOutput.progress_file / result_file).
    progress_file: str = PROGRESS_FILE
    result_file: str = RESULT_FILE

    def path(self, name: str) -> Path:
        return self.root / safe_name(name, str(self.uri or self.root))

    def uri_of(self, name: str) -> str:
        name = safe_name(name, str(self.uri or self.root))
        return storage.join(self.uri, name) if self.uri else str(self.root / name)

    def publish(self, path: Path, content_type: str | None = None) -> str:
        """Upload a finished file under the prefix (no-op locally); returns where it now is."""
        name = path.resolve().relative_to(self.root.resolve()).as_posix()
        if not self.uri:
            return str(path)
        return storage.put_file(path, storage.join(self.uri, name), content_type)

    @classmethod
    def staged(cls, uri: str, prefix: str) -> "OutputTarget":
        """A target for the S3 prefix `uri`, its files staged in a new folder under V2W_STAGING_DIR (else the
        system's temporary folder) until they are uploaded."""
        root = Path(tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("V2W_STAGING_DIR")))
        return cls(root, uri.rstrip("/"))

    def names(self) -> set[str]:
        """Every file already under the prefix (S3) or folder (local), as names relative to it."""
        if self.uri:
            return set(storage.s3_list(self.uri))
        if not self.root.is_dir():
            return set()
        return {p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()}

    def top_names(self) -> set[str]:
        """The finished files at the top of the folder or prefix (a file being written locally ends in .partial)."""
        return {n for n in self.names() if "/" not in n and not n.endswith(".partial")}

    def fetch(self, name: str) -> Path:
        """A local copy of the file `name` (downloaded from the prefix when it is not staged here)."""
        local = self.path(name)
        if self.uri and not local.is_file():
            storage.s3_download_file(self.uri_of(name), local)
        if not local.is_file():
            raise storage.StorageError(f"{self.uri_of(name)}: no such file")
        return local

    def read_json(self, name: str):
        try:
            return json.loads(self.fetch(name).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{self.uri_of(name)}: not valid JSON ({exc})") from None

    def write_text(self, name: str, text: str, content_type: str = "text/plain; charset=utf-8") -> str:
        """Write and publish a text file; returns where it now is."""
        write_text(self.path(name), text)
        return self.publish(self.path(name), content_type)

    def write_json(self, name: str, data) -> str:
        write_json(self.path(name), data)
        return self.publish(self.path(name), "application/json")

    def put(self, source: Path, name: str, content_type: str | None = None) -> str:
        """Copy the local file `source` in as `name` and publish it."""
        out = self.path(name)
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")
        shutil.copyfile(source, partial)
        partial.replace(out)
        return self.publish(out, content_type)

    def remove(self, name: str) -> None:
        if self.uri:
            storage.s3_delete(self.uri_of(name))
        self.path(name).unlink(missing_ok=True)

    def discard_staging(self) -> None:
        """Delete the local staging folder of an S3 target, however the run ended.

        The prefix is what counts (a restarted attempt resumes from it and stages anew), so nothing is
        lost. A local target's folder is the output itself and is never touched.
        """
        if self.uri:
            shutil.rmtree(self.root, ignore_errors=True)


def safe_name(name: str, where: str) -> str:
    """`name` as a relative POSIX path that stays inside the output folder/prefix, or OutputPathError."""
    text = str(name).replace("\\", "/")
    pure = PurePosixPath(text)
    if not text or pure.is_absolute() or "://" in text or ".." in pure.parts or pure.name in ("", "."):
        raise OutputPathError(f"output {name!r} must be a relative file name inside {where} (no '..', not absolute)")
    return pure.as_posix()


def resolve_output(name: str, root: Path) -> str:
    """A batch entry's `output_video` as a name under `root`.

    Accepts the seed's form (`output/x.mp4`, relative to the working directory and inside `root`)
    and bare names (`x.mp4`, taken under `root`); `.mp4` is added when missing. Anything that would
    end outside `root` is refused.
    """
    text = str(name).replace("\\", "/")
    if "://" in text:
        raise OutputPathError(f"output {name!r}: give a file name; use --output_uri to write to S3")
    if _CONTROL.search(text):
        # A NUL would fail deep in the file system calls, other controls make unreadable keys and logs.
        raise OutputPathError(f"output {name!r} holds a control character")
    root_abs = Path(os.path.abspath(root))
    if PurePosixPath(text).is_absolute():
        candidate = Path(os.path.abspath(text))
    else:
        from_cwd = Path(os.path.abspath(text))  # the seed's form: relative to the working directory
        candidate = from_cwd if _inside(from_cwd, root_abs) else Path(os.path.abspath(root_abs / text))
    if not _inside(candidate, root_abs) or candidate == root_abs:
        raise OutputPathError(f"output {name!r} escapes the output folder {root}")
    rel = candidate.relative_to(root_abs).as_posix()
    return rel if rel.lower().endswith(".mp4") else rel + ".mp4"


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def write_mp4(frames: np.ndarray, path: Path, fps: int) -> Path:
    """Encode (T, H, W, 3) uint8 frames as H.264 (yuv420p) at `fps`; atomic rename when done."""
    import imageio_ffmpeg

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, not {frames.shape} {frames.dtype}")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    height, width = frames.shape[1:3]
    writer = imageio_ffmpeg.write_frames(
        str(partial),
        (width, height),
        fps=fps,
        codec="libx264",
        quality=8,
        macro_block_size=16,
        output_params=["-f", "mp4", "-movflags", "+faststart"],
    )
    writer.send(None)
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()
    partial.replace(path)
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
    return path


def write_json(path: Path, data) -> Path:
    return write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def prompt_text(prompt: str, refined: str | None, negative: str | None) -> str:
    """The side file of prompts: the one the model saw first, then the original and the negative."""
    used = refined or prompt
    parts = [used]
    if refined and refined != prompt:
        parts += ["", "# Original prompt", prompt]
    if negative:
        parts += ["", "# Negative prompt", negative]
    return "\n".join(parts) + "\n"


def publish_video(target: OutputTarget, name: str, mp4: Path | None, prompts: str, record: dict) -> dict[str, str]:
    """Write and publish one video's side files (its prompts and its run record), then its encoded MP4 when there
    is one, last: its presence means the video is complete. Returns where each file now is, by role."""
    files = side_file_names(name)
    write_text(target.path(files["prompt"]), prompts)
    write_json(target.path(files["record"]), record)
    uris = {role: target.publish(target.path(file), "text/plain" if role == "prompt" else "application/json")
            for role, file in files.items()}
    if mp4 is not None:
        uris["video"] = target.publish(mp4, "video/mp4")
    return uris


def side_file_names(video_name: str) -> dict[str, str]:
    """Names of the side files next to a video: `<stem>.txt` (prompts) and `<stem>.json` (run record)."""
    stem = video_name[: -len(".mp4")] if video_name.lower().endswith(".mp4") else video_name
    return {"prompt": f"{stem}.txt", "record": f"{stem}.json"}


__all__ = [
    "OutputPathError",
    "OutputTarget",
    "prompt_text",
    "publish_video",
    "resolve_output",
    "safe_name",
    "side_file_names",
    "write_json",
    "write_mp4",
    "write_text",
]
