"""The diversity goal of issue 26 — mean hit@10 >= 0.894 on completejourney while
intra-list diversity rises >= 20% — swept over MMR's lambda, with and without the
serendipity slot, at eval_recommend.py's three cuts.

At each cut the blend is fitted once inside the training period (as `recommend
--evaluate` does); then every (lambda, slot) pair ranks the test users with those fitted
weights. Diversity is over the product index's vectors: completejourney has no photos,
so its product texts are embedded (`pinshop ingest`, the offline MiniLM) and indexed.

    python bench/diversity_sweep.py WORKSPACE [--lambdas 1 0.9 ...]

WORKSPACE: a completejourney workspace with a product_text index (eval_recommend.py
--keep writes one). Prints a table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
from eval_recommend import cut_dates

from pinshop_cli.recommendation.config import RecommendConfig
from pinshop_cli.recommendation.metrics import measure, relevant_between
from pinshop_cli.recommendation.novelty import diversity, novelty
from pinshop_cli.recommendation.reasons import blend
from pinshop_cli.recommendation.scorer import Scorer, scoring_date
from pinshop_cli.recommendation.tuning import apply, fit
from pinshop_cli.workspace.layout import Workspace

LAMBDAS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)


def sweep(ws: Workspace, lambdas: tuple[float, ...]) -> dict[tuple[float, bool], list]:
    from datetime import datetime

    results: dict[tuple[float, bool], list] = {}
    for cut in cut_dates(ws):
        scorer = Scorer(ws, RecommendConfig())
        try:
            cut_at = datetime.fromisoformat(cut)
            tuning = fit(scorer, cut_at)
            scorer.config = apply(RecommendConfig(), tuning)
            print(f"cut {cut[:10]}: fitted {tuning.weights} lambda {tuning.mmr_lambda}",
                  flush=True)
            relevant_between(scorer.con, cut_at, scoring_date(scorer))
            users = scorer.con.sql("SELECT DISTINCT user_id FROM relevant").to_arrow_table()
            scorer.prepare(cut_at, users)
            index = scorer.product_index()
            for lam in lambdas:
                for slot in (False, True):
                    blend(scorer, scorer.config.blend_weights, lam=lam, surprise=slot)
                    metrics = replace(measure(scorer.con, 10), novelty=novelty(scorer.con),
                                      diversity=diversity(scorer.con, index))
                    results.setdefault((lam, slot), []).append(metrics)
                    print(f"  lambda {lam} slot {slot}: hit {metrics.hit_rate} ndcg "
                          f"{metrics.ndcg} div {metrics.diversity} nov {metrics.novelty}",
                          flush=True)
        finally:
            scorer.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workspace", type=Path)
    parser.add_argument("--lambdas", type=float, nargs="+", default=LAMBDAS)
    args = parser.parse_args()
    results = sweep(Workspace.open(args.workspace), tuple(args.lambdas))
    plain = statistics.mean(m.diversity or 0 for m in results[(1.0, False)])
    print("| MMR lambda | serendipity slot | mean hit@10 | mean NDCG@10 | novelty | "
          "diversity | diversity vs plain blend |")
    print("|---|---|---|---|---|---|---|")
    for (lam, slot), values in results.items():
        div = statistics.mean(m.diversity or 0 for m in values)
        print(f"| {lam:g} | {'yes' if slot else 'no'} | "
              f"{statistics.mean(m.hit_rate for m in values):.3f} | "
              f"{statistics.mean(m.ndcg for m in values):.4f} | "
              f"{statistics.mean(m.novelty or 0 for m in values):.2f} | {div:.3f} | "
              f"{div / plain - 1:+.1%} |")


if __name__ == "__main__":
    pa.set_cpu_count(2)
    main()
