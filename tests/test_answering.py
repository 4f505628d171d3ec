"""Answering never writes: query commands leave the workspace byte-identical and, on an index
older than the latest ingest, answer from it with the current catalog rows and say so."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pinshop_cli.commands.main import app
from pinshop_cli.index.hnsw import index_status
from pinshop_cli.recommendation.api import recommend, recommend_all, tune
from pinshop_cli.recommendation.config import BlendWeights, RecommendConfig
from pinshop_cli.recommendation.style import STYLE_FILE
from pinshop_cli.workspace import Workspace


def listing(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and directory under `root` (hidden ones too): size and mtime in ns."""
    return {str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in [root, *root.rglob("*")]}


@pytest.fixture
def stale_workspace(copy_workspace, sample_dir: Path, tmp_path: Path) -> Path:
    """The demo workspace re-ingested, not re-indexed, from a catalog where the green sofa
    is renamed, the armchair P005 costs less and the cushion set P024 is gone; with a few
    events so that `recommend --user` has a history."""
    from pinshop_cli import ingest, ingest_events

    root = copy_workspace()
    shutil.copytree(sample_dir / "products", tmp_path / "products")
    lines = (sample_dir / "catalog.csv").read_text().splitlines(keepends=True)
    text = "".join(line for line in lines if not line.startswith("P024,"))
    text = text.replace("Green Velvet Three-Seat Sofa", "Emerald Velvet Sofa")
    text = text.replace("Rounded armchair in textured boucle.,armchair,cream,Forma,549.00",
                        "Rounded armchair in textured boucle.,armchair,cream,Forma,499.00")
    (tmp_path / "catalog.csv").write_text(text)
    ingest(root, tmp_path / "catalog.csv")
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,event,ts\n"
                      "ann,P005,save,2026-11-01T10:00:00\nann,P006,purchase,2026-11-02T10:00:00\n"
                      "bob,P005,purchase,2026-11-03T10:00:00\nbob,P001,save,2026-11-04T10:00:00\n")
    ingest_events(events, root)
    assert {s.manifest.name for s in index_status(root) if s.stale} >= {
        "product_text", "product_image"}
    return root


def run(*args: str) -> dict:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_answering_commands_leave_a_stale_workspace_byte_identical(stale_workspace: Path,
                                                                     sample_dir: Path,
                                                                     smollm2) -> None:
    ws = str(stale_workspace)
    pin = str(sorted((sample_dir / "pins").glob("*.jpg"))[0])
    before = listing(stale_workspace)
    answers = {
        "match photo": run("match", pin, "-w", ws, "--top-k", "40"),
        "match text": run("match", "--text", "green velvet sofa", "-w", ws),
        "similar": run("similar", "P005", "-w", ws),
        "complete": run("complete", "P005", "-w", ws),
        "recommend": run("recommend", "--user", "ann", "-w", ws),
        # The serendipity slot needs the style clusters: fitted in memory, not cached here.
        "recommend serendipity": run("recommend", "--user", "ann", "--serendipity", "-w", ws),
        "chat": run("chat", "--model", "smollm2", "--threads", "1", "--once",
                    "a green velvet sofa", "-w", ws),
        "sql": run("sql", "SELECT count(*) AS n FROM catalog", "-w", ws),
    }
    # Trending by style fits the style clusters too (no CLI flag weighs it: the library).
    recommend(stale_workspace, "ann", RecommendConfig(weights=BlendWeights.alone("trending"),
                                                      serendipity=True))
    assert listing(stale_workspace) == before  # nothing written, not even the lock file
    assert not (stale_workspace / STYLE_FILE).exists()
    assert answers["sql"] == [{"n": 43}]

    for name in ("match photo", "match text", "similar", "chat"):
        notes = " ".join(answers[name]["notes"])
        assert "older than the latest ingest" in notes and "pinshop index" in notes, name
    # Products come from the current catalog: the removed one is left out, the renamed one
    # and the new price are shown as they are now.
    for found in answers["match photo"]["pins"][0]["objects"]:  # each region's 40 best
        ids = [m["id"] for m in found["matches"]]
        assert len(ids) == len(set(ids)) and "P024" not in ids
    text = answers["match text"]["text"]["matches"]
    assert text[0]["id"] == "P036" and text[0]["title"] == "Emerald Velvet Sofa"
    assert "P024" not in json.dumps(answers)
    assert answers["similar"]["reference_product"]["price"] == 499.0


def test_match_rebuild_is_the_explicit_way_to_update(stale_workspace: Path) -> None:
    answer = run("match", "--text", "velvet sofa", "-w", str(stale_workspace), "--rebuild")
    assert answer["text"]["matches"][0]["title"] == "Emerald Velvet Sofa"
    assert not any("older than" in note for note in answer["notes"])
    assert not any(s.stale for s in index_status(stale_workspace)
                   if s.manifest.kind == "product_text" and s.manifest.category is None)


def test_styles_are_answered_while_a_writer_holds_the_workspace_and_cached_by_writers(
        stale_workspace: Path) -> None:
    """While another writer holds the lock, answering that needs the style clusters still
    answers, from a fit in memory, and writes nothing; `recommend --all` and `--tune`, the
    writers, cache the fit, and answers read that cache afterwards: the same names."""
    import pyarrow.parquet as pq

    config = RecommendConfig(weights=BlendWeights(trending=1.0), serendipity=True)
    with Workspace.open(stale_workspace).lock():
        held = listing(stale_workspace)
        answered = recommend(stale_workspace, "bob", config)
        assert listing(stale_workspace) == held
    assert not (stale_workspace / STYLE_FILE).exists()

    assert recommend_all(stale_workspace, config) > 0
    cache = stale_workspace / STYLE_FILE
    names = pq.read_schema(cache).metadata[b"names"]
    assert recommend(stale_workspace, "bob", config) == answered  # the cached fit
    written = cache.stat().st_mtime_ns
    tune(stale_workspace)  # the cache is current: not written again
    assert cache.stat().st_mtime_ns == written
    cache.unlink()
    tune(stale_workspace)
    assert pq.read_schema(cache).metadata[b"names"] == names  # the same seeded fit


def test_pinshop_index_fits_a_kept_style_cache_to_the_indexes_it_builds(
        stale_workspace: Path, tmp_path: Path) -> None:
    """Where the workspace keeps a style cache, `pinshop index` fits it to the new index
    generation, so answers read it rather than fitting in memory until the next --tune;
    where it keeps none, indexing writes none."""
    from pinshop_cli import ingest
    from pinshop_cli.recommendation.api import refresh_styles
    from pinshop_cli.recommendation.style import _key, _read_cache
    from pinshop_cli.recommendation.taste import product_index

    def index() -> None:
        assert CliRunner().invoke(app, ["index", "-w", str(stale_workspace)]).exit_code == 0

    def current() -> bool:
        found = product_index(Workspace.open(stale_workspace))
        return _read_cache(stale_workspace / STYLE_FILE, _key(found)) is not None

    assert not refresh_styles(stale_workspace)  # no cache kept: none written
    assert not (stale_workspace / STYLE_FILE).exists()
    tune(stale_workspace)
    assert current()
    catalog = tmp_path / "catalog.csv"  # the fixture's catalog, the sofa renamed again
    catalog.write_text(catalog.read_text().replace("Emerald Velvet Sofa", "Jade Velvet Sofa"))
    ingest(stale_workspace, catalog)
    index()
    assert current()  # before: the cache held the former generation's fit


def test_answers_without_a_style_cache_fit_once_per_index_generation(
        stale_workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process answering again and again without a current cache (a server) fits the
    style clusters once, not per answer, and writes nothing."""
    from pinshop_cli.recommendation import style

    fits = []
    fit = style.fit_styles

    def counted(*args: Any, **kwargs: Any) -> Any:
        fits.append(1)
        return fit(*args, **kwargs)

    monkeypatch.setattr(style, "fit_styles", counted)
    monkeypatch.setattr(style, "_LAST_FITS", {})
    config = RecommendConfig(weights=BlendWeights(trending=1.0), serendipity=True)
    held = listing(stale_workspace)
    first = recommend(stale_workspace, "bob", config)
    assert recommend(stale_workspace, "bob", config) == first
    assert len(fits) == 1 and listing(stale_workspace) == held
