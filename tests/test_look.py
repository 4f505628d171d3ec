"""Look features on real photos (the sample catalog with planted faults, see conftest's
`look_workspace`), through the real offline embedders and indexes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pinshop_cli.commands.main import app
from pinshop_cli.errors import PinshopError
from pinshop_cli.look.audit import audit
from pinshop_cli.look.complete import compatibility_from_scenes, complete
from pinshop_cli.look.duplicates import find_duplicates, measured_curve
from pinshop_cli.look.similar import similar
from pinshop_cli.retrieval.retriever import Retriever

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"


@pytest.fixture(scope="module")
def retriever(look_workspace: Path) -> Retriever:
    return Retriever(look_workspace)


def test_similar_keeps_the_category_and_leaves_out_the_reference(retriever):
    result = similar("P006", retriever=retriever, top_k=4)
    assert result.category == "armchair" and result.category_source == "catalog"
    ids = [item.product.id for item in result.items]
    assert "P006" not in ids and ids[0] == "X001"  # its re-shot photo is the most alike
    assert {item.product.category for item in result.items} == {"armchair"}
    similarities = [item.similarity for item in result.items]
    assert similarities == sorted(similarities, reverse=True)
    assert all(0 <= s <= 100 for s in similarities)
    # The reference is looked up, not found by a search: no score (it read "score": 0.0).
    assert result.reference_product is not None and result.reference_product.score is None


def test_cheaper_look_alikes_are_strictly_cheaper_with_the_saving(retriever):
    result = similar("P006", retriever=retriever, cheaper=True, top_k=10)  # 890.00 EUR
    assert result.items
    for item in result.items:
        assert item.product.price < 890.0
        assert item.saving == round(100 * (890.0 - item.product.price) / 890.0)
        assert item.caption() == f"{item.similarity}% similar, {item.saving}% cheaper"
    capped = similar("P006", retriever=retriever, cheaper=True, max_price=500, top_k=10)
    assert all(item.product.price <= 500 for item in capped.items)


def test_a_saving_is_never_shown_as_the_whole_price_unless_free() -> None:
    from pinshop_cli.look.similar import saving_percent

    assert [saving_percent(p, 60_000) for p in (163.81, 0, 30_000, 60_000, 61_000)] == [
        99, 100, 50, 0, -2]
    assert saving_percent(None, 10) is None and saving_percent(5, 0) is None


def test_similar_to_a_photo_votes_its_category(retriever):
    result = similar(str(SAMPLE / "products" / "P028.jpg"), retriever=retriever, top_k=3)
    assert result.category_source == "nearest products"
    assert result.items[0].product.id == "P028"  # the same photo, in the catalog
    with pytest.raises(PinshopError, match="no catalog price"):
        similar(str(SAMPLE / "products" / "P028.jpg"), retriever=retriever, cheaper=True)


def test_listings_of_one_photo_are_one_result_in_a_search_by_photo(retriever):
    """X003 reuses P001's photo file and X004 repeats P005's row: in a search by photo each
    pair tied for every place, two identical cards (five at 100k rows of shared photos)."""
    from pinshop_cli.retrieval import families
    from pinshop_cli.retrieval.match import match

    # similar: another listing of the reference's very photo is no look-alike (the only
    # other chair here)...
    chairs = similar("P001", retriever=retriever, top_k=10)
    assert chairs.items == [] and chairs.notes[-1] == (
        "every product found shares P001's own photo (its 1 other listing): no look-alike "
        "to show")
    # ...and where look-alikes remain, the left-out listing is said.
    armchairs = similar("P005", retriever=retriever, top_k=3)
    assert armchairs.items and "X004" not in [i.product.id for i in armchairs.items]
    assert ("1 other listing of P005's own photo left out: the same product, not a "
            "look-alike (--cheaper shows the cheaper ones)") in armchairs.notes
    # ...but with --cheaper it is the same product for less (139.00 against 149.00).
    first = similar("P001", retriever=retriever, cheaper=True, top_k=3).items[0]
    assert first.product.id == "X003" and first.caption() == "100% similar, 7% cheaper"
    assert first.product.family == {"id": None, "variants": 2, "colours": 1, "sizes": 0,
                                    "summary": "2 listings share this photo"}
    # match: the photo's region shows one of the two, said to be two listings.
    found = match([SAMPLE / "products" / "P005.jpg"], retriever=retriever, top_k=5)
    ids = [p.id for region in found.pins[0].objects for p in region.matches]
    assert len({"P005", "X004"} & set(ids)) == 1, ids
    shown = next(p for p in found.pins[0].objects[0].matches if p.id in {"P005", "X004"})
    assert shown.titled().endswith(" · 2 listings share this photo")
    # complete: one pick for the two, and the listing bought with the table is the one
    # named (the style search showed X004; P005 was saved with P012 in 10 baskets).
    picks = {p.product.id: p for p in complete("P012", retriever=retriever, top_k=10).picks}
    assert "X004" not in picks and "bought together 10 times" in picks["P005"].reason
    assert picks["P005"].product.family["summary"] == "2 listings share this photo"
    # A search by text keeps them apart: their texts are alike, not one vector.
    vector = retriever.embedder.embed_texts(["Nimbus Boucle Armchair"])
    by_text = families.search(retriever, vector, 5, "product_text").hits[0]
    assert {"P005", "X004"} <= {hit.id for hit in by_text}


def test_an_unknown_reference_is_a_clear_error(retriever):
    with pytest.raises(PinshopError, match="neither a product id in the catalog nor an image"):
        similar("NOPE-1", retriever=retriever)


def test_similarity_scale_is_a_percentile(retriever):
    scale = retriever.similarity_scale("product_image")
    percents = scale.percent(np.linspace(-1.0, 1.0, 41))
    assert percents[0] == 0 and percents[-1] == 100
    assert np.all(np.diff(percents) >= 0)


def test_compatibility_counts_scenes_in_duckdb():
    scenes = pa.table({
        "scene": ["s1", "s1", "s2", "s2", "s3", "s3", "s4", "b1", "b1"],
        "category": ["sofa", "lamp", "sofa", "lamp", "sofa", "rug", "sofa", "sofa", "lamp"],
        "item": [None] * 7 + ["S1", "L1"],
        "source": ["pins"] * 7 + ["events"] * 2,
    })
    compatibility = compatibility_from_scenes(scenes)
    ranked = compatibility.categories_for(["sofa"], top=5)
    assert [category for category, _, _ in ranked] == ["lamp", "rug"]
    # lamp: in 2 of 4 pins + 1 of 1 basket with a sofa; the pins say most.
    assert ranked[0][2] == "often pinned with sofa (3 of 5 pins and baskets)"
    assert ranked[0][1] == pytest.approx(3 / 6)
    # Under a tenth of the scenes is not "often" (it said so of 1 of 107 baskets).
    many = pa.concat_tables([scenes, pa.table({
        "scene": [f"x{n}" for n in range(40)], "category": ["sofa"] * 40,
        "item": pa.nulls(40, pa.string()), "source": ["pins"] * 40})])
    assert compatibility_from_scenes(many).categories_for(["sofa"], top=1)[0][2] == \
        "pinned with sofa (3 of 45 pins and baskets)"
    assert compatibility.bought_with("S1") == {"L1": 1}
    assert compatibility.popular_in("lamp", 5) == ["L1"]


def test_complete_picks_other_categories_learned_from_baskets(retriever):
    result = complete("P005", retriever=retriever, top_k=5)
    assert result.scene_categories == ["armchair"]
    categories = [pick.product.category for pick in result.picks]
    assert "armchair" not in categories and "plant" in categories  # 3 of 20 baskets
    # Each table was saved with P005 itself in 10 of its 20 baskets: they come first.
    assert {pick.product.id for pick in result.picks[:2]} == {"P010", "P012"}
    assert "often saved or bought with armchair (20 of 20 baskets)" in result.picks[0].reason
    assert "bought together 10 times" in result.picks[0].reason
    # A shorter list is the first picks of a longer one (k chose how many categories
    # competed, so -k 1 and -k 2 disagreed on the best pick).
    ids = [pick.product.id for pick in result.picks]
    for k in (1, 2, 3):
        assert [p.product.id for p in complete("P005", retriever=retriever, top_k=k).picks
                ] == ids[:k]


def test_a_photo_like_no_product_gets_its_categories_called_a_guess(retriever, tmp_path):
    """A black square's nearest product is a weak vote: complete said "in it: armchair"
    as surely as for a real photo."""
    from PIL import Image

    black = tmp_path / "black.png"
    Image.new("RGB", (200, 200)).save(black)
    guessed = complete(str(black), retriever=retriever, detector="none")
    assert guessed.scene_categories and any(
        note.startswith("nothing in the photo looks much like a catalog product (the nearest "
                        "is ") and note.endswith(" is a guess") for note in guessed.notes)
    real = complete(str(SAMPLE / "products" / "P005.jpg"), retriever=retriever,
                    detector="none")
    assert real.scene_categories == ["armchair"]
    assert not any("is a guess" in note for note in real.notes)
    # `similar` from such a photo says it too; from a real one it does not.
    assert any(note.endswith(" is a guess")
               for note in similar(str(black), retriever=retriever).notes)
    assert not any("is a guess" in note for note in similar(
        str(SAMPLE / "products" / "P005.jpg"), retriever=retriever).notes)


def test_the_audit_page_says_what_it_leaves_out(retriever):
    """A check not run read "none" (as if it found nothing); a section shows 60 findings
    and said nothing of the rest."""
    from pinshop_cli.report.look import render_audit

    report = audit(retriever=retriever, write=False)
    shown = report.counts["image"]
    report.counts["category"], report.counts["image"] = None, 100_000  # as on a 100k catalog
    page = render_audit(report)
    assert "<h2>category</h2><p>not checked" in page
    assert f"<h2>image</h2><p>the first {shown} of 100,000 (audit.parquet has all)" in page
    # --json showed 20 of each check and said nothing of the rest either.
    assert "image: the first 20 of 100,000 findings (audit.parquet has all)" in \
        report.to_dict()["notes"]


def test_duplicates_cluster_a_reshot_photo_and_a_shared_file(retriever):
    from pinshop_cli import PinshopError

    for bad in (float("nan"), 1.5):  # NaN was "should be less than or equal to 1"
        with pytest.raises(PinshopError, match="--threshold is a cosine, from -1 to 1"):
            find_duplicates(retriever=retriever, threshold=bad, write=False)
    result = find_duplicates(retriever=retriever, write=False)
    clusters = {}
    for row in result.table.to_pylist():
        clusters.setdefault(row["cluster"], set()).add(row["id"])
    assert {"P006", "X001"} in clusters.values()  # re-shot, retitled, another merchant
    assert any({"P001", "X003"} <= members for members in clusters.values())
    assert {"P005", "X004"} in clusters.values()
    assert not any({"P006", "P005"} <= members for members in clusters.values())
    assert result.threshold == measured_curve()["threshold"]


def test_audit_finds_the_planted_faults(retriever):
    report = audit(retriever=retriever, write=False)
    found = {(row["check_name"], row["id"]): row["detail"]
             for row in report.findings.to_pylist()}
    assert found[("category", "P009")] == "photo looks like lamp, declared bed"
    assert found[("image", "X002")] == "tiny image 60x60"
    assert found[("image", "X003")] == "same image file as P001"
    assert found[("image", "P036")] == "no image"
    assert found[("title", "X004")] == "same title as P005"
    assert not any(check == "image" and pid == "P006" for check, pid in found)
    assert report.rejects.to_pylist()[0]["reason"] == "unparsable price …"


def test_price_outliers_use_the_log_price_within_a_category(tmp_path, write_catalog):
    from pinshop_cli.io.catalog import normalize_catalog
    from pinshop_cli.workspace.layout import Workspace

    prices = [100, 110, 90, 105, 95, 120, 85, 1000, 10]  # the last two: a slipped point
    rows = [{"id": f"L{n}", "title": f"Lamp {n}", "category": "lamp", "price": p}
            for n, p in enumerate(prices)]
    ws = Workspace.open(tmp_path / "ws", create=True)
    normalize_catalog(write_catalog(rows), ws.catalog, ws.rejects_dir / "catalog.parquet")
    report = audit(ws.root, write=False)
    flagged = {r["id"] for r in report.findings.to_pylist() if r["check_name"] == "price"}
    assert flagged == {"L7", "L8"}


def test_no_duplicates_is_said_not_shown_as_an_empty_table(copy_workspace):
    """The demo catalog's only near pair is a colour variant: 0 clusters printed a table
    with a header and no rows."""
    result = CliRunner().invoke(app, ["duplicates", "-w", str(copy_workspace())])
    assert result.exit_code == 0, result.output
    assert "no near-duplicate products at threshold" in result.output
    assert "cluster" not in result.stdout


def test_look_commands_write_json_reports_and_parquet(look_workspace, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["similar", "P006", "--cheaper", "--json", "-w",
                                 str(look_workspace), "--report", str(tmp_path / "s.html")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["items"] and all(i["caption"].endswith("cheaper") for i in data["items"])
    assert "data:image/jpeg;base64," in (tmp_path / "s.html").read_text()

    # An empty answer is its note alone (it printed a table header with no rows).
    result = runner.invoke(app, ["similar", "P006", "--category", "spaceship", "-w",
                                 str(look_workspace)])
    assert result.exit_code == 0, result.output
    assert "no other product with a photo passes these filters: no product is in " \
        "category 'spaceship'" in " ".join(result.output.split())
    assert "similarity" not in result.stdout

    result = runner.invoke(app, ["duplicates", "-w", str(look_workspace), "--report",
                                 str(tmp_path / "d.html")])
    assert result.exit_code == 0, result.output
    assert "<polyline" in (tmp_path / "d.html").read_text()  # the threshold curve
    written = pq.read_table(look_workspace / "duplicates.parquet")
    assert {"cluster", "id", "nearest", "score"} <= set(written.column_names)
    # --limit: how many clusters the table and --json show (--json kept 50 with no way to
    # ask for more, the table 20 with no word that there were more).
    result = runner.invoke(app, ["duplicates", "--limit", "1", "--json", "-w",
                                 str(look_workspace)])
    data = json.loads(result.stdout)
    assert data["clusters"] >= 2 and [c["cluster"] for c in data["shown"]] == [1]
    result = runner.invoke(app, ["duplicates", "--limit", "1", "-w", str(look_workspace)])
    assert "the 1 largest shown, all in duplicates.parquet" in " ".join(result.output.split())

    result = runner.invoke(app, ["audit", "--json", "-w", str(look_workspace)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"]["title"] == 2
    assert pq.read_table(look_workspace / "audit.parquet").num_rows > 0

    result = runner.invoke(app, ["complete", "P005", "-w", str(look_workspace)])
    assert result.exit_code == 0 and "table" in result.stdout


def test_shared_titles_are_grouped_and_a_text_only_catalog_skips_the_photo_check(
        tmp_path, write_catalog):
    from pinshop_cli.io.catalog import normalize_catalog
    from pinshop_cli.workspace.layout import Workspace

    rows = [{"id": f"G{n}", "title": "Gift Card", "category": "gift", "price": 25}
            for n in range(7)] + [{"id": "Z", "title": "Free Sample", "price": 0}]
    ws = Workspace.open(tmp_path / "ws", create=True)
    normalize_catalog(write_catalog(rows), ws.catalog, ws.rejects_dir / "catalog.parquet")
    report = audit(ws.root, write=False)
    found = {(r["check_name"], r["id"]): r["detail"] for r in report.findings.to_pylist()}
    assert found[("title", "G0")] == "same title as G1, G2, G3 and 3 others"
    assert found[("title", "G5")] == "same title as G0, G1, G2 and 3 others"
    assert found[("price", "Z")] == "price is 0"
    assert report.counts["category"] is None
    assert report.notes[0].startswith("category check not run: no product_image index")


def test_a_photo_asked_of_a_text_only_catalog_says_there_is_nothing_to_match(
        tmp_path, write_catalog, sample_dir):
    """`pinshop index` was the fix given, which cannot help: no product has a photo."""
    from pinshop_cli import build_indexes, ingest, match

    rows = [{"id": f"T{n}", "title": f"Oak Chair {n}", "category": "chair", "price": 10 + n}
            for n in range(4)]
    ingest(tmp_path / "ws", write_catalog(rows))
    build_indexes(tmp_path / "ws")
    photo = sorted((sample_dir / "pins").glob("*.jpg"))[0]
    for ask in (lambda: match([photo], workspace=tmp_path / "ws"),
                lambda: similar(str(photo), tmp_path / "ws")):
        with pytest.raises(PinshopError, match="no product in its catalog has a photo, so "
                           r"there is none to match a photo against \(text queries work"):
            ask()
    assert match(text="chair", workspace=tmp_path / "ws").text_matches


def test_an_unknown_category_names_the_known_ones(retriever):
    """As in `match` (an empty answer says which filter matches nothing, exit 0); `similar`
    alone exited 1 with its own wording."""
    found = similar("P006", retriever=retriever, category="Sofas")
    assert not found.items
    assert any("no product is in category 'sofas' (the catalog has armchair, " in n
               for n in found.notes), found.notes


def test_the_same_photo_is_100_percent_similar_however_many_pairs_share_it():
    """A catalog where a tenth of same-category pairs share one photo: their float32
    cosines (0.99999994) tied the top quantiles, and an identical listing read "90%
    similar"."""
    import numpy as np

    from pinshop_cli.retrieval.calibration import SimilarityScale

    cosines = np.concatenate([np.linspace(0.2, 0.9, 900), np.full(100, 1.0)])
    quantiles = np.quantile(cosines, np.linspace(0, 1, 101))
    quantiles = np.maximum.accumulate(quantiles - np.arange(100, -1, -1) * 1e-9)
    scale = SimilarityScale(quantiles, "same-category pairs")
    assert scale.percent(np.float32(0.99999994)) == 100
    assert scale.percent(np.array([0.56, 0.2])).tolist() == [46, 0]  # the rest as before
