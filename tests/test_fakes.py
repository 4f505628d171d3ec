"""The fakes in pinshop_cli.testing (plumbing): they behave like models where the wiring
needs it, and come and go from the registry cleanly."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pinshop_cli import IngestConfig, UnknownModelError, build_indexes, ingest, match
from pinshop_cli.models import get_embedder
from pinshop_cli.models.registry import find_spec, model_status
from pinshop_cli.testing import FakeEmbedder


def test_fake_embedder_is_deterministic_and_keeps_alike_inputs_alike():
    fake, again = FakeEmbedder(), FakeEmbedder()
    red, darker_red, blue = (Image.new("RGB", (40, 30), c) for c in
                             ((200, 30, 30), (170, 20, 20), (30, 30, 200)))
    split = Image.new("RGB", (40, 30), (200, 30, 30))
    split.paste((30, 30, 200), (20, 0, 40, 30))
    vectors = fake.embed_images([red, darker_red, blue, split])
    assert np.allclose(vectors, again.embed_images([red, darker_red, blue, split]))
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    texts = fake.embed_texts(["green velvet sofa", "Sofa, green velvet!", "brass lamp", ""])
    assert texts[0] @ texts[1] == pytest.approx(1.0)  # the same words
    assert texts[0] @ texts[2] < 0.5
    assert np.isfinite(texts[3]).all()


def test_fake_embedder_is_registered_only_inside_its_block(fake_embedder):
    assert find_spec(fake_embedder) is not None
    assert model_status(find_spec(fake_embedder)).where == "needs no files"
    assert get_embedder(fake_embedder).source == fake_embedder


def test_fake_embedder_is_gone_after_the_test():
    assert find_spec("fake-embedder") is None
    with pytest.raises(UnknownModelError, match="unknown model"):
        get_embedder("fake-embedder-not-cached")


def test_a_workspace_ingested_with_the_fake_answers_match(fake_embedder, sample_dir, tmp_path):
    """Ingest, index and match run through the fake as through a real embedder."""
    root = tmp_path / "ws"
    summary = ingest(root, sample_dir / "catalog.csv", sample_dir / "pins",
                     IngestConfig(embedder=fake_embedder))
    assert summary.embedder == "fake-image / fake-text" and summary.rows_ok == 44
    build_indexes(root)
    result = match([sample_dir / "products" / "P001.jpg"], workspace=root, top_k=3,
                   detector="none")
    best = result.pins[0].objects[0].matches[0]
    assert best.id == "P001"  # the product's own photo is its nearest neighbour
