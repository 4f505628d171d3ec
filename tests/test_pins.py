"""Scanning pin folders: every bad file becomes a rejected row with a reason."""

from __future__ import annotations

import shutil

from pinshop_cli.pins import scan_pins


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
    listing.write_text(f"# my pins\n{sample_dir / 'pins' / '7303994.jpg'}\nmissing.jpg\n")
    found = scan_pins(listing, max_pixels=64_000_000)
    assert [p.status for p in found] == ["ok", "rejected"]
    assert "image not found" in found[1].reason
