"""The ingest stages as plain callables over Arrow tables (what both engines run), with the
real offline image model."""

from __future__ import annotations

import pickle
from pathlib import Path

import pyarrow as pa
import pytest

from pinshop_cli.engines import Stage
from pinshop_cli.ingestion.stages import DecodeImages, EmbedImages, WriteParts
from pinshop_cli.workspace import Workspace
from pinshop_cli.workspace.parts import PartStore


def plan(paths: list[Path]) -> pa.Table:
    return pa.table({"id": [p.stem for p in paths], "path": [str(p) for p in paths],
                     "h": [f"h{n}" for n in range(len(paths))]})


@pytest.mark.slow
def test_stages_pickle_and_a_batch_of_only_bad_images_keeps_the_stream_schema(
        tmp_path: Path, bad_images: dict[str, Path], sample_dir: Path) -> None:
    ws = Workspace.open(tmp_path / "ws", create=True)
    PartStore(ws.embeddings_dir / "product_image").ensure()  # as the driver does first
    stages = [Stage(DecodeImages, {"max_pixels": 64_000_000, "min_side": 448}),
              Stage(EmbedImages, {"embedder": "offline", "models_dir": None,
                                  "expect": "efficientnet-lite0"}, model=True),
              Stage(WriteParts, {"workspace": str(ws.root), "kind": "product_image",
                                 "model_id": "efficientnet-lite0"})]
    built = [pickle.loads(pickle.dumps(stage)).build() for stage in stages]
    decode, embed, write = built

    bad = embed(decode(plan([bad_images["truncated"], bad_images["not_image"]])))
    good = embed(decode(plan([sample_dir / "products" / "P001.jpg", bad_images["zero_byte"]])))
    assert bad.schema == good.schema  # Ray may join these two batches into one
    receipts = write(pa.concat_tables([bad, good]))

    receipt = receipts.to_pylist()[0]
    assert receipt["rows"] == 1 and receipt["items"] == 4
    assert sorted(receipt["reject_ids"]) == ["empty", "notes", "truncated"]
    assert all(receipt["reject_reasons"])
    store = PartStore(ws.embeddings_dir / "product_image")
    assert store.files() == []  # written, not listed: listing is the driver's step
    assert (store.directory / receipt["part"]).exists()
