"""Matching: real retrieval quality with the offline pair, filters inside the search, the
JSON shape and the HTML report."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from pinshop_cli import match
from pinshop_cli.index.hnsw import IndexManifest, LoadedIndex
from pinshop_cli.report.html import render_report
from pinshop_cli.retrieval.retriever import AllowedSet, search_index, top_k_exact, use_exact


def crop_of(sample_dir, tmp_path, pin, box):  # noqa: ANN001, ANN201
    image = Image.open(sample_dir / "pins" / pin)
    w, h = image.size
    path = tmp_path / f"crop-{pin}"
    image.crop((int(box[0] * w), int(box[1] * h), int(box[2] * w), int(box[3] * h))).save(path)
    return path


@pytest.mark.parametrize(("pin", "box", "expected"), [
    ("7303782.jpg", (0.40, 0.42, 1.0, 0.95), "P001"),  # the Oslo chair, another shot
    ("7303994.jpg", (0.0, 0.55, 1.0, 1.0), "P004"),  # the round table, another angle
    ("cup-of-couple-6963787.jpg", (0.0, 0.55, 0.65, 0.97), "P002"),  # the sideboard
])
def test_offline_pair_crop_of_a_pin_retrieves_the_right_product(demo_workspace, sample_dir,
                                                                 tmp_path, pin, box, expected):
    result = match([crop_of(sample_dir, tmp_path, pin, box)], workspace=demo_workspace,
                   top_k=3, detector="none")
    assert result.pins[0].objects[0].matches[0].id == expected


def first_matches(pin) -> list[str]:  # noqa: ANN001
    return [o.matches[0].id for o in pin.objects]


def test_pins_show_their_products_as_catalog_regions(demo_workspace, sample_dir):
    """No detector weights here: the catalog's regions find the chair in two other shots."""
    pins = [sample_dir / "pins" / name for name in ("7303782.jpg", "7303842.jpg")]
    result = match(pins, workspace=demo_workspace, top_k=1)
    assert all("P001" in first_matches(pin) for pin in result.pins)
    assert {o.source for pin in result.pins for o in pin.objects} == {"regions"}
    assert "finding the catalog's products as regions" in result.notes[0]


def test_a_styled_room_shows_every_product_the_catalog_sells(demo_workspace):
    """The photos the demo products were cut from: each holds three of them."""
    from interior_photos import get_photo_dir

    rooms = {"pexels-36236147.jpg": {"P005", "P012", "P013"},  # armchair, side table, plant
             "pexels-6707631.jpg": {"P018", "P019", "P020"}}  # lamp, vase, console
    result = match([f"{get_photo_dir()}/{name}" for name in rooms], workspace=demo_workspace,
                   top_k=1)
    for pin, expected in zip(result.pins, rooms.values(), strict=True):
        assert expected <= set(first_matches(pin)), pin.image


def test_detector_none_keeps_the_whole_photo(demo_workspace, sample_dir):
    result = match([sample_dir / "pins" / "7303782.jpg"], workspace=demo_workspace, top_k=1,
                   detector="none")
    [whole] = result.pins[0].objects
    assert whole.source == "whole_image" and whole.matches[0].id == "P001"


def test_filters_apply_inside_the_search_not_after_it(demo_workspace, sample_dir):
    pin = [sample_dir / "pins" / "7303994.jpg"]  # the whole photo: the global index answers
    unfiltered = match(pin, workspace=demo_workspace, top_k=3,
                       detector="none").pins[0].objects[0].matches
    cheap = match(pin, workspace=demo_workspace, top_k=3, max_price=60,
                  detector="none").pins[0].objects[0].matches
    assert len(cheap) == 3 and all(m.price is not None and m.price <= 60 for m in cheap)
    assert not {m.id for m in cheap} & {m.id for m in unfiltered if m.price > 60}
    lamps = match(pin, workspace=demo_workspace, top_k=10, category="LAMP",
                  detector="none").pins[0].objects[0]
    # Every lamp with a photo (P042 is text-only, so it has no image embedding).
    assert {m.id for m in lamps.matches} == {"P009", "P017", "P018"}


def test_text_query_uses_product_texts_with_the_offline_pair(demo_workspace):
    result = match(text="green velvet sofa", workspace=demo_workspace, top_k=2)
    assert result.text_matches[0].id == "P036"
    assert any("needs a CLIP embedder" in n for n in result.notes)
    assert result.to_dict()["detector"] is None  # no photo, no detector (it read "")


def loaded_graph(vectors: np.ndarray) -> LoadedIndex:
    """An hnswlib graph of `vectors` (M=16, ef_construction=100) loaded as an index,
    labels 0..n-1 with ids id0, id1, ... (plumbing: no workspace)."""
    import hnswlib
    import pyarrow as pa

    n, dim = vectors.shape
    index = hnswlib.Index(space="ip", dim=dim)
    index.init_index(max_elements=n, M=16, ef_construction=100)
    index.add_items(vectors)
    labels = pa.table({"label": np.arange(n), "id": [f"id{i}" for i in range(n)]})
    manifest = IndexManifest("t", "product_image", None, "m", dim, "ip", 16, 100, n, "", "", 0,
                             0, None)
    return LoadedIndex(manifest, index, labels)


@pytest.mark.parametrize("step", [2, 50])  # half allowed (HNSW + mask), 1/50 (exact)
def test_filtered_search_equals_exact_search_on_the_allowed_set(step):
    n, dim = 40_000, 16
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    allowed = np.arange(0, n, step)
    assert use_exact(len(allowed), 5, n) == (step == 50)  # both paths are exercised
    queries = vectors[1:21]
    loaded = loaded_graph(vectors)
    found, scores = search_index(loaded, queries, 5, AllowedSet(loaded, allowed))
    assert np.isin(found, allowed).all()
    truth, truth_scores = top_k_exact(vectors[allowed], queries, 5)
    recall = np.mean([len(set(a) & set(allowed[b])) / 5 for a, b in zip(found, truth,
                                                                         strict=True)])
    assert recall >= 0.95
    assert np.allclose(scores[:, 0], truth_scores[:, 0], atol=1e-4)


def test_only_the_queries_short_of_allowed_labels_search_wider():
    """One query whose neighbourhood the filter leaves out widened every query of its batch
    (a placeholder photo under 3,000 listings: 2,000 queries at 8,384 candidates each)."""
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(4000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    loaded = loaded_graph(vectors)
    queries = vectors[[0, 1]]
    crowd = np.argsort(-(vectors @ queries[0]))[:600]  # query 0's 600 nearest: left out
    allowed = AllowedSet(loaded, np.setdiff1d(np.arange(4000), crowd))
    batch_sizes = []
    knn = loaded.knn

    def counting(batch, k, ef=None):  # noqa: ANN001, ANN202
        batch_sizes.append(len(batch))
        return knn(batch, k, ef)

    loaded.knn = counting  # type: ignore[method-assign]
    found, _ = search_index(loaded, queries, 5, allowed)
    assert batch_sizes[0] == 2 and set(batch_sizes[1:]) == {1}
    truth, _ = top_k_exact(vectors[allowed.labels], queries, 5)
    assert found.tolist() == allowed.labels[truth].tolist()


def test_a_search_reaching_every_vector_of_one_photo_is_answered(monkeypatch):
    """500 listings of 2 photos: hnswlib refuses a top-k that leaves any vector
    unreachable ("Cannot return the results in a contiguous 2D array"), and a search
    looking past one photo's listings widens to such a k (a match at 100k rows crashed)."""
    n = 500
    rng = np.random.default_rng(0)
    photos = rng.normal(size=(2, 16)).astype(np.float32)
    photos /= np.linalg.norm(photos, axis=1, keepdims=True)
    monkeypatch.setattr("pinshop_cli.index.loaded.EXACT_CHUNK", 128)  # 4 chunks, merged
    found, scores = search_index(loaded_graph(photos[np.arange(n) % 2]), photos[:1], n)
    assert sorted(found[0].tolist()) == list(range(n))
    assert np.allclose(scores[0, :250], 1, atol=1e-5) and (found[0, :250] % 2 == 0).all()


def test_json_shape_matches_the_documented_contract(demo_workspace, sample_dir):
    data = match([sample_dir / "pins" / "7303782.jpg"], workspace=demo_workspace,
                 top_k=2).to_dict()
    assert set(data) >= {"model", "pins"}
    obj = data["pins"][0]["objects"][0]
    assert set(obj) >= {"box", "category", "score", "matches"} and len(obj["box"]) == 4
    assert [set(m) >= {"id", "title", "price", "category", "score"} for m in obj["matches"]] \
        == [True, True]
    assert obj["matches"][0]["score"] >= obj["matches"][1]["score"]


def test_unreadable_image_is_reported_and_the_rest_matched(demo_workspace, sample_dir,
                                                           bad_images):
    result = match([bad_images["zero_byte"], sample_dir / "pins" / "7303782.jpg"],
                   workspace=demo_workspace, top_k=1)
    assert result.pins[0].error == "empty file (0 bytes)"
    assert "P001" in first_matches(result.pins[1])


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):  # noqa: ANN001
        self.text.append(data)


def test_html_report_is_self_contained_and_shows_boxes_and_products(demo_workspace,
                                                                    sample_dir):
    result = match([sample_dir / "pins" / "7303782.jpg"], text="oak stool",
                   workspace=demo_workspace, top_k=2)
    parser = _Collector()
    parser.feed(render_report(result))
    images = [a["src"] for t, a in parser.tags if t == "img"]
    assert images and all(src and src.startswith("data:image/jpeg;base64,") for src in images)
    regions = len(result.pins[0].objects)
    assert regions >= 2  # every region is drawn with its matches
    assert len(images) == 1 + regions * (1 + 2) + 2  # pin, crops, two matches each, text
    assert sum(t == "rect" for t, _ in parser.tags) == regions
    text = " ".join(parser.text)
    assert "Oslo Bent Plywood Dining Chair" in text and "149.00 EUR" in text
    assert not any(a.get("href") for _, a in parser.tags)  # nothing to fetch


def test_nan_price_bound_is_a_clear_error_not_ignored(demo_workspace):
    from pinshop_cli import PinshopError

    with pytest.raises(PinshopError, match="max price must be a finite number"):
        match(text="sofa", workspace=demo_workspace, max_price=float("nan"))
    with pytest.raises(PinshopError, match="max price must be 0 or more, not -5"):
        match(text="sofa", workspace=demo_workspace, max_price=-5)
    with pytest.raises(PinshopError, match="--text is blank"):  # it searched for nothing
        match(text="   ", workspace=demo_workspace)


def test_a_price_limit_over_several_currencies_says_it_compares_numbers(
        tmp_path, write_catalog, fake_embedder, demo_workspace):
    """Plumbing (the fake embedder): a cap of 4.5 returned 1.30 KWD, 3 EUR and 4 USD side
    by side, without a word; a one-currency catalog gets no such note."""
    from pinshop_cli import IngestConfig, build_indexes, ingest
    from pinshop_cli.look.similar import similar

    root = tmp_path / "ws"
    rows = [{"id": f"L{n}", "title": f"Lamp {n}", "category": "lamp", "price": price,
             "currency": currency}
            for n, (price, currency) in enumerate([(1.3, "KWD"), (3, "EUR"), (4, "USD")])]
    ingest(root, write_catalog(rows), config=IngestConfig(embedder=fake_embedder))
    build_indexes(root)
    caveat = ("price limits compare amounts as numbers across the catalog's 3 currencies "
              "(EUR, KWD, USD)")
    found = match(text="lamp", workspace=root, max_price=4.5)
    assert len(found.text_matches) == 3
    assert any(note.startswith(caveat) for note in found.notes), found.notes
    assert any(note.startswith(caveat) for note in similar("L1", root, cheaper=True).notes)
    assert not any(note.startswith(caveat) for note in match(text="lamp", workspace=root).notes)
    assert not any("currencies" in note for note in match(
        text="sofa", workspace=demo_workspace, max_price=500).notes)


def test_a_filter_that_matches_no_product_says_so(demo_workspace, sample_dir):
    """An empty answer names the filter that alone matches nothing, for text and photos."""
    said = {name: match(text="sofa", workspace=demo_workspace, **options).notes
            for name, options in {"category": {"category": "spaceship"},
                                  "color": {"color": "xyzzy"}, "price": {"max_price": 1},
                                  "together": {"category": "sofa", "max_price": 200}}.items()}
    assert "no product is in category 'spaceship' (the catalog has armchair, bed" in \
        " ".join(said["category"])
    assert "no product's colour, title or photo is 'xyzzy'" in " ".join(said["color"])
    assert "no product costs 1 or less" in said["price"]
    # Each alone matches some, together none: said so (an empty table had no reason).
    assert "no product has all of: category 'sofa', at most 200" in said["together"]
    pin = sample_dir / "pins" / "7303782.jpg"  # matches some
    photo = match([pin], workspace=demo_workspace, color="xyzzy")
    assert all(not found.matches for found in photo.pins[0].objects)
    assert "no product's colour, title or photo is 'xyzzy'" in " ".join(photo.notes)
    # A word that names no colour says so: photos could never match it.
    assert "'xyzzy': it names no colour pinshop knows" in " ".join(said["color"])
    # `similar` says why its list is empty too, and a known colour gets no such hint.
    from pinshop_cli import similar

    unknown = similar("P005", workspace=demo_workspace, color="xyzzy").notes
    assert any(note.startswith("no other product with a photo passes these filters: no "
                               "product's colour, title or photo is 'xyzzy': it names no "
                               "colour") for note in unknown), unknown
    assert "names no colour" not in " ".join(
        similar("P005", workspace=demo_workspace, color="chartreuse").notes)
    # --cheaper and a colour no cheaper armchair has: the colour is named with it.
    black = similar("P005", workspace=demo_workspace, cheaper=True, color="black").notes
    assert "no other product with a photo passes these filters: nothing cheaper in this " \
           "category with colour 'black'" in black, black
    # Either spelling of grey finds the catalog's "grey" (gray found nothing).
    def found(word: str) -> set[str]:
        text = match(text="stool", workspace=demo_workspace, color=word)
        photo = match([sample_dir / "pins" / "7303782.jpg"], workspace=demo_workspace,
                      color=word)
        return {m.id for m in text.text_matches} | {
            m.id for region in photo.pins[0].objects for m in region.matches}

    assert found("gray") == found("grey") != set()
    # --cheaper with a cap no armchair meets: the cap, not "nothing cheaper", empties it.
    capped = similar("P006", workspace=demo_workspace, cheaper=True, max_price=100).notes
    assert "no other product with a photo passes these filters: no product has all of: " \
           "category 'armchair', at most 100" in capped, capped


def test_a_regions_filtered_answer_does_not_depend_on_k_and_an_empty_one_says_why(
        demo_workspace, sample_dir):
    """A region's category index answers only when it holds k products passing the
    filters (it answered whenever it held k products: `--category sofa -k 1` emptied every
    region of a room, `-k 5` gave sofas); a category asked for routes to its own index."""
    pin = [sample_dir / "pins" / "7303782.jpg"]
    firsts = set()
    for k in (1, 2, 5):  # the demo has two sofas with photos
        sofas = match(pin, workspace=demo_workspace, top_k=k, category="sofa").pins[0]
        assert all(len(o.matches) == min(k, 2) and {m.category for m in o.matches} ==
                   {"sofa"} for o in sofas.objects), k
        firsts.add(tuple(o.matches[0].id for o in sofas.objects))
        cheap = match(pin, workspace=demo_workspace, top_k=k, max_price=60).pins[0]
        assert all(len(o.matches) == k for o in cheap.objects), k
    assert len(firsts) == 1  # the best sofa per region, whatever k
    black = match(pin, workspace=demo_workspace, top_k=3, color="black")
    empty = {o.category for o in black.pins[0].objects if not o.matches}
    assert empty and "no product has all of: category 'stool', colour 'black'" in black.notes
    # A black chair exists, without a photo: said so, not a silent empty region.
    assert any(note.startswith("1 product has all of: category 'chair', colour 'black'; "
                               "none has a photo") for note in black.notes), black.notes


def test_detected_objects_search_their_category_index(demo_workspace):
    from pinshop_cli.retrieval.retriever import Retriever

    retriever = Retriever(demo_workspace)
    vector = retriever.embedder.embed_texts(["green velvet sofa"])
    routed = retriever.search(vector, 1, "product_text", category="sofa")
    assert routed.index == "product_text@sofa"
    assert retriever.search(vector, 1, "product_text", category="nonexistent").index == \
        "product_text"  # no such category index: the global one answers
