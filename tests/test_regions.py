"""Every product in a photo: catalog-guided regions, detectors' class names mapped to the
catalog's categories, and the colour of each region and product photo.

Quality on hand-boxed rooms is measured in bench/eval_regions.py; here: the real offline
models on the sample photos, and plumbing on synthetic inputs (named as such)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pinshop_cli import match
from pinshop_cli.detection.colors import dominant_colors, family, srgb_to_lab, word_family
from pinshop_cli.detection.regions import (
    BOX_CHUNK,
    Acceptance,
    CatalogRegions,
    RegionSettings,
    non_max_suppression,
    peak_boxes,
    product_boxes,
    second_product,
    standing_out,
    strongest_boxes,
)
from pinshop_cli.detection.vocabulary import CategoryVocabulary


def test_plumbing_a_product_standing_out_in_a_block_of_cells_gets_that_box() -> None:
    rng = np.random.default_rng(0)
    products = rng.normal(size=(3, 16)).astype(np.float32)
    products /= np.linalg.norm(products, axis=1, keepdims=True)
    features = rng.normal(scale=0.3, size=(16, 8, 10)).astype(np.float32)
    features[:, 2:5, 6:9] += 3 * products[1][:, None, None]  # product 1 at rows 2-4, cols 6-8
    boxes, peaks = product_boxes(standing_out(features, products), 8, 10, extents=(0.5, 0.65))
    assert boxes[1].tolist() == [6, 2, 9, 5]  # x1, y1, x2, y2 in cells
    assert boxes[3 + 1].tolist() == [6, 2, 9, 5]  # the tighter extent: the same block
    assert peaks.shape == (6,) and peaks[1] > 1 and peaks[4] == peaks[1]


@pytest.mark.parametrize("proposals", [4, 32, 200])
def test_plumbing_boxes_drawn_a_chunk_at_a_time_are_those_of_all_products(proposals: int
                                                                          ) -> None:
    """Drawing the boxes of the products standing out most first, a chunk at a time, keeps
    the boxes that suppression over every product's boxes keeps."""
    rng = np.random.default_rng(1)
    products = rng.normal(size=(3 * BOX_CHUNK + 5, 16)).astype(np.float32)
    features = rng.normal(size=(16, 12, 16)).astype(np.float32)
    standing = standing_out(features, products / np.linalg.norm(products, axis=1)[:, None])
    to_pixels = np.array([40.0, 37.5] * 2, np.float32)
    settings = RegionSettings(proposals=proposals)
    every, peaks = product_boxes(standing, 12, 16, settings.extents)
    every = every * to_pixels
    expected = every[non_max_suppression(every, peaks, settings.overlap)[:proposals]]
    found = strongest_boxes(standing, 12, 16, to_pixels, settings)
    assert len(found) == min(proposals, len(expected)) and np.array_equal(found, expected)


def test_plumbing_non_max_suppression_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], np.float32)
    assert non_max_suppression(boxes, np.array([0.5, 0.9, 0.1], np.float32), 0.5).tolist() \
        == [1, 2]


def test_plumbing_products_sharing_a_photo_leave_the_acceptance_bars_as_they_were() -> None:
    """Colour variants and other merchants' listings share a photo: each product's nearest
    other was its twin at cosine 1, so every bar sat at 1 and no region was ever accepted."""
    import pyarrow as pa

    from pinshop_cli.detection.products import ProductPhotos, _in_memory_index

    vectors = np.random.default_rng(0).normal(size=(30, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    def photos(rows: np.ndarray) -> ProductPhotos:
        ids = pa.array([f"P{n}" for n in range(len(rows))])
        return ProductPhotos(_in_memory_index(rows, ids, "m"), np.full(len(rows), None), rows)

    alone = Acceptance.calibrate(photos(vectors))
    twinned = Acceptance.calibrate(photos(np.concatenate([vectors, vectors])))
    assert alone.threshold < 0.99 and alone.margin > 0
    # The same distribution, each value twice (quantiles interpolate a little differently).
    assert np.allclose([twinned.threshold, twinned.floor, twinned.margin],
                       [alone.threshold, alone.floor, alone.margin], rtol=0.05)


def test_plumbing_a_photo_under_hundreds_of_listings_is_searched_once() -> None:
    """200 listings of each of 30 photos: a search deep enough for a few twins (the bars
    look 74 deep) found only copies of the product's own photo, so the bars read 0 and
    every box was accepted (a 100k catalog of 34 photos gave 16 regions to a room of 7).
    A photo's repeats are left out of the searches: its first listing stands for it."""
    import pyarrow as pa

    from pinshop_cli.detection.products import ProductPhotos, _in_memory_index

    vectors = np.random.default_rng(0).normal(size=(30, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = np.tile(vectors, (200, 1))  # label n repeats label n % 30's photo

    def photos(rows: np.ndarray, repeats: np.ndarray | None) -> ProductPhotos:
        ids = pa.array([f"P{n}" for n in range(len(rows))])
        return ProductPhotos(_in_memory_index(rows, ids, "m"), np.full(len(rows), None), rows,
                             None, repeats)

    alone = Acceptance.calibrate(photos(vectors, None))
    assert Acceptance.calibrate(photos(rows, None)) == Acceptance(0.0, 0.0, 0.0)
    once = photos(rows, np.arange(30, len(rows)))
    fixed = Acceptance.calibrate(once)
    assert np.allclose([fixed.threshold, fixed.floor, fixed.margin],
                       [alone.threshold, alone.floor, alone.margin], atol=1e-6)
    labels, scores = once.search(vectors[:2], 5)
    assert labels[:, 0].tolist() == [0, 1] and (labels < 30).all()  # 5 photos, not 5 copies


def test_plumbing_a_familys_variants_are_one_product_to_the_bars_and_the_regions() -> None:
    """Variants photographed apart (a sofa in three colours, one `item_group_id`): each
    product's nearest other was its sibling, the bars rose to a cosine of 0.93 and a room
    of such products found almost nothing; and a crop led its sibling by nothing."""
    import pyarrow as pa

    from pinshop_cli.detection.products import ProductPhotos, _in_memory_index

    rng = np.random.default_rng(0)
    base = rng.normal(size=(30, 16)).astype(np.float32)
    siblings = base + 0.05 * rng.normal(size=base.shape).astype(np.float32)
    rows = np.concatenate([base, siblings])
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    family = np.concatenate([np.arange(30), np.arange(30)])  # label n and n + 30: one family

    def photos(vectors: np.ndarray, groups: np.ndarray | None) -> ProductPhotos:
        ids = pa.array([f"P{n}" for n in range(len(vectors))])
        return ProductPhotos(_in_memory_index(vectors, ids, "m"), np.full(len(vectors), None),
                             vectors, groups)

    alone = Acceptance.calibrate(photos(rows[:30], None))
    families = Acceptance.calibrate(photos(rows, family))
    assert Acceptance.calibrate(photos(rows, None)).threshold > 0.99  # siblings as rivals
    assert np.allclose([families.threshold, families.floor, families.margin],
                       [alone.threshold, alone.floor, alone.margin], atol=0.05)
    # A crop of product 0: its sibling (label 30) is no rival, product 7 is.
    labels = np.array([[0, 30, 7]])
    scores = np.array([[0.9, 0.89, 0.5]])
    assert second_product(scores, labels, family).tolist() == [0.5]
    assert second_product(scores, labels, None).tolist() == [0.89]
    # Two regions of one family are one region (the better).
    regions = CatalogRegions.__new__(CatalogRegions)
    regions.settings, regions.products = RegionSettings(), photos(rows, family)
    boxes = np.array([[0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    kept = regions.accept(boxes, np.zeros((2, 16), np.float32), np.array([0, 30]),
                          np.array([0.8, 0.9]), np.array([True, True]),
                          np.array([False, False]))
    assert [d.box for d in kept] == [(50.0, 50.0, 60.0, 60.0)]


def test_acceptance_is_calibrated_on_the_catalog(demo_workspace) -> None:
    from pinshop_cli.detection.products import ProductPhotos
    from pinshop_cli.retrieval.retriever import Retriever

    photos = ProductPhotos.from_retriever(Retriever(demo_workspace))
    acceptance = Acceptance.calibrate(photos)
    assert 0 < acceptance.floor < acceptance.threshold < 1 and 0 < acceptance.margin < 0.5
    # A product's own photo clears it; the middle of the catalog's nearest others does not
    # stand out.
    assert acceptance.accepts(np.array([0.99]), np.array([0.5])).all()
    assert not acceptance.accepts(np.array([acceptance.floor - 0.01]),
                                  np.array([0.0])).any()


def test_a_styled_room_gets_one_region_per_product_with_its_colour(demo_workspace) -> None:
    from interior_photos import get_photo_dir

    room = f"{get_photo_dir()}/pexels-6707631.jpg"  # a lamp, a vase and a console
    objects = match([room], workspace=demo_workspace, top_k=1).pins[0].objects
    firsts = [o.matches[0].id for o in objects]
    assert {"P018", "P019", "P020"} <= set(firsts) and len(firsts) == len(set(firsts))
    assert all(o.source == "regions" and o.color and o.color_name for o in objects)


def test_plumbing_peak_boxes_centre_on_local_maxima_strongest_first_past_taken_boxes(
        ) -> None:
    standing = np.zeros((8, 10, 2), np.float32)  # (rows, columns, products)
    standing[1, 1, 0], standing[6, 8, 1], standing[4, 4, 0] = 5.0, 4.0, 3.0
    standing[4, 5, 1] = 2.0  # beside the 3.0 peak: not a local maximum of its own
    to_pixels = np.array([10, 20, 10, 20], np.float32)  # a cell is 10 x 20 pixels
    settings = RegionSettings(peaks=2, peak_side=3)
    taken = np.array([[0, 0, 30, 60]], np.float32)  # the 5.0 peak's box, taken already
    boxes = peak_boxes(standing.reshape(80, 2), 8, 10, to_pixels, taken, settings)
    # The 4.0 peak's box clipped to the map's edge, then the 3.0 peak's, centred on it.
    assert boxes.tolist() == [[70, 100, 100, 160], [30, 60, 60, 120]]
    assert len(peak_boxes(standing.reshape(80, 2), 8, 10, to_pixels, taken,
                          RegionSettings(peaks=0))) == 0
    flat = np.ones((80, 2), np.float32)  # no cell stands out more than its neighbours
    assert len(peak_boxes(flat, 8, 10, to_pixels, taken[:0], settings)) == 0


def test_a_finer_second_map_adds_small_boxes_after_the_first_maps(demo_workspace) -> None:
    """The second map's peaks come after every box of the first map, as small boxes, and
    none overlaps a box proposed before it by more than `overlap`."""
    from dataclasses import replace

    from interior_photos import get_photo_dir
    from PIL import Image

    from pinshop_cli.detection.products import ProductPhotos
    from pinshop_cli.detection.regions import CatalogRegions
    from pinshop_cli.retrieval.retriever import Retriever

    retriever = Retriever(demo_workspace)
    regions = CatalogRegions(retriever.embedder, ProductPhotos.from_retriever(retriever))
    room = Image.open(f"{get_photo_dir()}/pexels-6707631.jpg").convert("RGB")
    with_fine, small = regions.propose(room)
    regions.settings = replace(regions.settings, fine_side=0)
    alone, alone_small = regions.propose(room)
    assert np.array_equal(with_fine[:len(alone)], alone)
    assert np.array_equal(small[:len(alone)], alone_small)
    added = with_fine[len(alone):]
    assert 0 < len(added) <= regions.settings.peaks and small[len(alone):].all()
    for n in range(len(added)):
        earlier = np.concatenate([alone, added[:n]])
        assert non_max_suppression(np.concatenate([earlier, added[n:n + 1]]), np.r_[
            np.full(len(earlier), 1.0), 0.0], regions.settings.overlap).tolist() == list(
                range(len(earlier) + 1))
    retriever.close()


def test_plumbing_a_small_box_must_lead_its_second_best_product() -> None:
    acceptance = Acceptance(threshold=0.8, floor=0.5, margin=0.1)
    best, second = np.array([0.9, 0.9, 0.6]), np.array([0.85, 0.7, 0.45])
    assert acceptance.accepts(best, second).tolist() == [True, True, True]
    small = np.array([True, True, True])
    assert acceptance.accepts(best, second, small).tolist() == [False, True, True]


def test_a_photo_colour_name_is_a_word_of_its_family(sample_dir: Path) -> None:
    """The name is the nearest CSS colour of the family the photo's light gives: a shaded
    plant read brown was named "gray" (any name, nearest of all)."""
    photos = sorted((sample_dir / "products").glob("*.jpg"))
    pin = Image.open(sample_dir / "pins" / "7303782.jpg")
    crops = [pin.crop((x, y, x + 160, y + 160)) for x in range(0, pin.width - 160, 160)
             for y in range(0, pin.height - 160, 160)]
    named = [c for image in [*map(Image.open, photos), *crops] for c in dominant_colors(image)]
    assert len(named) > 100
    assert [(c.name, c.family) for c in named if word_family(c.name) != c.family] == []


def test_odd_photos_get_regions_or_the_whole_photo(demo_workspace, tmp_path: Path) -> None:
    pin = Image.open(Path(__file__).parent.parent / "sample_data/pins/7303782.jpg")
    odd = {"tiny.png": pin.resize((48, 60)), "panorama.jpg": pin.resize((6000, 300)),
           "grey.jpg": pin.convert("L"), "cmyk.jpg": pin.convert("CMYK"),
           "alpha.png": pin.convert("RGBA")}
    for name, image in odd.items():
        image.save(tmp_path / name)
    result = match([tmp_path / n for n in odd], workspace=demo_workspace, top_k=1)
    for pin_result in result.pins:
        assert pin_result.error is None and pin_result.objects, pin_result.image
    assert result.pins[0].objects[0].source == "whole_image"  # too small for regions


# -- class names -> catalog categories ----------------------------------------------------

def test_detector_classes_map_to_catalog_categories_by_text(demo_workspace) -> None:
    from pinshop_cli.retrieval.retriever import Retriever

    retriever = Retriever(demo_workspace)
    vocabulary = CategoryVocabulary(retriever.store.distinct("category"),
                                    retriever.embedder.embed_texts)
    named = {c: vocabulary.category(c) for c in
             ("couch", "floor lamp", "potted plant", "dining table", "throw pillow",
              "person", "car", "traffic light")}
    assert named["couch"] == "sofa" and named["floor lamp"] == "lamp"
    assert named["potted plant"] == "plant" and named["dining table"] == "table"
    assert named["throw pillow"] is None or named["throw pillow"] == "cushion"
    assert named["person"] is None and named["car"] is None and named["traffic light"] is None


def test_plumbing_yaml_built_yoloe_random_weights_runs_with_the_regions(
        demo_workspace, tmp_path: Path, sample_dir: Path) -> None:
    """An open-vocabulary YOLOE built from its YAML, saved as .pt and loaded by path through
    the same code as the real checkpoints; random weights, so only plumbing."""
    from ultralytics import YOLO

    checkpoint = tmp_path / "tiny-yoloe.pt"
    YOLO("yoloe-11s-seg.yaml").save(str(checkpoint))
    result = match([sample_dir / "pins" / "7303782.jpg"], workspace=demo_workspace, top_k=1,
                   detector=str(checkpoint))
    assert result.detector == "tiny-yoloe.pt+regions"
    assert any(o.source == "regions" for o in result.pins[0].objects)


# -- colours ------------------------------------------------------------------------------

@pytest.mark.parametrize(("rgb", "expected"), [
    ((30, 60, 160), "blue"), ((200, 40, 40), "red"), ((40, 120, 50), "green"),
    ((20, 20, 20), "black"), ((235, 235, 232), "white"), ((90, 60, 35), "brown"),
    ((225, 205, 170), "beige"),
])
def test_a_packshot_names_its_object_not_its_background(rgb, expected) -> None:
    image = Image.new("RGB", (300, 300), (244, 243, 240))  # a plain light background
    image.paste(Image.new("RGB", (160, 180), rgb), (70, 60))
    [main] = dominant_colors(image, top=1)
    assert main.family == expected, main
    assert family(srgb_to_lab(np.array(rgb, float))) == expected


@pytest.mark.parametrize(("rgb", "in_photo", "as_word"), [
    ((24, 40, 22), "green", "green"),  # a plant in shade: dark, and green, not black
    ((95, 90, 30), "green", "green"),  # olive: a dark yellow reads green
    ((150, 150, 147), "white", "grey"),  # L* 62: a white thing indoors, a grey word
    ((12, 12, 14), "black", "black"),
    ((20, 22, 30), "black", "black"),  # a black sofa in cool light, not blue
])
def test_photo_lighting_moves_white_but_not_a_word(rgb, in_photo, as_word) -> None:
    """Measured on 89 real photos with stated colours (BENCHMARKS.md, "Regions")."""
    image = Image.new("RGB", (300, 300), (244, 243, 240))
    image.paste(Image.new("RGB", (160, 180), rgb), (70, 60))
    assert dominant_colors(image, top=1)[0].family == in_photo
    assert family(srgb_to_lab(np.array(rgb, float))) == as_word
    assert word_family("olive") == "green" and word_family("darkgray") == "grey"


def test_colour_words_read_as_families() -> None:
    assert word_family("navy") == word_family("Steel Blue") == "blue"
    assert word_family("walnut") == "brown" and word_family("gray") == "grey"
    assert word_family("teal") == "teal" and word_family("velvet") is None


def test_photo_colours_are_stored_and_filter_search(copy_workspace) -> None:
    from pinshop_cli.look.similar import similar
    from pinshop_cli.sql import run_sql

    root = copy_workspace()
    named = run_sql("SELECT count(*) FROM catalog WHERE photo_color IS NOT NULL", root).rows
    assert named[0][0] == 34  # every product with a photo
    colours = run_sql("SELECT count(*) FROM detections WHERE color IS NULL", root).rows
    assert colours[0][0] == 0
    # Each region says which colour rules named it (they are not named again on a change).
    from pinshop_cli.detection.colors import RULES

    assert run_sql("SELECT DISTINCT color_rules FROM detections", root).rows == [(RULES,)]
    pin = Path(__file__).parent.parent / "sample_data/pins/7303782.jpg"
    black = match([pin], workspace=root, top_k=3, color="black", detector="none")
    assert all("black" in f"{m.color} {m.title} {m.photo_color}".lower()
               for m in black.pins[0].objects[0].matches)
    in_black = similar("P005", workspace=root, color="black", top_k=3).items  # an armchair
    assert in_black and in_black[0].product.id == "P028"  # the black leather club chair
    assert all(i.product.category == "armchair" for i in in_black)


def test_a_colour_asked_of_a_region_stays_in_its_category(copy_workspace) -> None:
    """"This, but in black": each region's answers keep its category (the small demo
    categories route to the global index, where the colour alone would pick any black
    product)."""
    root = copy_workspace()
    pin = Path(__file__).parent.parent / "sample_data/pins/7303782.jpg"  # five regions
    found = match([pin], workspace=root, top_k=5, color="black", detector="regions")
    regions = [o for o in found.pins[0].objects if o.category]
    assert regions and any(o.matches for o in regions)
    for region in regions:
        assert all(m.category == region.category for m in region.matches), region.category
