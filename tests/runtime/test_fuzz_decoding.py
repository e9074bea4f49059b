"""Malformed and unusual input files through the runtime's conditioning decoder, table and property based.

Every file either decodes into a correct conditioning tensor (T, H, W, 3) uint8 at the output size, or
is refused with a ConditioningError that names the input: never a raw Pillow/ffmpeg exception, never a
hang, never an allocation the size of what a header claims. Bounded and reproducible (derandomized,
no example database). A batch with one bad entry among good ones fails that entry alone.
"""

from __future__ import annotations

import http.server
import io
import json
import struct
import threading
import tracemalloc
import zlib
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from v2w_api.manifest import ResultManifest
from v2w_runtime.conditioning import ConditioningError, fit_frames, load_conditioning
from v2w_runtime.outputs import write_mp4
from v2w_runtime.tiny.inputs import write_video

from .conftest import read_json, read_video

H, W = 32, 48  # output size of these tests


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_claiming(width: int, height: int, bit_depth: int = 8, colour: int = 2) -> bytes:
    """A well-formed PNG header for width x height, with a few KB of pixel data (a decompression bomb's shape)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 200_000))
            + _png_chunk(b"IEND", b""))


def palette_picture(colour: tuple[int, int, int]) -> Image.Image:
    img = Image.new("P", (30, 20), 3)
    img.putpalette([0, 0, 0] * 3 + list(colour) + [255, 255, 255] * 252)
    return img


def encoded(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def noise(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("decode")
    picture = Image.fromarray(noise(40, 60, 0))
    video = write_video(folder / "eight.mp4", num_frames=8, height=48, width=64, fps=8, seed=1)
    video_bytes = video.read_bytes()
    gif_frames = [Image.new("L", (30, 20), 40 * (i + 1)) for i in range(6)]
    sideways = Image.new("RGB", (60, 40), (255, 0, 0))
    sideways.paste((0, 0, 255), (30, 0, 60, 40))  # stored: red left, blue right
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: red on top, blue below
    content: dict[str, bytes | None] = {
        "empty.png": b"", "empty.jpg": b"", "empty.mp4": b"",
        "truncated.png": encoded(picture, "PNG")[:80], "truncated.jpg": encoded(picture, "JPEG")[:300],
        "header-only.mp4": video_bytes[:700], "half.mp4": video_bytes[: len(video_bytes) // 2],
        "random.png": np.random.default_rng(1).bytes(3000), "random.jpg": np.random.default_rng(2).bytes(3000),
        "random.webp": np.random.default_rng(3).bytes(3000), "random.mp4": np.random.default_rng(4).bytes(3000),
        "bomb.png": png_claiming(60000, 60000), "bomb16.png": png_claiming(12000, 12000, bit_depth=16),
        "one.png": encoded(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG"),
        "grey.png": encoded(Image.new("L", (30, 20), 77), "PNG"),
        "rgba.png": encoded(Image.new("RGBA", (30, 20), (10, 200, 30, 40)), "PNG"),
        "palette.png": encoded(palette_picture((200, 100, 0)), "PNG"),
        "grey16.png": encoded(Image.fromarray(np.tile(np.linspace(0, 65535, 60).astype(np.uint16), (40, 1))), "PNG"),
        "cmyk.jpg": encoded(Image.new("CMYK", (30, 20), (0, 255, 255, 0)), "JPEG", quality=95),
        "strip.png": encoded(Image.fromarray(noise(20000, 1, 5)), "PNG"),  # 1 pixel wide, 20000 high
        "sideways.jpg": encoded(sideways, "JPEG", exif=exif, quality=95),
        "still.gif": encoded(gif_frames[0], "GIF"),
        "text.mp4": b"this is a text file, not a video\n",
        "video.png": video_bytes,  # a video under an image name
        "playlist.m3u8": None, "concat.mp4": None,  # filled in by the test, with the address of a local server
    }
    out = {"eight.mp4": video}
    for name, data in content.items():
        if data is not None:
            (folder / name).write_bytes(data)
        out[name] = folder / name
    gif_frames[0].save(folder / "six.gif", save_all=True, append_images=gif_frames[1:], duration=100)
    out["six.gif"] = folder / "six.gif"
    write_mp4(noise(48, 64, 6)[None].repeat(3, 0), folder / "three.mp4", 8)
    out["three.mp4"] = folder / "three.mp4"
    audio = folder / "audio.mp4"
    import subprocess

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=0.3", "-c:a", "aac", str(audio)], check=True, timeout=60)
    out["audio.mp4"] = audio
    return out


def decode(path: Path, frames: int = 1) -> np.ndarray:
    """load_conditioning under the input's logical name; a refusal must be ours and name the input."""
    name = f"s3://bucket/in/{path.name}"
    try:
        out = load_conditioning(path, frames, H, W, name=name)
    except ConditioningError as error:
        message = str(error)
        assert message.startswith(f"input {name}: "), message
        assert str(path.parent) not in message and "Traceback" not in message, message  # no local path
        raise
    assert out.shape == (frames, H, W, 3) and out.dtype == np.uint8
    return out


REFUSED = {
    # file: (conditioning frames, what the message says)
    "empty.png": (1, "the file is empty"),
    "empty.jpg": (1, "the file is empty"),
    "empty.mp4": (1, "the file is empty"),
    "truncated.png": (1, "not a readable image"),
    "truncated.jpg": (1, "not a readable image"),
    "random.png": (1, "not a readable image"),
    "random.jpg": (1, "not a readable image"),
    "random.webp": (1, "not a readable image"),
    "video.png": (1, "not a readable image"),
    "header-only.mp4": (1, "not a readable video"),
    "half.mp4": (1, "damaged or truncated"),  # used to give an earlier frame as if it were the last
    "random.mp4": (1, "not a readable video"),
    "text.mp4": (5, "not a readable video"),
    "audio.mp4": (1, "it has no video stream"),
    "bomb.png": (1, "more than the limit of 100,000,000 pixels"),
    "bomb16.png": (1, "the image is 12000x12000 pixels, which is more than the limit"),  # below Pillow's own limit
    "three.mp4": (5, "the video has 3 frame(s), 5-frame conditioning needs at least 5"),
    "still.gif": (5, "the video has 1 frame(s)"),  # ffmpeg used to repeat a still GIF's frame ten times
    "one.png": (5, "a still image gives one frame"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_bad_inputs_are_refused_naming_the_input(files, name):
    frames, says = REFUSED[name]
    tracemalloc.start()
    try:
        with pytest.raises(ConditioningError, match="^input .*" + _escape(says)):
            decode(files[name], frames)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50_000_000, f"{name}: {peak} bytes"  # nothing the size of the claimed picture


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_unusual_but_valid_pictures_decode_correctly(files):
    assert (decode(files["one.png"]) == (10, 200, 30)).all()  # 1x1 scaled up: one colour
    assert (decode(files["grey.png"]) == 77).all()
    assert (decode(files["rgba.png"]) == (10, 200, 30)).all()  # alpha dropped, colour kept
    assert (decode(files["palette.png"]) == (200, 100, 0)).all()
    cmyk = decode(files["cmyk.jpg"]).reshape(-1, 3).mean(axis=0)
    assert cmyk[0] > 200 and cmyk[1] < 40 and cmyk[2] < 40, cmyk  # cyan-free, magenta+yellow: red

    # 16-bit grey, a left-to-right ramp over the whole range: Pillow's conversion clipped it to white.
    ramp = decode(files["grey16.png"])[0, :, :, 0].astype(int)
    assert abs(ramp.mean() - 127.5) < 10 and ramp[:, 0].max() < 30 and ramp[:, -1].min() > 225
    assert (np.diff(ramp[0]) >= 0).all()

    # Camera pictures stored sideways with an EXIF orientation come out upright.
    upright = decode(files["sideways.jpg"])[0].astype(int)
    top, bottom = upright[: H // 2 - 2].reshape(-1, 3).mean(0), upright[H // 2 + 2 :].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60, (top, bottom)


def test_a_one_pixel_wide_strip_decodes_without_a_huge_intermediate(files):
    tracemalloc.start()
    try:
        out = decode(files["strip.png"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Scaling first to cover 32x48 made a 960000x48 picture (about 280 MB) before cropping.
    assert peak < 20_000_000, peak
    column = np.asarray(Image.open(files["strip.png"]))[:, 0].astype(int)  # (20000, 3)
    middle = column[10000 - 1 : 10000 + 1].mean(0)
    assert np.abs(out[0, H // 2, :].astype(int).mean(0) - middle).max() < 60


def test_videos_and_gifs_give_their_last_frames(files):
    decoded, _ = read_video(files["eight.mp4"])
    expected = fit_frames(decoded[-5:], H, W).astype(int)
    got = decode(files["eight.mp4"], 5).astype(int)
    assert np.abs(got - expected).mean() < 3  # ffmpeg crops and scales, close to our own scaling
    assert np.abs(got[-1] - expected[-1]).mean() < np.abs(got[-1] - fit_frames(decoded[-2:-1], H, W)[0]).mean()
    gif = decode(files["six.gif"], 5)
    assert [round(float(f.mean())) for f in gif] == [80, 120, 160, 200, 240]  # the last five of six, in order
    assert round(float(decode(files["six.gif"], 1).mean())) == 240


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi"])
def test_every_video_container_we_accept_decodes(tmp_path, suffix):
    import subprocess

    path = tmp_path / f"clip{suffix}"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                    "testsrc=size=64x48:rate=8:duration=1", "-pix_fmt", "yuv420p", str(path)], check=True, timeout=60)
    frames = decode(path, 5)
    assert frames.std() > 10  # the test pattern, not a blank frame


def test_pixel_limit_applies_to_pictures_and_video_frames(files, monkeypatch):
    monkeypatch.setenv("V2W_MAX_INPUT_PIXELS", "2000")
    with pytest.raises(ConditioningError, match=r"60x40 pixels.*limit of 2,000 pixels"):
        decode(files["one.png"].with_name("grey16.png"))
    with pytest.raises(ConditioningError, match="frames are more than the limit of 2,000 pixels"):
        decode(files["eight.mp4"])
    monkeypatch.setenv("V2W_MAX_INPUT_PIXELS", "lots")
    with pytest.raises(ConditioningError, match="V2W_MAX_INPUT_PIXELS must be a positive number, not 'lots'"):
        load_conditioning(files["eight.mp4"], 1, H, W)


def test_a_video_that_decodes_too_long_is_stopped(files, monkeypatch):
    monkeypatch.setenv("V2W_INPUT_DECODE_TIMEOUT_S", "0.001")
    with pytest.raises(ConditioningError, match=r"decoding took longer than 0.001 s"):
        decode(files["eight.mp4"])


def test_playlists_are_not_followed(files):
    """A playlist (named as a video or not) is refused without ffmpeg opening what it lists."""
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the standard library's name)
            requests.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        files["playlist.m3u8"].write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n{base}/a.ts\n#EXT-X-ENDLIST\n")
        files["concat.mp4"].write_text(f"ffconcat version 1.0\nfile '{base}/b.mp4'\nfile '{files['eight.mp4']}'\n")
        for name in ("playlist.m3u8", "concat.mp4"):
            with pytest.raises(ConditioningError, match="not a readable video"):
                decode(files[name])
    finally:
        server.shutdown()
    assert requests == []


# ---------------------------------------------------------------------------------- property based

FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SOURCES = ("png", "jpg", "gif", "webp", "tif", "bmp", "mp4")
NAMES = st.sampled_from([".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".gif", ".mp4", ".mov", ".webm", ""])


@pytest.fixture(scope="module")
def valid(files) -> dict[str, bytes]:
    picture = Image.fromarray(noise(24, 36, 7))
    formats = {"png": "PNG", "jpg": "JPEG", "gif": "GIF", "webp": "WEBP", "tif": "TIFF", "bmp": "BMP"}
    out = {ext: encoded(picture, fmt) for ext, fmt in formats.items()}
    out["mp4"] = files["eight.mp4"].read_bytes()
    return out


DAMAGE = st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=6)


@FUZZ
@given(source=st.sampled_from(SOURCES), keep=st.floats(0, 1), damage=DAMAGE, suffix=NAMES,
       frames=st.sampled_from([1, 5]))
@example(source="png", keep=1.0, damage=[], suffix=".png", frames=1)
@example(source="mp4", keep=0.6, damage=[], suffix=".mp4", frames=1)
@example(source="gif", keep=1.0, damage=[(0.5, 0)], suffix=".gif", frames=5)
def test_damaged_files_decode_or_are_refused(valid, tmp_path_factory, source, keep, damage, suffix, frames):
    data = bytearray(valid[source])
    for where, value in damage:
        data[int(where * len(data))] = value
    data = bytes(data[: max(0, round(keep * len(data)))])
    path = tmp_path_factory.mktemp("fuzz", numbered=True) / f"input{suffix}"
    path.write_bytes(data)
    try:
        decode(path, frames)
    except ConditioningError:
        pass


@FUZZ
@given(data=st.binary(max_size=4096), suffix=NAMES)
@example(data=b"\x89PNG\r\n\x1a\n", suffix=".png")
@example(data=b"\xff\xd8\xff", suffix=".jpg")
@example(data=b"GIF89a", suffix=".gif")
@example(data=b"\x00\x00\x00\x18ftypmp42", suffix=".mp4")
def test_random_bytes_are_refused(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("bytes", numbered=True) / f"input{suffix}"
    path.write_bytes(data)
    with pytest.raises(ConditioningError):
        decode(path)


# ------------------------------------------------------------------------------------------- batch


def test_a_bad_entry_fails_alone_in_a_batch(cli, media, files):
    bad = {"bomb": files["bomb.png"], "half": files["half.mp4"], "text": files["text.mp4"]}
    batch = [{"input_video": str(media["image"]), "prompt": "a harbour", "output_video": "first.mp4"},
             *({"input_video": str(path), "prompt": "a road", "output_video": f"{key}.mp4"} for key, path in bad.items()),
             {"input_video": str(media["video"]), "prompt": "a bridge", "output_video": "last.mp4"}]
    Path("batch.json").write_text(json.dumps(batch))
    run = cli("--batch_input_json", "batch.json")
    assert run.code == 1, run.err  # some failed, the run went on
    result = ResultManifest.model_validate(read_json("output/batch.result.json"))
    assert [(v.name, v.status) for v in result.videos] == [
        ("first.mp4", "succeeded"), ("bomb.mp4", "failed"), ("half.mp4", "failed"), ("text.mp4", "failed"),
        ("last.mp4", "succeeded")]
    for video, path in zip(result.videos[1:4], bad.values()):
        assert video.reason.startswith(f"input {path}: "), video.reason
    assert "pixels" in result.videos[1].reason and "damaged or truncated" in result.videos[2].reason
    assert Path("output/first.mp4").is_file() and Path("output/last.mp4").is_file()
    assert not any(Path("output", f"{key}.mp4").exists() for key in bad)


def test_single_input_bomb_exits_2_before_loading(cli, files):
    run = cli("--input_path", str(files["bomb.png"]), "--prompt", "a road", checkpoint="no-such-checkpoint")
    assert run.code == 2
    assert f"input {files['bomb.png']}: " in run.err and "more than the limit" in run.err
    assert "Traceback" not in run.err
