"""Quality of the look features, measured on planted faults in the real sample photos and on
real co-purchase data; writes the "Look features: quality" section of BENCHMARKS.md and the
duplicate threshold curve that `pinshop duplicates --report` shows.

- duplicates: every sample product with a photo gets a planted copy under a new id: its photo
  cropped, maybe mirrored, re-lit and re-compressed; its title rewritten and its brand
  replaced by another merchant's. Mixed with the other (distinct) sample products of the
  same categories, including the text-only colour variants. Pairwise precision and recall
  of the clusters, per threshold and image weight.
- audit: wrong categories and wrong prices planted in the sample catalog; what is caught.
- complete: leave-one-out on real baskets (Complete Journey, bench extra): given one product
  of a basket, is another product of that basket from another category in the top 10?
  Against popularity in the same categories, and popularity in any other category.

    python bench/eval_look.py [--parts duplicates audit complete]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from bench_ingest import write_section
from PIL import Image, ImageEnhance, ImageOps

from pinshop_cli.index.hnsw import build_indexes
from pinshop_cli.ingestion.pipeline import IngestConfig, ingest
from pinshop_cli.look.audit import audit
from pinshop_cli.look.duplicates import candidate_pairs, clusters_of
from pinshop_cli.retrieval.retriever import Retriever

HERE = Path(__file__).parent
SAMPLE = HERE.parent / "sample_data"
CURVE = HERE.parent / "pinshop_cli" / "look" / "duplicate_curve.json"
MERCHANTS = ("HomeMart", "Casa Outlet", "Interio Direct", "Maison Depot")
THRESHOLDS = [round(t, 2) for t in np.arange(0.50, 1.0001, 0.02)]
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def sample_rows() -> list[dict[str, str]]:
    with open(SAMPLE / "catalog.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        if row["image"]:
            row["image"] = str(SAMPLE / row["image"])
    return rows


def write_catalog(rows: list[dict[str, str]], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def augment(source: Path, target: Path, rng: random.Random) -> None:
    """A re-shot listing photo: cropped 80-95%, maybe mirrored, re-lit, re-compressed."""
    image = Image.open(source).convert("RGB")
    width, height = image.size
    keep = rng.uniform(0.80, 0.95)
    left, top = rng.uniform(0, 1 - keep) * width, rng.uniform(0, 1 - keep) * height
    image = image.crop((int(left), int(top), int(left + keep * width), int(top + keep * height)))
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.85, 1.15))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.85, 1.15))
    scale = rng.uniform(0.6, 1.0)
    image = image.resize((max(64, int(image.width * scale)), max(64, int(image.height * scale))))
    image.save(target, quality=rng.randint(55, 80))


def rewrite_title(row: dict[str, str], rng: random.Random) -> str:
    """'Nimbus Boucle Armchair' -> 'Boucle Armchair Nimbus, cream | HomeMart'."""
    words = row["title"].split()
    turned = words[1:] + words[:1] if len(words) > 2 else words
    return f"{' '.join(turned)}, {row['color']} | {rng.choice(MERCHANTS)}"


def build(root: Path, rows: list[dict[str, str]]) -> Retriever:
    root.mkdir(parents=True)
    write_catalog(rows, root / "catalog.csv")
    ingest(root, root / "catalog.csv", config=IngestConfig(detector="none"))
    build_indexes(root)
    return Retriever(root)


def pair_metrics(predicted: set[tuple[str, str]], truth: set[tuple[str, str]]
                 ) -> tuple[float, float]:
    hits = len(predicted & truth)
    return (hits / len(predicted) if predicted else 1.0, hits / len(truth))


def cluster_pairs(ids: pa.Array, left: np.ndarray, right: np.ndarray
                  ) -> set[tuple[str, str]]:
    nodes, component = clusters_of(left, right)
    pairs = set()
    for number in np.unique(component):
        members = sorted(ids.take(nodes[component == number]).to_pylist())
        pairs |= {(a, b) for i, a in enumerate(members) for b in members[i + 1:]}
    return pairs


def eval_duplicates(workdir: Path) -> tuple[list[str], dict[str, object]]:
    rng = random.Random(7)
    rows = sample_rows()
    images = workdir / "planted"
    images.mkdir()
    planted, truth = [], set()
    for number, row in enumerate(r for r in rows if r["image"]):
        copy_id = f"D{number + 1:03d}"
        augment(Path(row["image"]), images / f"{copy_id}.jpg", rng)
        planted.append({**row, "id": copy_id, "title": rewrite_title(row, rng),
                        "brand": rng.choice(MERCHANTS),
                        "price": f"{float(row['price']) * rng.uniform(0.9, 1.1):.2f}",
                        "description": "", "image": str(images / f"{copy_id}.jpg")})
        truth.add(tuple(sorted((row["id"], copy_id))))
    retriever = build(workdir / "ws", rows + planted)
    started = time.perf_counter()
    pairs = candidate_pairs(retriever)
    pair_seconds = time.perf_counter() - started
    curves: dict[float, list[dict[str, float]]] = {}
    for weight in WEIGHTS:
        scores = pairs.scores(weight)
        curves[weight] = []
        for threshold in THRESHOLDS:
            edge = scores >= threshold
            precision, recall = pair_metrics(
                cluster_pairs(pairs.ids, pairs.left[edge], pairs.right[edge]), truth)
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            curves[weight].append({"threshold": threshold, "precision": round(precision, 3),
                                   "recall": round(recall, 3), "f1": round(f1, 3)})
    best = {w: max(c, key=lambda p: (p["f1"], p["precision"])) for w, c in curves.items()}
    # Among the weights with the best F1, the one whose whole curve is best (robustness).
    weight = max(best, key=lambda w: (best[w]["f1"], np.mean([p["f1"] for p in curves[w]])))
    chosen = best[weight]
    lines = [
        f"Planted: {len(truth)} copies of the {len(truth)} sample products with photos, mixed "
        f"with {len(rows) - len(truth)} other sample products (text-only colour variants "
        f"among them); {len(pairs.left)} candidate pairs from the neighbour graphs "
        f"({pair_seconds:.2f} s).", "",
        "| image weight | best threshold | precision | recall | F1 |", "|---|---|---|---|---|",
        *[f"| {w:g} | {b['threshold']:.2f} | {b['precision']:.3f} | {b['recall']:.3f} | "
          f"{b['f1']:.3f} |" for w, b in best.items()], "",
        f"Default: image weight **{weight:g}**, threshold **{chosen['threshold']:.2f}** "
        f"(precision {chosen['precision']:.3f}, recall {chosen['recall']:.3f}). The curve at "
        "that weight:", "",
        "| threshold | precision | recall |", "|---|---|---|",
        *[f"| {p['threshold']:.2f} | {p['precision']:.3f} | {p['recall']:.3f} |"
          for p in curves[weight][::2]],
    ]
    CURVE.write_text(json.dumps({"embedder": retriever.embedder.image_model_id + " / "
                                 + retriever.embedder.text_model_id, "image_weight": weight,
                                 "threshold": chosen["threshold"], "planted": len(truth),
                                 "curve": curves[weight]}, indent=1) + "\n")
    retriever.close()
    return lines, {"weight": weight, **chosen}


def eval_audit(workdir: Path) -> list[str]:
    """Wrong categories planted among the real sample photos; slipped decimal points planted
    in a synthetic catalog large enough for per-category price statistics."""
    from pinshop_cli.io.catalog import normalize_catalog
    from pinshop_cli.synth.catalog import write_catalog as write_synthetic
    from pinshop_cli.workspace.layout import Workspace

    rng = random.Random(11)
    rows = sample_rows()
    with_images = [r for r in rows if r["image"]]
    categories = sorted({r["category"] for r in with_images})
    wrong_category = rng.sample(with_images, 6)
    for row in wrong_category:
        row["category"] = rng.choice([c for c in categories if c != row["category"]])
    retriever = build(workdir / "ws", rows)
    lines = ["| check | catalog | planted | setting | flagged | caught | precision | recall |",
             "|---|---|---|---|---|---|---|---|"]
    planted = {r["id"] for r in wrong_category}
    for margin in (0.0, 0.02, 0.05, 0.08, 0.1, 0.15):
        report = audit(retriever=retriever, margin=margin, write=False)
        lines.append(row_of("category", f"sample, {len(with_images)} photos", planted,
                            report, f"margin {margin:g}"))
    retriever.close()
    synthetic = write_synthetic(workdir / "synthetic.csv", 20_000, seed=3)
    with open(synthetic, newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    wrong_price = rng.sample(table, 100)
    for number, row in enumerate(wrong_price):  # a slipped decimal point, either way
        row["price"] = f"{float(row['price']) * (10.0 if number % 2 == 0 else 0.1):.2f}"
    write_catalog(table, workdir / "priced.csv")
    ws = Workspace.open(workdir / "priced", create=True)
    normalize_catalog(workdir / "priced.csv", ws.catalog, ws.rejects_dir / "catalog.parquet")
    started = time.perf_counter()
    report = audit(ws.root, write=False)
    seconds = time.perf_counter() - started
    lines.append(row_of("price", "synthetic, 20,000 rows", {r["id"] for r in wrong_price},
                        report, f"robust z > 3.5 ({seconds:.2f} s)"))
    return lines


def row_of(check: str, catalog: str, planted: set[str], report: object, setting: str) -> str:
    flagged = {r["id"] for r in report.findings.to_pylist()  # type: ignore[attr-defined]
               if r["check_name"] == check}
    caught = len(flagged & planted)
    return (f"| {check} | {catalog} | {len(planted)} | {setting} | {len(flagged)} | {caught} | "
            f"{caught / max(len(flagged), 1):.2f} | {caught / len(planted):.2f} |")


def eval_complete(workdir: Path, queries: int = 600, min_buyers: int = 60) -> list[str]:
    """Leave-one-out on real baskets after a time cut: given one product of a basket, is
    another product of that basket, from another category, among the top 10?"""
    import duckdb
    from eval_recommend import completejourney_workspace

    from pinshop_cli.look.complete import compatibility_from_scenes, rank_picks, workspace_scenes
    from pinshop_cli.look.reference import vector_of

    ws = completejourney_workspace(workdir / "cj", min_buyers)
    ingest(ws.root, workdir / "cj" / "catalog.csv", config=IngestConfig(detector="none"))
    build_indexes(ws.root, kinds=("product_text",))
    con = duckdb.connect()
    events = f"read_parquet('{ws.events}')"
    cut = str(con.sql(f"SELECT quantile_disc(ts, 0.8) FROM {events}").fetchall()[0][0])
    compatibility = compatibility_from_scenes(workspace_scenes(ws, before=cut))
    baskets = con.sql(f"""
        SELECT e.user_id || '/' || CAST(e.ts AS DATE) AS basket, e.item_id, c.category
        FROM {events} e JOIN read_parquet('{ws.catalog}') c ON c.id = e.item_id
        WHERE e.ts >= TIMESTAMP '{cut}'""").to_arrow_table().to_pylist()
    by_basket: dict[str, list[tuple[str, str]]] = {}
    for row in baskets:
        by_basket.setdefault(row["basket"], []).append((row["item_id"], row["category"]))
    rng = random.Random(5)
    cases = []
    for items in by_basket.values():
        if len({c for _, c in items}) >= 2:
            item, category = rng.choice(items)
            cases.append((item, category, {i for i, c in items if c != category}))
    cases = rng.sample(cases, min(queries, len(cases)))
    retriever = Retriever(ws.root)
    popular = con.sql(f"""SELECT e.item_id, c.category, count(*) AS n FROM {events} e
        JOIN read_parquet('{ws.catalog}') c ON c.id = e.item_id
        WHERE e.ts < TIMESTAMP '{cut}' GROUP BY ALL ORDER BY n DESC, e.item_id
        """).to_arrow_table().to_pylist()
    hits = {"complete (co-occurrence + style)": 0, "popularity in the same categories": 0,
            "most popular in other categories": 0}
    started = time.perf_counter()
    for item, category, targets in cases:
        vector = vector_of(retriever, item, "product_text")
        for name, by in (("complete (co-occurrence + style)", "style"),
                         ("popularity in the same categories", "popularity")):
            picks = rank_picks(retriever, compatibility, [category], vector, 10, item, by=by,
                               kind="product_text")
            hits[name] += bool({p.product.id for p in picks} & targets)
        others = [r["item_id"] for r in popular if r["category"] != category][:10]
        hits["most popular in other categories"] += bool(set(others) & targets)
    seconds = (time.perf_counter() - started) / len(cases) / 2
    lines = [
        f"Complete Journey baskets (a shopper's purchases on one day), products bought by at "
        f"least {min_buyers} households; co-occurrence learned before {cut[:10]}, "
        f"{len(cases)} test baskets after it with two or more categories. Style is text "
        "similarity here (grocery rows have no photos).", "",
        "| method | hit@10 |", "|---|---|",
        *[f"| {name} | {count / len(cases):.3f} |" for name, count in hits.items()], "",
        f"About {1000 * seconds:.0f} ms per `complete` call.",
    ]
    retriever.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parts", nargs="+", default=["duplicates", "audit", "complete"])
    parser.add_argument("--out", type=Path, default=HERE.parent / "BENCHMARKS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if "duplicates" in args.parts:
            (Path(tmp) / "dup").mkdir()
            lines, _ = eval_duplicates(Path(tmp) / "dup")
            write_part(args.out, "### Duplicates (planted copies of real product photos)", lines)
        if "audit" in args.parts:
            (Path(tmp) / "audit").mkdir()
            write_part(args.out, "### Audit (wrong categories and prices planted in the sample)",
                       eval_audit(Path(tmp) / "audit"))
        if "complete" in args.parts:
            write_part(args.out, "### Complete the look (leave-one-out on real baskets)",
                       eval_complete(Path(tmp)))


SECTION = "## Look features: quality (planted faults, real baskets)"


def write_part(path: Path, heading: str, lines: list[str]) -> None:
    """Print one part and replace its subsection of SECTION in BENCHMARKS.md, leaving the
    parts not run this time as they are (a missing one is added at the section's end)."""
    print("\n".join(lines))
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if SECTION not in text:
        write_section(path, SECTION, f"{SECTION}\n\n`python bench/eval_look.py`\n")
        text = path.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    end = len(text) if end == -1 else end + 1
    body = "\n".join([heading, "", *lines, "", ""])
    at = text.find(heading, start, end)
    if at == -1:  # a new part: at the section's end
        text = text[:end].rstrip("\n") + "\n\n" + body + text[end:]
    else:
        following = text.find("\n### ", at + len(heading), end)
        text = text[:at] + body + text[(end if following == -1 else following + 1):]
    path.write_text(text)


if __name__ == "__main__":
    main()
