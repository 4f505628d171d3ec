"""Deterministic crash trials and readers racing a rebuilding writer.

    python bench/stress_faults.py [--commands ingest index rebuild] [--queries 1000]
                                  [--every 1] [--keep]

Where bench/stress_kill.py kills at random moments, this kills at *every* file operation:
PINSHOP_FAULT_AT=N makes the command exit like kill -9 at its Nth atomic write, rename or
unlink (pinshop_cli/workspace/faults.py). A small input keeps the counts low: the first 12
sample products, 2 pins, batch size 2, PINSHOP_COMPACT_FANOUT=2 (so parts compact).

1. Fault trials, for `ingest`, `index` (from scratch) and `index --rebuild` (on a workspace
   whose labels an update renumbered, the torn-index case): a clean run counts the
   operations; then for each N, a fresh copy is killed at N and checked twice:
   - right after the kill (nothing has repaired it): every index that exists loads and
     answers exactly the clean answers, none is damaged, and a rebuilt index is not stale;
   - after the same command runs again: exit 0, the checks of stress_kill.py (Parquet
     readable, manifests match their parts, no duplicate vectors, same rows and vectors
     as an uninterrupted run; indexes current with the reference's counts), the clean
     answers, and no index file that no manifest names.
2. Readers during rebuilds: a reader process loads the index fresh for every query (the
   manifest, its generation, the checks) and compares each answer with the clean one,
   while this process runs `index --rebuild` again and again, a third of them killed at a
   fault point. Counts queries, wrong answers and errors; then `pinshop index` repairs and
   the answers must be exactly the clean ones.

Writes bench/out/stress_faults.json and the "Crash safety" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import stress_kill as kill  # noqa: E402
from bench_ingest import write_section  # noqa: E402

OUT = REPO / "bench" / "out" / "stress_faults.json"
QUERY_IDS = ("P001", "P004", "P006", "P009", "P012")
PRODUCTS = 12
BATCH = "2"


# -- inputs and runs ------------------------------------------------------------------------

def prepare_inputs(root: Path) -> dict[str, Path]:
    """The first PRODUCTS sample rows and two pins; and a changed catalog that adds two
    products whose ids sort first (an update then numbers labels unlike a rebuild)."""
    data = root / "input"
    shutil.copytree(kill.SAMPLE / "products", data / "products")
    (data / "pins").mkdir()
    for pin in sorted((kill.SAMPLE / "pins").glob("*.jpg"))[:2]:
        shutil.copy(pin, data / "pins" / pin.name)
    with open(kill.SAMPLE / "catalog.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))[:PRODUCTS]
    changed = [{**rows[0], "id": "A000", "title": "Walnut Leather Lamp", "image": ""},
               {**rows[3], "id": "A001", "title": "Cloud Boucle Armchair"}, *rows]
    for name, table in (("catalog.csv", rows), ("changed.csv", changed)):
        with open(data / name, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(table)
    return {"catalog": data / "catalog.csv", "changed": data / "changed.csv",
            "pins": data / "pins"}


def env(fault_at: int | None = None, log: Path | None = None) -> dict[str, str]:
    values = {k: v for k, v in kill.pinshop_env().items() if not k.startswith("PINSHOP_FAULT")}
    if fault_at is not None:
        values["PINSHOP_FAULT_AT"] = str(fault_at)
    if log is not None:
        values["PINSHOP_FAULT_LOG"] = str(log)
    return values


def pinshop(args: list[str], fault_at: int | None = None, log: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(kill.command(*args), env=env(fault_at, log), capture_output=True,
                          text=True, timeout=kill.RUN_TIMEOUT, cwd=REPO)


def command_args(name: str, ws: Path, inputs: dict[str, Path]) -> list[str]:
    if name == "ingest":
        return ["ingest", str(inputs["catalog"]), "--pins", str(inputs["pins"]), "-w", str(ws),
                "--batch-size", BATCH, "--json"]
    return ["index", "-w", str(ws), "--json", *(["--rebuild"] if name == "rebuild" else [])]


def count_operations(args: list[str], ws: Path, prepare: Any) -> list[str]:
    log = ws.parent / f"{ws.name}.ops"
    log.unlink(missing_ok=True)
    prepare(ws)
    done = pinshop(args, log=log)
    if done.returncode:
        raise SystemExit(f"clean run failed: {done.stderr[-2000:]}")
    return log.read_text().splitlines()


# -- answers ----------------------------------------------------------------------------------

def answer(root: Path, vectors: Any) -> dict[str, list[list[str]]]:
    """Top-5 answers of the product_text index for `vectors`, globally and among chairs
    and armchairs (a filtered search), from a fresh load."""
    from pinshop_cli.retrieval.retriever import Retriever
    from pinshop_cli.retrieval.store import Filters

    retriever = Retriever(root)
    try:
        found = {"global": retriever.search(vectors, 5, "product_text").hits,
                 "armchairs": retriever.search(vectors, 5, "product_text",
                                               Filters(category="armchair")).hits}
        return {name: [[hit.id for hit in row] for row in rows] for name, rows in found.items()}
    finally:
        retriever.close()


def query_vectors(root: Path) -> Any:
    import numpy as np

    from pinshop_cli.index.hnsw import load_index
    from pinshop_cli.workspace import Workspace

    loaded = load_index(Workspace.open(root), "product_text")
    try:
        return np.asarray(loaded.vectors_by_id(list(QUERY_IDS))[1])
    finally:
        loaded.close()


def unlisted_index_files(root: Path) -> list[str]:
    from pinshop_cli.index.generations import files_of
    from pinshop_cli.index.hnsw import read_manifests
    from pinshop_cli.workspace import Workspace

    listed = {f"{m.name}.json" for m in read_manifests(Workspace.open(root))}
    for manifest in read_manifests(Workspace.open(root)):
        listed.update(files_of(manifest))
    return sorted(p.name for p in (root / "indexes").glob("*")
                  if p.name not in listed and not p.name.startswith("."))


def after_kill(root: Path, clean: dict[str, Any], vectors: Any, rebuilt: bool) -> list[str]:
    """What a reader sees right after the kill: whole indexes and the clean answers."""
    from pinshop_cli.index.hnsw import index_status

    problems = []
    try:
        statuses = index_status(root)
    except Exception as exc:  # noqa: BLE001 - any failure is the finding
        return [f"index --status fails after the kill: {exc!r}"]
    if damaged := [s.name for s in statuses if s.damage]:
        problems.append(f"damaged after the kill: {damaged[:4]}")
    if rebuilt and (stale := [s.name for s in statuses if s.stale]):
        problems.append(f"stale after a killed rebuild: {stale[:4]}")
    if any(s.name == "product_text" for s in statuses):
        try:
            if (got := answer(root, vectors)) != clean:
                problems.append(f"wrong answers after the kill: {got} != {clean}")
        except Exception as exc:  # noqa: BLE001
            problems.append(f"query fails after the kill: {exc!r}")
    return problems


# -- fault trials ----------------------------------------------------------------------------

def fault_trials(name: str, work: Path, base: Path | None, inputs: dict[str, Path],
                 reference: dict[str, Any], clean: dict[str, Any], vectors: Any,
                 every: int) -> list[dict[str, Any]]:
    def prepare(ws: Path) -> None:
        shutil.rmtree(ws, ignore_errors=True)
        if base is not None:
            shutil.copytree(base, ws, ignore=shutil.ignore_patterns(".lock"))

    probe = work / f"{name}-count"
    operations = count_operations(command_args(name, probe, inputs), probe, prepare)
    shutil.rmtree(probe, ignore_errors=True)
    trials = []
    for number in range(1, len(operations) + 1, every):
        ws = work / f"{name}-{number:04d}"
        prepare(ws)
        args = command_args(name, ws, inputs)
        killed = pinshop(args, fault_at=number)
        problems = [] if killed.returncode == 137 else [
            f"expected the kill (exit 137), got exit {killed.returncode}: "
            f"{killed.stderr.strip()[-300:]}"]
        if name != "ingest":
            problems += after_kill(ws, clean, vectors, rebuilt=name == "rebuild")
        problems += rerun_checks(name, ws, args, reference, clean, vectors)
        trials.append({"command": name, "fault_at": number,
                       "operation": operations[number - 1].split(" ", 1)[1],
                       "passed": not problems, "problems": problems})
        verdict = "PASS" if not problems else "FAIL: " + "; ".join(problems)[:600]
        print(f"{name:<8} kill at op {number:3d}/{len(operations)} "
              f"{Path(operations[number - 1].split()[-1]).name[:48]:<48} {verdict}", flush=True)
        shutil.rmtree(ws, ignore_errors=True)
    return trials


def rerun_checks(name: str, ws: Path, args: list[str], reference: dict[str, Any],
                 clean: dict[str, Any], vectors: Any) -> list[str]:
    again = pinshop(args)
    if again.returncode:
        return [f"re-run exit {again.returncode}: {again.stderr.strip()[-400:]}"]
    problems: list[str] = []
    kill.check_parquet_readable(ws, problems)
    kill.check_part_stores(ws, problems)
    kill.check_duplicates(ws, REPO, problems)
    kill.check_against_reference(ws, reference, problems)
    if name != "ingest":
        state, found = kill.index_state(ws, REPO)
        problems += found
        if stale := [n for n, s in state.items() if s.get("stale")]:
            problems.append(f"stale after the re-run: {stale[:5]}")
        want = {n: s["count"] for n, s in reference["indexes"].items()}
        if (have := {n: s.get("count") for n, s in state.items()}) != want:
            problems.append(f"index counts {have} != reference {want}")
        if (got := answer(ws, vectors)) != clean:
            problems.append(f"wrong answers after the re-run: {got}")
        if leftovers := unlisted_index_files(ws):
            problems.append(f"index files no manifest names: {leftovers[:5]}")
    return problems


# -- readers during rebuilds ------------------------------------------------------------------

def reader(root: Path, vectors_file: Path, clean_file: Path, queries: int, out: Path) -> None:
    """A reader process: a fresh load for every query, each answer compared."""
    import numpy as np

    from pinshop_cli.retrieval.retriever import Retriever
    from pinshop_cli.retrieval.store import Filters

    vectors, clean = np.load(vectors_file), json.loads(clean_file.read_text())
    done, wrong, errors = 0, [], []
    started = time.perf_counter()
    while done < queries:
        row = done % len(vectors)
        name = "armchairs" if done % 4 == 3 else "global"
        filters = Filters(category="armchair") if name == "armchairs" else None
        try:
            retriever = Retriever(root)
            try:
                hits = retriever.search(vectors[row:row + 1], 5, "product_text", filters).hits
            finally:
                retriever.close()
            got = [hit.id for hit in hits[0]]
            if got != clean[name][row]:
                wrong.append({"query": done, "got": got, "want": clean[name][row]})
        except Exception as exc:  # noqa: BLE001 - every failure is counted
            errors.append(traceback.format_exception_only(type(exc), exc)[-1].strip())
        done += 1
    out.write_text(json.dumps({"queries": done, "wrong": wrong, "errors": errors,
                               "seconds": time.perf_counter() - started}))


def readers_during_rebuilds(base: Path, work: Path, clean: dict[str, Any], vectors: Any,
                            queries: int) -> dict[str, Any]:
    import numpy as np

    ws = work / "race"
    shutil.copytree(base, ws, ignore=shutil.ignore_patterns(".lock"))
    np.save(work / "queries.npy", vectors)
    (work / "clean.json").write_text(json.dumps(clean))
    out = work / "reader.json"
    operations = len(count_operations(command_args("rebuild", work / "race-count", {}),
                                      work / "race-count",
                                      lambda p: shutil.copytree(base, p)))
    process = subprocess.Popen(
        [sys.executable, __file__, "--reader", str(ws), str(work / "queries.npy"),
         str(work / "clean.json"), str(queries), str(out)], env=env(), cwd=REPO)
    rebuilds = killed = failed = 0
    while process.poll() is None:
        fault_at = (rebuilds * 37) % operations + 1 if rebuilds % 3 == 2 else None
        run = pinshop(command_args("rebuild", ws, {}), fault_at=fault_at)
        rebuilds += 1
        killed += run.returncode == 137
        failed += run.returncode not in (0, 137)
    result = json.loads(out.read_text())
    repair = pinshop(command_args("index", ws, {}))
    final = answer(ws, vectors)
    return {"queries": result["queries"], "wrong": len(result["wrong"]),
            "errors": len(result["errors"]), "examples": (result["wrong"] + result["errors"])[:5],
            "reader_seconds": round(result["seconds"], 1), "rebuilds": rebuilds,
            "killed_rebuilds": killed, "failed_rebuilds": failed,
            "repair_exit": repair.returncode, "repaired_exactly": final == clean,
            "unlisted_after_repair": unlisted_index_files(ws)}


# -- main --------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", nargs="*", default=["ingest", "index", "rebuild"])
    parser.add_argument("--every", type=int, default=1, help="kill at every Nth operation")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--reader", nargs=5, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.reader:
        root, vectors, clean, queries, out = options.reader
        reader(Path(root), Path(vectors), Path(clean), int(queries), Path(out))
        return 0
    root = Path(tempfile.mkdtemp(prefix="pinshop-faults-"))
    started = time.time()
    try:
        inputs = prepare_inputs(root)
        work = root / "work"
        work.mkdir()
        ingested = root / "ingested"  # the reference ingest, no index
        if pinshop(command_args("ingest", ingested, inputs)).returncode:
            raise SystemExit("reference ingest failed")
        ingest_ref = kill.reference_of(ingested, REPO, with_index=False)
        indexed = root / "indexed"
        shutil.copytree(ingested, indexed)
        if pinshop(command_args("index", indexed, inputs)).returncode:
            raise SystemExit("reference index failed")
        index_ref = kill.reference_of(indexed, REPO, with_index=True)
        renumbered = root / "renumbered"  # updated in place after new ids that sort first
        shutil.copytree(indexed, renumbered)
        for args in (["ingest", str(inputs["changed"]), "-w", str(renumbered), "--batch-size",
                      BATCH], command_args("index", renumbered, inputs)):
            if pinshop(args).returncode:
                raise SystemExit(f"preparing the renumbered workspace failed: {args}")
        rebuild_ref = kill.reference_of(renumbered, REPO, with_index=True)
        vectors = query_vectors(indexed)
        clean = {"index": answer(indexed, vectors), "rebuild": answer(renumbered, vectors)}
        trials: list[dict[str, Any]] = []
        plans = {"ingest": (None, ingest_ref, None), "index": (ingested, index_ref, "index"),
                 "rebuild": (renumbered, rebuild_ref, "rebuild")}
        for name in options.commands:
            base, reference, answers = plans[name]
            trials += fault_trials(name, work, base, inputs, reference,
                                   clean[answers] if answers else {}, vectors, options.every)
        race = readers_during_rebuilds(renumbered, work, clean["rebuild"], vectors,
                                       options.queries) if options.queries else None
        report = {"trials": len(trials), "passed": sum(t["passed"] for t in trials),
                  "by_command": {name: {"trials": sum(t["command"] == name for t in trials),
                                        "passed": sum(t["passed"] for t in trials
                                                      if t["command"] == name)}
                                 for name in options.commands},
                  "failures": [t for t in trials if not t["passed"]][:20],
                  "readers_during_rebuilds": race,
                  "wall_s": round(time.time() - started, 1)}
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(json.dumps({k: v for k, v in report.items() if k != "failures"}, indent=1))
        write_benchmarks(report, options)
        ok = report["passed"] == report["trials"] and (
            race is None or (race["wrong"] == race["errors"] == 0 and race["repaired_exactly"]))
        return 0 if ok else 1
    finally:
        if options.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def write_benchmarks(report: dict[str, Any], options: argparse.Namespace) -> None:
    rows = [f"| `{'index --rebuild' if name == 'rebuild' else name}` | {c['trials']} | "
            f"{c['passed']} |" for name, c in report["by_command"].items()]
    lines = ["## Crash safety: a kill at every file operation, readers during rebuilds", "",
             "`python bench/stress_faults.py` (the first 12 sample products and 2 pins, batch "
             "size 2, compaction fan-out 2). Each trial copies a workspace, runs the command "
             "with `PINSHOP_FAULT_AT=N` (it exits like kill -9 at its Nth atomic write, rename "
             "or unlink), checks what readers see right then (every index loads, none "
             "damaged, a killed rebuild's index not stale, answers exactly the clean ones), "
             "runs the command again and checks the workspace against an uninterrupted run "
             "(tables, vectors, part manifests, no duplicates, index counts, answers, no file "
             "no manifest names). `index --rebuild` runs on a workspace whose labels an "
             "update in place renumbered (new ids that sort first: the torn-index case).",
             "", "| command | trials (one per operation) | survived |", "|---|---|---|", *rows]
    race = report["readers_during_rebuilds"]
    if race:
        lines += ["", f"Readers during rebuilds: a reader process answered **{race['queries']:,} "
                  f"queries** (a fresh index load each, one in four filtered to a category) "
                  f"while `index --rebuild` ran {race['rebuilds']} times "
                  f"({race['killed_rebuilds']} of them killed at a fault point): "
                  f"**{race['wrong']} wrong answers, {race['errors']} errors**. The repair "
                  "(`pinshop index`) then answered "
                  f"{'exactly' if race['repaired_exactly'] else 'NOT'} the clean answers."]
    lines += ["", f"Wall time {report['wall_s'] / 60:.0f} min, one run on this 2-core machine."]
    write_section(REPO / "BENCHMARKS.md", lines[0], "\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
