"""`pinshop match photo.jpg` latency: a fresh CLI process against `python -c "import
torch"` on the same machine in the same run, and the warm per-pin latency of a loaded
Retriever, each on --runtime onnx (cached exports, no YOLO weights: no torch) and torch.

The workspace is the demo's (sample_data ingested with the offline pair, indexed).
Run: python bench/bench_match.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_ingest import write_section

from pinshop_cli import match
from pinshop_cli.demo import find_sample_data, run_demo
from pinshop_cli.retrieval.retriever import Retriever


def wall(command: list[str], repeat: int) -> float:
    """Median wall seconds of a fresh process (one untimed run first: page cache)."""
    subprocess.run(command, capture_output=True, check=True)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def warm_ms_per_pin(workspace: Path, pins: list[Path], runtime: str, repeat: int) -> float:
    retriever = Retriever(workspace, runtime=runtime)
    match(pins[:1], workspace=workspace, retriever=retriever)  # loads models and indexes
    times = []
    for _ in range(repeat):
        for pin in pins:
            started = time.perf_counter()
            match([pin], workspace=workspace, retriever=retriever)
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent.parent / "BENCHMARKS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PINSHOP_MODELS"] = str(Path(tmp) / "models")
        workspace = Path(tmp) / "pinshop-demo"
        run_demo(workspace)
        pins = sorted((find_sample_data() / "pins").glob("*.jpg"))
        pinshop = [sys.executable, "-m", "pinshop_cli.commands.main"]
        photo = ["match", str(pins[0]), "-w", str(workspace)]
        import_torch = wall([sys.executable, "-c", "import torch"], args.repeat)
        cold_onnx = wall(pinshop + photo + ["--runtime", "onnx"], args.repeat)
        cold_torch = wall(pinshop + photo + ["--runtime", "torch"], args.repeat)
        help_s = wall(pinshop + ["--help"], args.repeat)
        warm_onnx = warm_ms_per_pin(workspace, pins, "onnx", args.repeat)
        warm_torch = warm_ms_per_pin(workspace, pins, "torch", args.repeat)
    table = [
        "| measurement | wall | vs `import torch` |", "|---|---|---|",
        f"| `python -c \"import torch\"` (the yardstick) | {import_torch:.2f} s | 1.00x |",
        f"| **`pinshop match photo.jpg -w pinshop-demo`, --runtime onnx (default)** | "
        f"**{cold_onnx:.2f} s** | **{cold_onnx / import_torch:.2f}x** (goal <= 1.0x) |",
        f"| same, --runtime torch | {cold_torch:.2f} s | {cold_torch / import_torch:.2f}x |",
        f"| `pinshop --help` | {help_s:.2f} s | {help_s / import_torch:.2f}x |",
        f"| warm match, Retriever loaded, per pin (p50 over {len(pins)} pins x "
        f"{args.repeat}): onnx / torch | {warm_onnx:.0f} / {warm_torch:.0f} ms | |",
    ]
    section = ("## Query latency: `pinshop match` without torch\n\n"
               f"`python bench/bench_match.py` — fresh processes, median of {args.repeat} "
               "after one untimed run; the demo workspace (offline pair, no YOLO weights: "
               "whole-image regions). With ONNX exports cached, the match process never "
               "imports torch (checked by tests/test_onnx.py).\n\n" + "\n".join(table) + "\n")
    write_section(args.out, "## Query latency: `pinshop match` without torch", section)
    print(section)


if __name__ == "__main__":
    main()
