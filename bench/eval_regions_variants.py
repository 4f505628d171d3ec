"""Regions in a catalog of colour variants photographed apart.

    python bench/eval_regions_variants.py

The 12 bench rooms' catalog (bench/scenes.py), with two recoloured siblings of every
packshot (its hue turned a third and two thirds of the way round), the three one family
(`item_group_id`): a shop's "the same sofa in three colours". Prints found@1 / precision
exactly (the region's first match is the boxed product) and by family (any of its
variants), on all 12 rooms and the 4 held out.
"""

from __future__ import annotations

import csv
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from eval_regions import HELD_OUT, distractor_dir  # noqa: E402
from scenes import load_scenes, write_scene_set  # noqa: E402

HUE_TURNS = (85, 170)  # of 256


def variant_catalog(out: Path) -> Path:
    import numpy as np
    from PIL import Image

    boxed = load_scenes()
    catalog = write_scene_set(out / "set", boxed, distractor_dir(out, {b.photo for b in boxed}))
    with open(catalog, newline="") as handle:
        rows = list(csv.DictReader(handle))
    written = []
    for row in rows:
        family = row["id"] if row["id"].startswith("S") else ""
        written.append({**row, "item_group_id": family})
        if not family:
            continue
        hue, saturation, value = Image.open(out / "set" / row["image"]).convert("HSV").split()
        for n, turn in enumerate(HUE_TURNS, start=1):
            turned = Image.fromarray(((np.asarray(hue).astype(int) + turn) % 256)
                                     .astype(np.uint8))
            path = f"packshots/{row['id']}-v{n}.jpg"
            Image.merge("HSV", [turned, saturation, value]).convert("RGB").save(
                out / "set" / path, quality=90)
            written.append({**row, "id": f"{row['id']}-v{n}", "image": path,
                            "item_group_id": family, "color": f"variant {n}"})
    with open(catalog, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(written[0]))
        writer.writeheader()
        writer.writerows(written)
    return catalog


def main() -> None:
    from pinshop_cli import build_indexes, ingest, match
    from pinshop_cli.retrieval.retriever import Retriever

    boxed = load_scenes()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        catalog = variant_catalog(tmp)
        with open(catalog, newline="") as handle:
            family = {r["id"]: r["item_group_id"] or r["id"] for r in csv.DictReader(handle)}
        ingest(tmp / "ws", catalog)
        build_indexes(tmp / "ws")
        retriever = Retriever(tmp / "ws")
        counts = {"exact": [0, 0, 0, 0], "family": [0, 0, 0, 0]}  # found, regions; held out
        for photo in sorted({b.photo for b in boxed}):
            result = match([tmp / "set" / "pins" / f"{photo}.jpg"], top_k=1,
                           retriever=retriever)
            firsts = [o.matches[0].id for o in result.pins[0].objects if o.matches]
            wanted = {b.id for b in boxed if b.photo == photo}
            for kind, names in (("exact", set(firsts)), ("family", {family[f] for f in firsts})):
                found = len(wanted & names)
                held = 2 if photo in HELD_OUT else 0
                for at in {0, held}:
                    counts[kind][at] += found
                    counts[kind][at + 1] += len(firsts)
        retriever.close()
    total = len(boxed)
    held_total = sum(b.photo in HELD_OUT for b in boxed)
    print(f"{len(family)} products, {total} boxed in {len({b.photo for b in boxed})} rooms")
    for kind, (found, regions, held_found, held_regions) in counts.items():
        print(f"{kind}: found@1 {found / total:.2f}, precision {found / regions:.2f}; "
              f"held out {held_found / held_total:.2f} / {held_found / max(held_regions, 1):.2f}")


if __name__ == "__main__":
    main()
