"""SIGKILL-and-resume stress: kill `pinshop ingest` / `pinshop index` at random points, run
the same command again, and check that the workspace is exactly what an uninterrupted run
makes.

    python bench/stress_kill.py --trials 20 [--seed 1] [--batch-size 4] [--keep]
                                [--engine ray] [--shards 3]

Setup: sample_data/ (catalog + product images + pins, plus a mirrored copy of every pin so
there are more detection batches) copied into a temp dir. PINSHOP_OFFLINE=1, and
PINSHOP_COMPACT_FANOUT=2 so that a few dozen rows already go through several compaction
levels (honoured by pinshop_cli/workspace/parts.py). Batch size 4 makes many parts.

1. Reference runs, uninterrupted, timed: ingest, then index. Their timelines (when the lock
   was taken, when each table last changed) split the run into phases; kill delays are
   stratified over the whole run, so kills land in every phase. Phases are guessed from
   elapsed time against that timeline, and the state the kill left (orphan parts, temp
   files) is printed too.
2. Trials (about 3/4 ingest, 1/4 index; index trials alternate "build from scratch" and
   "update in place after a catalog change"): start the command, SIGKILL it after the
   delay, run it again to completion, then check:
   - the re-run exits 0;
   - every Parquet file in the workspace is readable;
   - every part store's manifest lists existing files whose row count matches, and no
     unlisted part is left for `pinshop sql` to pick up;
   - `pinshop sql "SELECT id, count(*) FROM embeddings_<kind> GROUP BY id HAVING
     count(*) > 1"` finds nothing, and no (id, model, source_hash) is stored twice;
   - catalog / pins / detections / current-embedding counts equal the reference's, and
     every vector equals the reference's vector for that id (cosine >= 0.9999);
   - index trials: `pinshop index --status` reports nothing stale, every index the
     reference has exists with the same count, loads, and reports recall@10.
3. One line per trial, a final "N/N passed" line, and bench/out/stress_kill.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "sample_data"
OUT = REPO / "bench" / "out" / "stress_kill.json"
KINDS = ("product_image", "product_text", "crop")
RUN_TIMEOUT = 600
#: Extra flags for every ingest / index run (--engine ray, --shards N), set by main().
EXTRA: dict[str, list[str]] = {"ingest": [], "index": []}


# -- running pinshop ------------------------------------------------------------------------

def pinshop_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(PINSHOP_OFFLINE="1", HF_HUB_OFFLINE="1", YOLO_OFFLINE="1",
               PINSHOP_COMPACT_FANOUT="2", PYTHONUNBUFFERED="1")
    env.pop("PINSHOP_HOME", None)
    return env


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pinshop_cli.commands.main", *args]


def run(args: list[str], cwd: Path, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=pinshop_env(), capture_output=True, text=True,
                          timeout=timeout)


def run_killed(args: list[str], cwd: Path, delay: float) -> tuple[bool, int | None, float]:
    """Start `args`, SIGKILL its process group after `delay` s. Returns (killed, rc if it
    finished first, elapsed at the kill)."""
    process = subprocess.Popen(args, cwd=cwd, env=pinshop_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    started = time.monotonic()
    try:
        rc = process.wait(timeout=delay)
        return False, rc, time.monotonic() - started
    except subprocess.TimeoutExpired:
        elapsed = time.monotonic() - started
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return True, None, elapsed


def timed_reference(args: list[str], cwd: Path, ws: Path) -> tuple[subprocess.CompletedProcess,
                                                                   float, float | None]:
    """Run to completion; returns (result, wall seconds, when the workspace lock was seen).
    Polls the lock file so the startup phase (imports, model resolution) can be told apart."""
    process = subprocess.Popen(args, cwd=cwd, env=pinshop_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    wall0 = time.time()
    lock_seen = None
    while process.poll() is None:
        if lock_seen is None:
            try:
                if (ws / ".lock").read_text().startswith("pinshop pid"):
                    lock_seen = time.monotonic() - started
            except OSError:
                pass
        time.sleep(0.01)
    out, err = process.communicate()
    elapsed = time.monotonic() - started
    result = subprocess.CompletedProcess(args, process.returncode, out, err)
    result.wall0 = wall0  # type: ignore[attr-defined]
    return result, elapsed, lock_seen


# -- inputs ---------------------------------------------------------------------------------

def prepare_inputs(root: Path) -> dict[str, Path]:
    """sample_data copied, each pin also mirrored (distinct content: more detection batches),
    and a changed catalog for the index-update trials (one product removed, one retitled,
    one added)."""
    from PIL import Image, ImageOps

    data = root / "input"
    shutil.copytree(SAMPLE / "products", data / "products")
    shutil.copytree(SAMPLE / "pins", data / "pins")
    shutil.copy(SAMPLE / "catalog.csv", data / "catalog.csv")
    for pin in sorted((data / "pins").glob("*.jpg")):
        with Image.open(pin) as image:
            ImageOps.mirror(image.convert("RGB")).save(pin.with_name(f"{pin.stem}-m.jpg"),
                                                       quality=90)
    with open(data / "catalog.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    fields = list(rows[0])
    changed = [dict(r) for r in rows[1:]]
    changed[0]["title"] += " (new edition)"
    extra = dict(rows[0], id="P999", title="Stress test stool")
    changed.append(extra)
    with open(data / "catalog-changed.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fields)
        writer.writeheader()
        writer.writerows(changed)
    return {"catalog": data / "catalog.csv", "changed": data / "catalog-changed.csv",
            "pins": data / "pins", "root": data}


def ingest_args(catalog: Path, pins: Path | None, ws: Path, batch: int) -> list[str]:
    args = ["ingest", str(catalog), "-w", str(ws), "--batch-size", str(batch), "--json",
            *EXTRA["ingest"]]
    if pins is not None:
        args += ["--pins", str(pins)]
    return command(*args)


def index_args(ws: Path) -> list[str]:
    return command("index", "-w", str(ws), "--json", *EXTRA["index"])


# -- inspecting a workspace -----------------------------------------------------------------

def part_stores(ws: Path) -> list[Path]:
    stores = [ws / "embeddings" / kind for kind in KINDS]
    stores.append(ws / "parts" / "detections")
    return [s for s in stores if s.is_dir()]


def leftovers(ws: Path) -> dict[str, int]:
    """What a kill left behind: temp files and parts no manifest lists."""
    temps = [p for p in ws.rglob(".*.tmp")]
    orphans = 0
    for store in part_stores(ws):
        manifest = store / "_manifest.json"
        listed = set(json.loads(manifest.read_text())["files"]) if manifest.exists() else set()
        orphans += sum(1 for p in store.glob("L*.parquet") if p.name not in listed)
    return {"tmp_files": len(temps), "orphan_parts": orphans}


def check_parquet_readable(ws: Path, problems: list[str]) -> None:
    import pyarrow.parquet as pq

    for path in sorted(ws.rglob("*.parquet")):
        if path.name.startswith("."):
            continue  # a temp file, hidden from every reader
        try:
            pq.read_table(path)
        except Exception as exc:  # noqa: BLE001 - any failure is the finding
            problems.append(f"unreadable Parquet {path.relative_to(ws)}: {exc}")


def check_part_stores(ws: Path, problems: list[str]) -> None:
    import pyarrow.parquet as pq

    for store in part_stores(ws):
        manifest = json.loads((store / "_manifest.json").read_text())
        rows = 0
        for name in manifest["files"]:
            path = store / name
            if not path.exists():
                problems.append(f"{store.relative_to(ws)}: manifest lists missing {name}")
                continue
            rows += pq.read_metadata(path).num_rows
        if rows != manifest["rows"]:
            problems.append(f"{store.relative_to(ws)}: manifest says {manifest['rows']} rows, "
                            f"its files hold {rows}")
        orphans = sorted(p.name for p in store.glob("L*.parquet")
                         if p.name not in set(manifest["files"]))
        if orphans:
            problems.append(f"{store.relative_to(ws)}: unlisted parts left after the re-run "
                            f"(pinshop sql reads them): {orphans}")


def sql_json(ws: Path, query: str, cwd: Path) -> tuple[int, Any, str]:
    result = run(command("sql", query, "-w", str(ws), "--json"), cwd)
    try:
        return result.returncode, json.loads(result.stdout or "null"), result.stderr
    except json.JSONDecodeError:
        return result.returncode, None, result.stderr + result.stdout


def check_duplicates(ws: Path, cwd: Path, problems: list[str]) -> None:
    import duckdb

    kinds = [k for k in KINDS if (ws / "embeddings" / k / "_manifest.json").exists()]
    union = " UNION ALL ".join(
        f"SELECT '{k}' AS kind, id, count(*) AS n FROM embeddings_{k} GROUP BY id "
        "HAVING count(*) > 1" for k in kinds)
    if union:
        rc, rows, err = sql_json(ws, union, cwd)
        if rc != 0:
            problems.append(f"pinshop sql failed (exit {rc}): {err.strip()[-300:]}")
        elif rows:
            problems.append(f"pinshop sql shows duplicate vectors: {rows[:5]}")
    for kind in kinds:
        files = [str(ws / "embeddings" / kind / f) for f in
                 json.loads((ws / "embeddings" / kind / "_manifest.json").read_text())["files"]]
        if not files:
            continue
        dups = duckdb.sql(
            "SELECT id, model_id, source_hash, count(*) AS n FROM read_parquet($files) "
            "GROUP BY ALL HAVING count(*) > 1", params={"files": files}).fetchall()
        if dups:
            problems.append(f"{kind}: the same vector stored twice: {dups[:3]}")


def current_vectors(ws: Path) -> dict[str, dict[str, Any]]:
    """kind -> {model:id: vector} of the current embeddings, selected the way readers do."""
    import duckdb
    import numpy as np

    from pinshop_cli.workspace.embeddings import current_rows_sql
    from pinshop_cli.workspace.layout import Workspace
    from pinshop_cli.workspace.storage import query_arrow

    space = Workspace.open(ws)
    found: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        found[kind] = {}
        manifest = ws / "embeddings" / kind / "_manifest.json"
        sql = current_rows_sql(space, kind, "e.id, e.vector")
        if sql is None or not manifest.exists():
            continue
        files = [str(manifest.parent / f) for f in json.loads(manifest.read_text())["files"]]
        models = duckdb.sql("SELECT DISTINCT model_id FROM read_parquet($files)",
                            params={"files": files}).fetchall()
        for (model,) in models:
            table = query_arrow(sql, {"model": model})
            for key, vector in zip(table.column("id").to_pylist(),
                                   table.column("vector").to_pylist(), strict=True):
                found[kind][f"{model}:{key}"] = np.asarray(vector, np.float32)
    return found


def table_counts(ws: Path) -> dict[str, int]:
    import pyarrow.parquet as pq

    counts: dict[str, int] = {}
    for name in ("catalog", "pins", "detections"):
        path = ws / f"{name}.parquet"
        counts[name] = pq.read_metadata(path).num_rows if path.exists() else -1
    if (ws / "pins.parquet").exists():
        pins = pq.read_table(ws / "pins.parquet", columns=["status"]).column("status")
        counts["pins_ok"] = sum(1 for s in pins.to_pylist() if s == "ok")
    return counts


def check_against_reference(ws: Path, reference: dict[str, Any], problems: list[str]) -> None:
    import numpy as np

    counts = table_counts(ws)
    if counts != reference["counts"]:
        problems.append(f"counts {counts} != reference {reference['counts']}")
    vectors = current_vectors(ws)
    for kind in KINDS:
        mine, theirs = vectors[kind], reference["vectors"][kind]
        if set(mine) != set(theirs):
            problems.append(f"{kind}: {len(mine)} current vectors, reference {len(theirs)} "
                            f"(missing {sorted(set(theirs) - set(mine))[:3]}, extra "
                            f"{sorted(set(mine) - set(theirs))[:3]})")
            continue
        worst = min((float(np.dot(mine[k], theirs[k])) for k in mine), default=1.0)
        if worst < 0.9999:
            problems.append(f"{kind}: a vector differs from the reference (cosine {worst:.5f})")


def index_state(ws: Path, cwd: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """name -> {count, stale, loads, live} and problems found while reading them."""
    from pinshop_cli.index.hnsw import load_index, read_manifests
    from pinshop_cli.workspace.layout import Workspace

    problems: list[str] = []
    rc, statuses, err = index_status_json(ws, cwd)
    if rc != 0:
        return {}, [f"pinshop index --status failed (exit {rc}): {err.strip()[-300:]}"]
    state = {s["name"]: {"count": s["count"], "stale": s["stale"]} for s in statuses}
    space = Workspace.open(ws)
    for manifest in read_manifests(space):
        try:
            loaded = load_index(space, manifest.kind, manifest.category, allow_stale=True)
            state.setdefault(manifest.name, {})["live"] = loaded.live_count
            if loaded.live_count != manifest.count:
                problems.append(f"index {manifest.name}: manifest count {manifest.count}, "
                                f"label file {loaded.live_count}")
        except Exception as exc:  # noqa: BLE001
            problems.append(f"index {manifest.name} does not load: {exc}")
    return state, problems


def index_status_json(ws: Path, cwd: Path) -> tuple[int, Any, str]:
    result = run(command("index", "--status", "--json", "-w", str(ws)), cwd)
    try:
        return result.returncode, json.loads(result.stdout or "null"), result.stderr
    except json.JSONDecodeError:
        return result.returncode, None, result.stderr + result.stdout


def reference_of(ws: Path, cwd: Path, with_index: bool) -> dict[str, Any]:
    reference = {"counts": table_counts(ws), "vectors": current_vectors(ws)}
    if with_index:
        reference["indexes"], problems = index_state(ws, cwd)
        if problems:
            raise SystemExit(f"the uninterrupted reference is broken: {problems}")
    return reference


# -- phases ---------------------------------------------------------------------------------

def ingest_timeline(ws: Path, wall0: float, elapsed: float, lock: float | None
                    ) -> list[tuple[float, str]]:
    """(end time, phase) pairs from the reference run: when each stage last wrote."""
    def mtime(*parts: str) -> float | None:
        path = ws.joinpath(*parts)
        return path.stat().st_mtime - wall0 if path.exists() else None

    marks = [
        (lock, "startup (imports, workspace open)"),
        (mtime("catalog.parquet"), "catalog normalization"),
        (mtime("embeddings", "product_image", "_manifest.json"),
         "product images (model load, batches, compaction)"),
        (mtime("embeddings", "product_text", "_manifest.json"), "product texts"),
        (mtime("embeddings", "crop", "_manifest.json"),
         "pins (scan, detect, crop embeddings, compaction)"),
        (mtime("detections.parquet"), "finish (pins.parquet, detections.parquet)"),
        (elapsed, "exit"),
    ]
    return sorted((t, name) for t, name in marks if t is not None)


def index_timeline(ws: Path, wall0: float, elapsed: float, lock: float | None
                   ) -> list[tuple[float, str]]:
    # Only the manifests this run wrote (an update leaves unchanged indexes alone).
    manifests = sorted(t for t in (p.stat().st_mtime - wall0
                                   for p in (ws / "indexes").glob("*.json")) if t >= 0)
    marks = [(lock, "startup (imports)")]
    if manifests:
        marks += [(manifests[0], "reading embeddings, first index"),
                  (manifests[-1], "building and saving indexes")]
    marks.append((elapsed, "exit"))
    return sorted((t, name) for t, name in marks if t is not None)


def phase_at(timeline: list[tuple[float, str]], t: float) -> str:
    for end, name in timeline:
        if t <= end:
            return name
    return "after exit"


def stratified(rng: random.Random, n: int, low: float, high: float) -> list[float]:
    width = (high - low) / max(n, 1)
    return [low + width * (i + rng.random()) for i in range(n)]


# -- trials ---------------------------------------------------------------------------------

def kill_until_killed(args: list[str], work: Path, ws: Path, delay: float,
                      expected: float, prepare: Any) -> tuple[bool, int | None, float, float]:
    """Start and SIGKILL after `delay`. Run times drift with machine load: when the run
    finishes first, start again from the same state with the delay rescaled to the
    duration just observed (the same fraction of the run), up to 3 times. Returns (killed,
    rc, elapsed at the kill, the delay used)."""
    for _attempt in range(3):
        prepare()
        killed, rc, at = run_killed(args, work, delay)
        if killed or rc:
            return killed, rc, at, delay
        delay = delay * at / expected * 0.95
        expected = at
    return killed, rc, at, delay


def ingest_state(ws: Path, summary: dict[str, Any]) -> str:
    """What the killed run had finished, from the workspace itself."""
    def rows(*parts: str) -> int:
        manifest = ws.joinpath(*parts, "_manifest.json")
        return json.loads(manifest.read_text())["rows"] if manifest.exists() else 0

    if not (ws / "catalog.parquet").exists():
        return "no catalog yet"
    done = (f"images {rows('embeddings', 'product_image')}/{summary['embedded']['product_image']}"
            f", texts {rows('embeddings', 'product_text')}/{summary['embedded']['product_text']}"
            f", crops {rows('embeddings', 'crop')}/{summary['embedded']['crop']}")
    return done + (", detections.parquet" if (ws / "detections.parquet").exists() else "")


def rerun(args: list[str], cwd: Path, killed_rc: int | None
          ) -> tuple[list[str], subprocess.CompletedProcess]:
    """Run the killed command again; the problems so far (either run failing)."""
    problems: list[str] = []
    if killed_rc:
        problems.append(f"the killed run failed on its own (exit {killed_rc})")
    again = run(args, cwd)
    if again.returncode != 0:
        problems.append(f"re-run exit {again.returncode}: {again.stderr.strip()[-400:]}")
    return problems, again


def ingest_trial(number: int, delay: float, inputs: dict[str, Path], work: Path,
                 reference: dict[str, Any], timeline: list[tuple[float, str]], batch: int,
                 summary: dict[str, Any]) -> dict[str, Any]:
    ws = work / f"trial-{number:02d}"
    args = ingest_args(inputs["catalog"], inputs["pins"], ws, batch)
    killed, rc, at, delay = kill_until_killed(
        args, work, ws, delay, timeline[-1][0], lambda: shutil.rmtree(ws, ignore_errors=True))
    left = leftovers(ws) if ws.exists() else {"tmp_files": 0, "orphan_parts": 0}
    state = ingest_state(ws, summary)
    problems, again = rerun(args, work, rc)
    if again.returncode == 0:
        check_parquet_readable(ws, problems)
        check_part_stores(ws, problems)
        check_duplicates(ws, work, problems)
        check_against_reference(ws, reference, problems)
    litter = sorted(str(p.relative_to(ws)) for p in ws.rglob(".*.tmp")) if ws.exists() else []
    return {"trial": number, "command": "ingest", "delay_s": round(delay, 3),
            "killed": killed, "killed_at_s": round(at, 3), "phase": phase_at(timeline, at),
            "state_at_kill": state, "left_by_kill": left, "tmp_files_after_rerun": litter,
            "passed": not problems, "problems": problems}


def index_trial(number: int, delay: float, mode: str, base: Path, work: Path,
                reference: dict[str, Any], timeline: list[tuple[float, str]]
                ) -> dict[str, Any]:
    ws = work / f"trial-{number:02d}"

    def prepare() -> None:
        shutil.rmtree(ws, ignore_errors=True)
        shutil.copytree(base, ws, ignore=shutil.ignore_patterns(".lock"))

    args = index_args(ws)
    killed, rc, at, delay = kill_until_killed(args, work, ws, delay, timeline[-1][0], prepare)
    left = leftovers(ws)
    before = {p.name for p in base.glob("indexes/*.json")}
    written = sorted(p.stem for p in ws.glob("indexes/*.json")
                     if p.name not in before or p.stat().st_mtime > time.time() - at - 1)
    state = f"{len(written)} index manifests written"
    problems, again = rerun(args, work, rc)
    if again.returncode == 0:
        built = json.loads(again.stdout)
        if missing := [m["name"] for m in built if m.get("recall_at_10") is None]:
            problems.append(f"no recall reported for {missing[:5]}")
        check_parquet_readable(ws, problems)
        found_state, found = index_state(ws, work)
        problems += found
        if stale := [n for n, s in found_state.items() if s.get("stale")]:
            problems.append(f"stale after the re-run: {stale[:5]}")
        want = {n: s["count"] for n, s in reference["indexes"].items()}
        have = {n: s.get("count") for n, s in found_state.items()}
        if have != want:
            diff = {n: (have.get(n), want.get(n)) for n in set(have) | set(want)
                    if have.get(n) != want.get(n)}
            problems.append(f"index counts differ from the reference (got, want): {diff}")
    litter = sorted(str(p.relative_to(ws)) for p in ws.rglob(".*.tmp"))
    return {"trial": number, "command": f"index ({mode})", "delay_s": round(delay, 3),
            "killed": killed, "killed_at_s": round(at, 3), "phase": phase_at(timeline, at),
            "state_at_kill": state, "left_by_kill": left, "tmp_files_after_rerun": litter,
            "passed": not problems, "problems": problems}


def phase_delays(rng: random.Random, n: int, timeline: list[tuple[float, str]]) -> list[float]:
    """Half the kills stratified over the run's time, half spread over its phases (a random
    moment inside each phase in turn), so that short phases get kills too."""
    phases, start = [], 0.05
    for end, _name in timeline[:-1]:  # not after the last write ("exit")
        if end > start:
            phases.append((start, end))
        start = end
    by_time = stratified(rng, n - n // 2, 0.05, timeline[-1][0] * 0.98)
    by_phase = [rng.uniform(*phases[i % len(phases)]) for i in range(n // 2)]
    return by_time + by_phase


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=4,
                        help="images per batch: small, so there are many parts to compact")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    parser.add_argument("--engine", default="local", help="ingest and index engine")
    parser.add_argument("--shards", type=int, default=None, help="index --shards N")
    options = parser.parse_args()
    EXTRA["ingest"] = ["--engine", options.engine]
    EXTRA["index"] = ["--engine", options.engine] + (
        ["--shards", str(options.shards)] if options.shards else [])
    seed = options.seed if options.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    sys.path.insert(0, str(REPO))
    from pinshop_cli.workspace import parts

    fanout_knob = "PINSHOP_COMPACT_FANOUT" in Path(parts.__file__).read_text()
    root = Path(tempfile.mkdtemp(prefix="pinshop-stress-"))
    started = time.time()
    print(f"stress_kill: seed {seed}, {options.trials} trials, batch size "
          f"{options.batch_size}, work dir {root}", flush=True)
    if not fanout_knob:
        print("note: pinshop_cli/workspace/parts.py has no PINSHOP_COMPACT_FANOUT knob: small "
              "runs never compact, so compaction is not exercised", flush=True)
    try:
        inputs = prepare_inputs(root)
        # Reference ingest + index, uninterrupted and timed.
        ref_ws = root / "reference"
        result, ingest_s, lock = timed_reference(
            ingest_args(inputs["catalog"], inputs["pins"], ref_ws, options.batch_size),
            root, ref_ws)
        if result.returncode:
            raise SystemExit(f"reference ingest failed: {result.stderr[-2000:]}")
        ingest_line = ingest_timeline(ref_ws, result.wall0, ingest_s, lock)  # type: ignore
        summary = json.loads(result.stdout)
        ingest_ref = reference_of(ref_ws, root, with_index=False)
        base_scratch = root / "base-scratch"  # ingested, no index yet
        shutil.copytree(ref_ws, base_scratch, ignore=shutil.ignore_patterns(".lock"))
        result, index_s, lock = timed_reference(index_args(ref_ws), root, ref_ws)
        if result.returncode:
            raise SystemExit(f"reference index failed: {result.stderr[-2000:]}")
        index_line = index_timeline(ref_ws, result.wall0, index_s, lock)  # type: ignore
        scratch_ref = reference_of(ref_ws, root, with_index=True)
        # Update in place: indexed workspace, then a changed catalog ingested.
        base_update = root / "base-update"
        shutil.copytree(ref_ws, base_update, ignore=shutil.ignore_patterns(".lock"))
        changed = run(ingest_args(inputs["changed"], None, base_update, options.batch_size),
                      root)
        if changed.returncode:
            raise SystemExit(f"changed-catalog ingest failed: {changed.stderr[-2000:]}")
        update_ws = root / "reference-update"
        shutil.copytree(base_update, update_ws, ignore=shutil.ignore_patterns(".lock"))
        result, update_s, lock = timed_reference(index_args(update_ws), root, update_ws)
        if result.returncode:
            raise SystemExit(f"reference index update failed: {result.stderr[-2000:]}")
        update_line = index_timeline(update_ws, result.wall0, update_s, lock)  # type: ignore
        update_ref = reference_of(update_ws, root, with_index=True)
        compactions = {str(s.relative_to(base_scratch)):
                       json.loads((s / "_manifest.json").read_text())["files"]
                       for s in part_stores(base_scratch)}
        print(f"reference ingest {ingest_s:.1f} s ({summary['rows_ok']} products, "
              f"{summary['pins_ok']} pins, {summary['detections']} detections, "
              f"embedded {summary['embedded']}); index {index_s:.1f} s, update "
              f"{update_s:.1f} s", flush=True)
        print(f"part files after the reference ingest (fanout 2): {compactions}", flush=True)
        for name, line in (("ingest", ingest_line), ("index", index_line)):
            print(f"{name} phases: " + ", ".join(f"{n} <= {t:.2f} s" for t, n in line),
                  flush=True)

        n_index = max(2, options.trials // 4)
        n_ingest = options.trials - n_index
        plan: list[tuple[str, float]] = [
            ("ingest", d) for d in phase_delays(rng, n_ingest, ingest_line)]
        plan += [("index-scratch", d) for d in phase_delays(rng, (n_index + 1) // 2,
                                                             index_line)]
        plan += [("index-update", d) for d in phase_delays(rng, n_index // 2, update_line)]
        rng.shuffle(plan)
        trials = []
        work = root / "trials"
        work.mkdir()
        for number, (kind, delay) in enumerate(plan, 1):
            if kind == "ingest":
                trial = ingest_trial(number, delay, inputs, work, ingest_ref, ingest_line,
                                     options.batch_size, summary)
            elif kind == "index-scratch":
                trial = index_trial(number, delay, "from scratch", base_scratch, work,
                                    scratch_ref, index_line)
            else:
                trial = index_trial(number, delay, "update in place", base_update, work,
                                    update_ref, update_line)
            trials.append(trial)
            left = trial["left_by_kill"]
            when = (f"kill at {trial['killed_at_s']:5.2f} s" if trial["killed"]
                    else "never killed")
            verdict = "PASS" if trial["passed"] else "FAIL: " + "; ".join(trial["problems"])
            print(f"trial {number:2d} {trial['command']:<24} {when:<16} phase~ "
                  f"{trial['phase']:<48} [{trial['state_at_kill']}; left {left['orphan_parts']} "
                  f"orphan, {left['tmp_files']} tmp] {verdict}", flush=True)
            shutil.rmtree(work / f"trial-{number:02d}", ignore_errors=True)
        passed = sum(t["passed"] for t in trials)
        phases = sorted({t["phase"] for t in trials})
        report = {
            "seed": seed, "trials": len(trials), "passed": passed,
            "batch_size": options.batch_size, "compact_fanout": 2,
            "fanout_knob_honoured": fanout_knob,
            "reference": {"ingest_s": round(ingest_s, 2), "index_s": round(index_s, 2),
                          "index_update_s": round(update_s, 2), "summary": summary,
                          "parts_after_ingest": compactions,
                          "ingest_phases": ingest_line, "index_phases": index_line,
                          "index_update_phases": update_line},
            "phases_hit": phases,
            "killed": sum(t["killed"] for t in trials),
            "tmp_files_left_after_reruns": sorted(
                f"trial {t['trial']}: {name}" for t in trials
                for name in t["tmp_files_after_rerun"]),
            "wall_s": round(time.time() - started, 1),
            "results": trials,
        }
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"phases hit: {phases}", flush=True)
        if report["tmp_files_left_after_reruns"]:
            print(f"note: temp files a kill left and no later run removed: "
                  f"{report['tmp_files_left_after_reruns']}", flush=True)
        if report["killed"] < len(trials):
            print(f"note: {len(trials) - report['killed']} runs finished before their kill, "
                  "three times in a row", flush=True)
        print(f"{passed}/{len(trials)} passed ({time.time() - started:.0f} s; {OUT})", flush=True)
        return 0 if passed == len(trials) else 1
    finally:
        if options.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
