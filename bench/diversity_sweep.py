"""The diversity goal of issue 26 — mean hit@10 >= 0.894 on completejourney while
intra-list diversity rises >= 20% — swept over MMR's settings (mmr.py: lambda, the
protected head, the pool), the per-category cap, with and without the serendipity slot,
at eval_recommend.py's three cuts.

At each cut the blend is fitted once inside the training period (as `recommend
--evaluate` does); then every setting ranks the same test users with those fitted
weights. Diversity is over the product index's vectors: completejourney has no photos,
so its product texts are embedded (`pinshop ingest`, the offline MiniLM) and indexed.

    python bench/diversity_sweep.py WORKSPACE [--lambdas 1 0.9 ...] [--heads 0 3]
        [--pools 3 10] [--caps 3 2] [--slot] [--fits FILE]

WORKSPACE: a completejourney workspace with a product_text index (eval_recommend.py
--keep writes one); the sweep only reads it. `--fits FILE` keeps each cut's fitted blend
in FILE (JSON) and reuses it on the next run: the fit is deterministic and is most of a
short sweep's time. Prints a table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pyarrow as pa
from eval_recommend import cut_dates

from pinshop_cli.recommendation.config import Metrics, RecommendConfig
from pinshop_cli.recommendation.metrics import measure, relevant_between
from pinshop_cli.recommendation.novelty import diversity, novelty
from pinshop_cli.recommendation.reasons import blend
from pinshop_cli.recommendation.scorer import Scorer, scoring_date
from pinshop_cli.recommendation.tuning import Tuning, apply, fit
from pinshop_cli.workspace.layout import Workspace

LAMBDAS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
#: (lambda, head, pool factor, serendipity slot, per-category cap)
Setting = tuple[float, int, int, bool, int]


def settings(args: argparse.Namespace) -> list[Setting]:
    """The grid, with the settings that rank alike (lambda 1, or a head of k) once."""
    grid: list[Setting] = []
    for lam, head, pool, slot, cap in itertools.product(
            args.lambdas, args.heads, args.pools, (False, True) if args.slot else (False,),
            args.caps):
        setting = ((1.0, 0, 3, slot, cap) if lam >= 1 or head >= 10 else
                   (lam, head, pool, slot, cap))
        if setting not in grid:
            grid.append(setting)
    return grid


def fitted(scorer: Scorer, cut: str, fits: Path | None) -> Tuning:
    saved = json.loads(fits.read_text()) if fits and fits.exists() else {}
    if cut in saved:
        return Tuning(**saved[cut])
    tuning = fit(scorer, datetime.fromisoformat(cut))
    if fits:
        fits.write_text(json.dumps({**saved, cut: tuning.to_dict()}, indent=1))
    return tuning


def sweep(ws: Workspace, grid: list[Setting], fits: Path | None
          ) -> dict[Setting, list[Metrics]]:
    results: dict[Setting, list[Metrics]] = {}
    for cut in cut_dates(ws):
        scorer = Scorer(ws, RecommendConfig())
        try:
            cut_at = datetime.fromisoformat(cut)
            tuning = fitted(scorer, cut, fits)
            base = apply(RecommendConfig(), tuning)
            print(f"cut {cut[:10]}: fitted {tuning.weights} lambda {tuning.mmr_lambda}",
                  flush=True)
            relevant_between(scorer.con, cut_at, scoring_date(scorer))
            users = scorer.con.sql("SELECT DISTINCT user_id FROM relevant").to_arrow_table()
            scorer.config = base
            scorer.prepare(cut_at, users)
            index = scorer.product_index()
            for setting in grid:
                lam, head, pool, slot, cap = setting
                scorer.config = replace(base, mmr_lambda=lam, mmr_head=head, mmr_pool=pool,
                                        per_category=cap)
                started = time.perf_counter()
                blend(scorer, base.blend_weights, surprise=slot)
                metrics = replace(measure(scorer.con, 10), novelty=novelty(scorer.con),
                                  diversity=diversity(scorer.con, index))
                results.setdefault(setting, []).append(metrics)
                print(f"  {setting}: hit {metrics.hit_rate} ndcg {metrics.ndcg} div "
                      f"{metrics.diversity} nov {metrics.novelty} "
                      f"({time.perf_counter() - started:.1f} s)", flush=True)
        finally:
            scorer.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workspace", type=Path)
    parser.add_argument("--lambdas", type=float, nargs="+", default=LAMBDAS)
    parser.add_argument("--heads", type=int, nargs="+", default=[0])
    parser.add_argument("--pools", type=int, nargs="+", default=[3])
    parser.add_argument("--caps", type=int, nargs="+", default=[3],
                        help="at most this many items of one category in a list")
    parser.add_argument("--slot", action="store_true", help="also with the serendipity slot")
    parser.add_argument("--fits", type=Path, help="cache of the fitted blends (JSON)")
    args = parser.parse_args()
    grid = settings(args)
    plain_setting = (1.0, 0, 3, False, RecommendConfig().per_category)
    if plain_setting not in grid:
        grid.insert(0, plain_setting)
    results = sweep(Workspace.open(args.workspace), grid, args.fits)
    plain = statistics.mean(m.diversity or 0 for m in results[plain_setting])
    print("| MMR lambda | head | pool | serendipity slot | category cap | mean hit@10 | "
          "mean NDCG@10 | novelty | diversity | diversity vs plain blend |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (lam, head, pool, slot, cap), values in results.items():
        div = statistics.mean(m.diversity or 0 for m in values)
        print(f"| {lam:g} | {head} | {pool}k | {'yes' if slot else 'no'} | {cap} | "
              f"{statistics.mean(m.hit_rate for m in values):.3f} | "
              f"{statistics.mean(m.ndcg for m in values):.4f} | "
              f"{statistics.mean(m.novelty or 0 for m in values):.2f} | {div:.3f} | "
              f"{div / plain - 1:+.1%} |")


if __name__ == "__main__":
    pa.set_cpu_count(2)
    main()
