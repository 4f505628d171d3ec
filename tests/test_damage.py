"""A damaged workspace file is one error, "<file> is damaged (<reason>): run <fix>", never a
traceback; and the named command repairs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pinshop_cli import DamagedFileError, build_indexes, ingest_events
from pinshop_cli.commands.main import app

DAMAGED = r"is damaged \(.+\): run `pinshop "


def garble(path: Path) -> None:
    path.write_bytes(b"\xff\x00 not what was written " * 3)


def fails_as_damaged(*args: str) -> DamagedFileError:
    result = CliRunner().invoke(app, list(args))
    assert isinstance(result.exception, DamagedFileError), (result.output, result.exception)
    return result.exception


@pytest.fixture
def with_events(copy_workspace: Callable[[], Path], tmp_path: Path) -> Path:
    root = copy_workspace()
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,event,ts\nann,P005,save,2026-11-01T10:00:00\n"
                      "bob,P005,purchase,2026-11-02T10:00:00\nbob,P001,save,2026-11-03T10:00:00\n")
    ingest_events(events, root)
    return root


@pytest.mark.parametrize("command", [
    ["match", "--text", "green velvet sofa"], ["similar", "P005"], ["index"],
    ["index", "--status"],  # a pyarrow traceback
    ["recommend", "--user", "ann"], ["changes"]])
def test_a_damaged_catalog(with_events: Path, command: list[str]) -> None:
    garble(with_events / "catalog.parquet")
    error = fails_as_damaged(*command, "-w", str(with_events))
    assert error.path.endswith("catalog.parquet") and "pinshop ingest CATALOG" in error.fix
    # Another Parquet table copied over it (rejects/catalog.parquet) is as damaged: it
    # gave DuckDB binder tracebacks.
    (with_events / "catalog.parquet").write_bytes(
        (with_events / "rejects" / "catalog.parquet").read_bytes())
    error = fails_as_damaged(*command, "-w", str(with_events))
    assert error.reason.startswith("not a catalog pinshop wrote: no column title")


def test_a_deleted_index_manifest_is_damage_not_no_index(with_events: Path) -> None:
    """Its files still there, the index was treated as never built: `recommend` answered
    without the photo index, `index --status` left it out, `similar` blamed the product."""
    from pinshop_cli import index_status

    (with_events / "indexes" / "product_image.json").unlink()
    error = fails_as_damaged("recommend", "--user", "ann", "-w", str(with_events))
    assert error.path.endswith("product_image.json") and error.reason == "missing"
    assert [s.state for s in index_status(with_events) if s.name == "product_image"] == [
        "DAMAGED: run `pinshop index`"]
    build_indexes(with_events)
    assert all(s.state == "current" for s in index_status(with_events))


def test_damaged_detections_in_index_status(copy_workspace: Callable[[], Path]) -> None:
    root = copy_workspace()
    garble(root / "detections.parquet")  # a pyarrow traceback
    error = fails_as_damaged("index", "--status", "-w", str(root))
    assert error.path.endswith("detections.parquet") and error.fix == "`pinshop ingest --pins DIR`"


def test_sql_over_a_catalog_that_is_another_table_answers_without_a_traceback(
        with_events: Path) -> None:
    """The views that join the catalog on columns it lacks are left out (they were binder
    tracebacks); the table itself is shown as it is."""
    from pinshop_cli import run_sql

    (with_events / "catalog.parquet").write_bytes(
        (with_events / "rejects" / "catalog.parquet").read_bytes())
    assert run_sql("SELECT count(*) FROM events", with_events).rows == [(3,)]
    assert run_sql("SELECT count(*) FROM catalog", with_events).rows[0][0] >= 0


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("weights", {"cf": float("nan")}, "weight 'cf' is nan, not a number from 0 up"),
    ("weights", {"zzz": 1}, "unknown weight 'zzz': one of cf, "),  # a TypeError traceback
    ("weights", {"cf": -5}, "weight 'cf' is -5, not a number from 0 up"),
    ("popularity_half_life_days", 0, "popularity_half_life_days is 0, not a number above 0"),
    ("mmr_lambda", 5, "mmr_lambda is 5, not a number from 0 to 1"),
    ("chosen", "bogus", "chosen is 'bogus': blend, most_popular or one component")])
def test_a_hand_edited_tuning_record(with_events: Path, field: str, value: object,
                                     reason: str) -> None:
    """Each value was used as it was: NaN scored every item NaN (and `--json` printed a bare
    NaN), an unknown weight was a traceback."""
    from pinshop_cli.recommendation.tuning import TUNING_FILE

    tuning = {"weights": {"cf": 1.0}, "popularity_half_life_days": 7.0, "chosen": "blend",
              "note": "", "validation_cut": "", "validation_end": "", "validation_users": 0,
              "validation": {}, field: value}
    (with_events / TUNING_FILE).write_text(json.dumps(tuning))
    for command in (["recommend", "--user", "ann"], ["recommend", "--all"]):
        error = fails_as_damaged(*command, "-w", str(with_events))
        assert error.reason.startswith(reason), error.reason
        assert error.fix.startswith("`pinshop recommend --tune`")


@pytest.mark.parametrize("damage", ["garbled", "deleted"])
def test_a_damaged_workspace_json(copy_workspace: Callable[[], Path], damage: str) -> None:
    root = copy_workspace()
    settings = root / "workspace.json"
    garble(settings) if damage == "garbled" else settings.unlink()
    for command in (["match", "--text", "sofa"], ["index"]):
        error = fails_as_damaged(*command, "-w", str(root))
        assert error.path.endswith("workspace.json") and "pinshop ingest CATALOG" in error.fix


def test_a_garbled_embeddings_manifest_is_an_error_for_readers_and_index_relists_it(
        copy_workspace: Callable[[], Path]) -> None:
    root = copy_workspace()
    manifests = [root / "embeddings" / kind / "_manifest.json"
                 for kind in ("product_image", "product_text")]
    for manifest in manifests:
        garble(manifest)
    for command in (["match", "--text", "sofa"], ["similar", "P005"]):
        error = fails_as_damaged(*command, "-w", str(root))
        assert error.path in map(str, manifests) and error.fix == "`pinshop index`"
    notes: list[str] = []
    build_indexes(root, notes=notes)
    assert any("listed again" in note for note in notes)
    assert CliRunner().invoke(app, ["similar", "P005", "-w", str(root)]).exit_code == 0


def test_the_error_is_one_line_on_stderr_with_exit_1(copy_workspace: Callable[[], Path]
                                                     ) -> None:
    root = copy_workspace()
    garble(root / "catalog.parquet")
    done = subprocess.run([sys.executable, "-m", "pinshop_cli.commands.main", "similar", "P005",
                           "-w", str(root)], capture_output=True, text=True, env=os.environ,
                          timeout=300)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in done.stderr
    assert "catalog.parquet is damaged (not a Parquet file" in lines[0]
    assert lines[0].endswith("run `pinshop ingest CATALOG`")


def test_a_damaged_part_is_left_out_then_embedded_again_by_the_next_ingest(
        copy_workspace: Callable[[], Path], sample_dir: Path) -> None:
    import pyarrow.parquet as pq

    from pinshop_cli import ingest, run_sql
    from pinshop_cli.workspace.parts import PartStore

    root = copy_workspace()
    store = PartStore(root / "embeddings" / "product_image")
    victim = store.files()[0]
    lost = pq.read_metadata(victim).num_rows
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    counted = run_sql("SELECT count(*) FROM embeddings_product_image", root)
    assert counted.rows == [(34 - lost,)]
    assert any(f"{victim} is damaged" in note for note in counted.notes)
    summary = ingest(root, sample_dir / "catalog.csv")
    assert summary.embedded["product_image"] == lost
    assert any("dropped from the manifest" in note for note in summary.notes)
    again = run_sql("SELECT count(*) FROM embeddings_product_image", root)
    assert again.rows == [(34,)] and not again.notes


def flip_a_byte_in_column(path: Path, column: str) -> None:
    """A byte inside `column`'s data flipped, as a disk does it (the modification time
    kept): the footer still parses, the values do not."""
    import pyarrow.parquet as pq

    chunk = pq.read_metadata(path).row_group(0).column(
        pq.read_schema(path).get_field_index(column))
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[chunk.data_page_offset + chunk.total_compressed_size // 2] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as damage on disk leaves it


def test_a_flipped_byte_in_the_catalog_is_damage_not_a_wrong_answer(
        with_events: Path, sample_dir: Path) -> None:
    """The footer parsed, so prices read 723401728380803.16 with exit 0, and `doctor`
    said the tables were fine. Checked tables carry their writer's size and checksums."""
    from pinshop_cli import ingest, run_sql
    from pinshop_cli.doctor import workspace_data_check

    flip_a_byte_in_column(with_events / "catalog.parquet", "price")
    for command in (["match", "--text", "green velvet sofa"], ["similar", "P005"],
                    ["recommend", "--user", "ann"]):
        error = fails_as_damaged(*command, "-w", str(with_events))
        assert error.reason == "changed since pinshop wrote it (checksum mismatch)"
        assert "pinshop ingest CATALOG" in error.fix
    shown = run_sql("SELECT count(*) FROM catalog", with_events)
    assert any("catalog.parquet is damaged (changed since pinshop wrote it" in note
               for note in shown.notes)
    assert workspace_data_check(with_events).status != "ok"
    ingest(with_events, sample_dir / "catalog.csv")  # the fix the error names
    assert CliRunner().invoke(app, ["similar", "P005", "-w", str(with_events)]).exit_code == 0
