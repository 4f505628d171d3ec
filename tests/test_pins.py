"""Scanning pin folders: every bad file becomes a rejected row with a reason."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pinshop_cli.errors import PinshopError
from pinshop_cli.io.images import ImageRejected, check_image, load_image
from pinshop_cli.io.pins import PinFile, scan_pins

MAX = 64_000_000


def test_scan_rejects_bad_files_and_duplicates(tmp_path, bad_images, sample_dir):
    # ultralytics patches PIL.Image.open to pip-install a HEIF plugin on unknown files;
    # scanning must still just reject them.
    import ultralytics.utils.patches  # noqa: F401

    pins = tmp_path / "pins"
    (pins / "nested").mkdir(parents=True)
    shutil.copy(sample_dir / "pins" / "7303782.jpg", pins / "a.jpg")
    shutil.copy(sample_dir / "pins" / "7303782.jpg", pins / "nested" / "same-photo.jpg")
    for path in bad_images.values():
        shutil.copy(path, pins / path.name)
    (pins / ".hidden.jpg").write_text("ignored")
    found = {p.path.rsplit("/", 1)[-1]: p for p in scan_pins(pins, max_pixels=64_000_000)}
    assert ".hidden.jpg" not in found
    assert found["a.jpg"].status == "ok" and found["a.jpg"].width == 683
    assert found["same-photo.jpg"].reason.startswith("duplicate of")
    assert found["empty.jpg"].reason == "empty file (0 bytes)"
    assert "not an image" in found["notes.jpg"].reason
    assert found["readme.txt"].reason == "not an image file (.txt)"
    assert "decompression bomb" in found["bomb.png"].reason
    # A truncated JPEG has a valid header: it is caught later, at full decode.
    assert found["truncated.jpg"].status == "ok"


def test_list_file_of_paths(tmp_path, sample_dir):
    listing = tmp_path / "pins.txt"
    photo = sample_dir / "pins" / "7303994.jpg"
    listing.write_text(f"# my pins\n{photo}\nmissing.jpg\n{photo}\n")  # one listed twice
    found = scan_pins(listing, max_pixels=64_000_000)
    assert [p.status for p in found] == ["ok", "rejected"]
    assert "image not found" in found[1].reason


# -- every bad input is a row with a reason, never an exception or a hang (issue #8) ----------

@pytest.fixture
def no_hang():
    """Opening a FIFO blocks forever and /dev/zero never ends: fail instead of hanging."""
    def expire(signum, frame):
        raise TimeoutError("scan blocked: it opened a FIFO or a device")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def by_name(pins: list[PinFile]) -> dict[str, PinFile]:
    assert all("\n" not in p.reason for p in pins)
    return {Path(p.path).name: p for p in pins}


def test_single_image_is_one_pin(tmp_path, sample_dir):
    photo = sample_dir / "pins" / "7303782.jpg"
    assert [(p.status, p.width) for p in scan_pins(photo, MAX)] == [("ok", 683)]
    unnamed = tmp_path / "photo-without-suffix"  # recognised by its first bytes
    shutil.copy(photo, unnamed)
    assert [p.status for p in scan_pins(unnamed, MAX)] == ["ok"]
    (tmp_path / "empty.png").write_bytes(b"")
    [pin] = scan_pins(tmp_path / "empty.png", MAX)
    assert (pin.status, pin.reason) == ("rejected", "empty file (0 bytes)")


def test_unusable_source_is_a_clear_error(tmp_path, no_hang):
    binary = tmp_path / "pins.bin"
    binary.write_bytes(b"\x00\xff\xfe\x80 not text")
    with pytest.raises(PinshopError, match="not UTF-8 text") as error:
        scan_pins(binary, MAX)
    assert "\n" not in str(error.value)
    with pytest.raises(PinshopError, match="pins not found"):
        scan_pins(tmp_path / "missing", MAX)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(PinshopError, match="not a directory or a regular file"):
        scan_pins(tmp_path / "fifo", MAX)


def test_list_file_bad_paths_become_rows(tmp_path, sample_dir):
    (tmp_path / "loop.jpg").symlink_to("loop.jpg")
    (tmp_path / "folder.jpg").mkdir()
    entries = [str(sample_dir / "pins" / "7303994.jpg"), "loop.jpg", "folder.jpg",
               "bad\x00name.jpg", "x" * 300 + ".jpg", "~no-such-user-pinshop/a.jpg"]
    listing = tmp_path / "pins.txt"
    listing.write_text("\ufeff" + "\n".join(entries) + "\n", encoding="utf-8")  # BOM is fine
    found = scan_pins(listing, MAX)
    assert [p.status for p in found] == ["ok"] + ["rejected"] * 5
    reasons = [p.reason for p in found[1:]]
    assert "symbolic links" in reasons[0]
    assert reasons[1] == "not a regular file (a directory)"
    assert reasons[2] == "unreadable path: embedded null byte"
    assert reasons[3] == "unreadable path: File name too long"
    assert reasons[4].startswith("image not found")
    assert all("\n" not in r for r in reasons)


def test_folder_special_files_become_rows(tmp_path, sample_dir, no_hang):
    pins = tmp_path / "pins"
    (pins / "album.jpg").mkdir(parents=True)
    shutil.copy(sample_dir / "pins" / "7303782.jpg", pins / "album.jpg" / "inside.jpg")
    (pins / "loop.jpg").symlink_to("loop.jpg")
    (pins / "zero.jpg").symlink_to("/dev/zero")
    os.mkfifo(pins / "pipe.jpg")
    (pins / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    (pins / "linked").symlink_to(sample_dir / "pins", target_is_directory=True)
    found = by_name(scan_pins(pins, MAX))
    assert found.pop("inside.jpg").status == "ok"
    assert {name: p.reason for name, p in found.items()} == {
        "album.jpg": "not a regular file (a directory)",
        "loop.jpg": "unreadable path: Too many levels of symbolic links",
        "zero.jpg": "not a regular file (a character device)",
        "pipe.jpg": "not a regular file (a named pipe)",
        "dangling.jpg": "broken symlink (its target does not exist)",
        "linked": "symlinked directory (not followed)",
    }


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_files_and_folders_become_rows(tmp_path, sample_dir):
    pins = tmp_path / "pins"
    (pins / "locked").mkdir(parents=True)
    shutil.copy(sample_dir / "pins" / "7303782.jpg", pins / "secret.jpg")
    (pins / "secret.jpg").chmod(0)
    (pins / "locked").chmod(0)
    try:
        found = by_name(scan_pins(pins, MAX))
    finally:
        (pins / "locked").chmod(0o755)
    assert found["secret.jpg"].reason == "unreadable image: Permission denied"
    assert found["locked"].reason == "unreadable directory: Permission denied"


def test_permission_errors_become_rows_even_as_root(tmp_path, sample_dir, monkeypatch):
    """The same refusals as above, with the errors injected: tests usually run as root."""
    from pinshop_cli.io import images

    def denied(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    real_scandir = os.scandir
    pins = tmp_path / "pins"
    (pins / "locked").mkdir(parents=True)
    shutil.copy(sample_dir / "pins" / "7303782.jpg", pins / "secret.jpg")
    monkeypatch.setattr(images, "_pil_open", denied)
    monkeypatch.setattr(os, "scandir", lambda path=".": (
        denied(path) if Path(path).name == "locked" else real_scandir(path)))
    found = by_name(scan_pins(pins, MAX))
    assert found["secret.jpg"].reason == "unreadable image: Permission denied"
    assert found["locked"].reason == "unreadable directory: Permission denied"


def test_bad_paths_are_rejects_not_exceptions():
    for path in (Path("bad\x00name.jpg"), Path("x" * 300 + ".jpg")):
        for check in (check_image, load_image):
            with pytest.raises(ImageRejected, match="unreadable path"):
                check(path)


def test_sixteen_bit_png_keeps_its_tones(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (32, 1))
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    assert Image.open(tmp_path / "ramp.png").mode == "I;16"
    pixels = np.asarray(load_image(tmp_path / "ramp.png"))
    assert pixels.dtype == np.uint8 and pixels.shape == (32, 256, 3)
    assert pixels.min() == 0 and pixels.max() == 255
    assert abs(pixels.mean() - 127.5) < 1


def _palette_with_transparency() -> Image.Image:
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 255, 0, 0])
    image.info["transparency"] = 0
    return image


@pytest.mark.parametrize(("image", "suffix", "expected"), [
    (Image.new("RGBA", (8, 8), (0, 0, 0, 0)), ".png", (255, 255, 255)),  # white, not black
    (Image.new("LA", (8, 8), (0, 0)), ".png", (255, 255, 255)),
    (_palette_with_transparency(), ".png", (255, 255, 255)),
    (Image.new("RGBA", (8, 8), (255, 0, 0, 255)), ".png", (255, 0, 0)),
    (Image.new("L", (8, 8), 100), ".png", (100, 100, 100)),
    (Image.new("CMYK", (8, 8), (255, 0, 0, 0)), ".jpg", (0, 255, 255)),  # cyan
], ids=["RGBA", "LA", "P-transparency", "RGBA-opaque", "L", "CMYK"])
def test_every_colour_mode_loads_as_rgb(tmp_path, image, suffix, expected):
    path = tmp_path / f"image{suffix}"
    image.save(path, **({"transparency": 0} if image.mode == "P" else {}))
    loaded = load_image(path)
    assert loaded.mode == "RGB"
    assert np.abs(np.asarray(loaded, np.int16) - expected).max() <= 3


def test_size_is_recorded_as_displayed(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait (a phone held upright)
    Image.new("RGB", (40, 20), "red").save(tmp_path / "turned.jpg", exif=exif.tobytes())
    [pin] = scan_pins(tmp_path / "turned.jpg", MAX)
    assert (pin.width, pin.height) == (20, 40)
    assert check_image(tmp_path / "turned.jpg") == (20, 40)
    assert load_image(tmp_path / "turned.jpg").size == (20, 40)


def test_only_a_pin_an_earlier_run_kept_under_another_path_is_a_duplicate(tmp_path):
    import pyarrow.parquet as pq

    from pinshop_cli.ingestion.pin_rows import duplicates_of_earlier, pins_table

    kept_path = "/photos/a\nroom.jpg"  # a line break in a name: the reason stays one line
    pq.write_table(pins_table([
        PinFile(kept_path, "h" * 16, "h"), PinFile("/photos/rescanned.jpg", "r" * 16, "r"),
        PinFile("/photos/bad.jpg", "b" * 16, "b", status="rejected", reason="truncated")]),
        tmp_path / "pins.parquet")
    now = pins_table([PinFile("/new/copy.jpg", "h" * 16, "h"),
                      PinFile("/photos/rescanned.jpg", "r" * 16, "r"),  # not its own copy
                      PinFile("/new/bad-again.jpg", "b" * 16, "b")])  # its first was refused
    rows = {r["path"]: (r["status"], r["reason"])
            for r in duplicates_of_earlier(tmp_path / "pins.parquet", now).to_pylist()}
    assert rows == {"/new/copy.jpg": ("rejected", "duplicate of /photos/a room.jpg"),
                    "/photos/rescanned.jpg": ("ok", ""), "/new/bad-again.jpg": ("ok", "")}
