"""Would pinshop still work with the newest releases of what it depends on?

Run by hand, not in CI (it installs into a scratch virtual environment, and a fresh
llama-cpp-python compiles for 4-9 minutes on 2 cores):

    python bench/check_newest.py                      # every dependency at its newest
    python bench/check_newest.py llama-cpp-python==0.3.30   # or the versions you name

It installs pinshop without its pins, then each dependency named in pyproject.toml (and the
test extra) at its newest release, or at the version given on the command line; then runs
the chat, embedding and index smoke tests against that environment and reports which break,
with the versions that differ from constraints.txt (what CI runs). Results go to stdout and
to BENCHMARKS.md ("Newest releases").
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parent.parent
SMOKE = {
    "chat": ["tests/test_chat_library.py", "tests/test_chat.py::test_once_and_json_shapes"],
    "embedding": ["tests/test_onnx.py::test_offline_pair_on_onnx_agrees_with_torch",
                  "tests/test_match.py::test_offline_pair_crop_of_a_pin_retrieves_the_right_product"],
    "index": ["tests/test_index.py", "tests/test_retrieval.py"],
}


def requirement_names() -> list[str]:
    """Every dependency of pinshop and of its test extra, by name only (newest wanted)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + project["optional-dependencies"]["test"]
    return [re.match(r"[A-Za-z0-9_.\-]+(\[[^\]]*\])?", line).group(0)  # type: ignore[union-attr]
            for line in lines]


def pinned() -> dict[str, str]:
    found = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            found[name.lower().replace("_", "-")] = version.strip()
    return found


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    print("+", " ".join(command), file=sys.stderr)
    return subprocess.run(command, capture_output=True, text=True, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("versions", nargs="*", help="name==version to install instead of "
                        "the newest (e.g. llama-cpp-python==0.3.30)")
    parser.add_argument("--venv", type=Path, help="reuse or keep this environment")
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    args = parser.parse_args()

    venv = args.venv or Path(tempfile.mkdtemp(prefix="pinshop-newest-")) / "venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    chosen = {re.split(r"[\[=<>]", v, maxsplit=1)[0].lower(): v for v in args.versions}
    wanted = [chosen.get(re.split(r"\[", name)[0].lower(), name)
              for name in requirement_names()]
    started = time.perf_counter()
    steps = [[str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"],
             [str(python), "-m", "pip", "install", "-q", "--no-deps", "-e", str(REPO)],
             [str(python), "-m", "pip", "install", "-q", "--upgrade", *wanted]]
    for step in steps:
        done = run(step, env={**os.environ, "CMAKE_BUILD_PARALLEL_LEVEL": "2"})
        if done.returncode != 0:
            sys.exit(f"install failed:\n{done.stderr[-3000:]}")
    install_s = time.perf_counter() - started

    freeze = run([str(python), "-m", "pip", "freeze"]).stdout
    installed = {n.lower().replace("_", "-"): v for n, v in
                 re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)$", freeze, re.MULTILINE)}
    tested = pinned()
    differs = [f"{name} {tested[name]} -> {version}" for name, version in sorted(installed.items())
               if name in tested and tested[name] != version]

    results = []
    for group, tests in SMOKE.items():
        done = run([str(python), "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                   cwd=REPO, env={**os.environ, "PINSHOP_OFFLINE": "1",
                                  "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"})
        tail = [line for line in (done.stdout + done.stderr).strip().splitlines() if line]
        failed = [line for line in tail if line.startswith(("FAILED", "ERROR", "Fatal"))]
        verdict = "passes" if done.returncode == 0 else (
            f"BREAKS (exit {done.returncode}): " + (failed[0] if failed else tail[-1])[:200])
        results.append((group, verdict))
        print(f"{group}: {verdict}")

    lines = ["## Newest releases\n",
             f"`python bench/check_newest.py {' '.join(args.versions)}`".rstrip() +
             f" on {date.today().isoformat()} ({install_s / 60:.1f} min to install). Versions "
             "that differ from constraints.txt (what CI runs):\n",
             *(f"- {line}" for line in differs or ["none"]), "",
             "| smoke tests | result |", "|---|---|",
             *(f"| {group} | {verdict} |" for group, verdict in results), ""]
    section = "\n".join(lines)
    sys.path.insert(0, str(REPO / "bench"))
    from bench_ingest import write_section

    write_section(args.out, "## Newest releases", section)
    print(section)


if __name__ == "__main__":
    main()
