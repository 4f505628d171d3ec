"""Issue 26's diversity goal on completejourney, a second try: re-rankers that spend a
list's places on variety only where a hit is already likely. An experiment, not product
code: it re-ranks the fitted blend's pool in numpy and measures hit@10, NDCG@10 and
intra-list diversity at eval_recommend.py's three cuts, beside plain MMR (mmr.py).

completejourney's lists hold about 5 hits per user who has one (buy-again groceries), and
hit@10 counts one. So once a list very likely holds a hit, its other places could go to
variety at little cost in hit@10. Three ways of saying "likely" were tried:

- `mmr`: MMR as shipped, relevance = score / the user's best score, diversity = the
  largest cosine to an item picked before (`max`) or, as the measured diversity is the
  mean pairwise distance, the mean cosine (`mean`).
- `coverage`: relevance = p(j) x P(no hit among the picked), with p(j) the chance that an
  item of that blend score is bought in the window, read off the validation window (the
  newest 20% of the training events, as the fit uses; score quantile bins, made
  monotone) and picks taken as independent. An item adds little once the list is "safe".
- `safe_head`: each user keeps the blend's first r places, r the smallest whose
  estimated loss (P(a hit in the top 10 but none in the top r), by bins of the p-mass
  inside and after the head, fitted on validation) is at most `eps`; MMR picks the rest.

    python bench/diversity_coverage.py WORKSPACE --fits FITS [--pools 10]

WORKSPACE and FITS as for diversity_sweep.py (run it first with `--fits FITS` to fit each
cut's blend once). Prints a table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from eval_recommend import cut_dates

from pinshop_cli.recommendation.config import RecommendConfig
from pinshop_cli.recommendation.metrics import measure, relevant_between
from pinshop_cli.recommendation.novelty import diversity
from pinshop_cli.recommendation.scorer import Scorer, scoring_date
from pinshop_cli.recommendation.tuning import Tuning, apply
from pinshop_cli.workspace.layout import Workspace

K = 10
CHUNK = 2000  # users per similarity tensor
#: (name, lambda, diversity term, parameter): parameter is eps for safe_head
GRID: list[tuple[str, float, str, float]] = [
    ("mmr", 1.0, "max", 0), ("mmr", 0.9, "max", 0), ("mmr", 0.5, "max", 0),
    ("mmr", 0.7, "mean", 0), ("mmr", 0.5, "mean", 0), ("mmr", 0.4, "mean", 0),
    ("coverage", 0.99, "mean", 0), ("coverage", 0.98, "mean", 0),
    ("coverage", 0.97, "mean", 0), ("coverage", 0.95, "mean", 0),
    ("coverage", 0.9, "mean", 0), ("coverage", 0.97, "max", 0),
    ("safe_head", 0.5, "mean", 0.02), ("safe_head", 0.5, "mean", 0.05),
    ("safe_head", 0.3, "mean", 0.03), ("safe_head", 0.0, "mean", 0.03),
    ("safe_head", 0.0, "mean", 0.05),
]


def ranked_pool(scorer: Scorer, weights: Any, size: int) -> dict[str, np.ndarray]:
    """The blend's best `size` per user as (users, size) arrays: score (NaN past a short
    pool's end), hit (bought in table `relevant`), label (index label, -1 without one);
    with the row arrays to write a pick back."""
    scorer.gather()
    scorer.rank(weights, "pool", False, size)
    rows = scorer.con.execute("""
        SELECT r.user_id, r.item_id, r.score, coalesce(l.label, -1) AS label,
               v.user_id IS NOT NULL AS hit
        FROM pool r LEFT JOIN item_labels l ON l.key = r.item_id
        LEFT JOIN relevant v ON v.user_id = r.user_id AND v.item_id = r.item_id
        ORDER BY r.user_id, r.rank""").fetchnumpy()
    users = rows["user_id"]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(users)]))
    slot = np.arange(len(users)) - starts[group]
    shape = (len(starts), size)
    pool = {"score": np.full(shape, np.nan), "hit": np.zeros(shape, bool),
            "label": np.full(shape, -1), "starts": starts, "users": users,
            "items": rows["item_id"]}
    pool["score"][group, slot] = rows["score"]
    pool["hit"][group, slot] = rows["hit"]
    pool["label"][group, slot] = rows["label"]
    return pool


def calibrate(score: np.ndarray, hit: np.ndarray, bins: int = 30
              ) -> Callable[[np.ndarray], np.ndarray]:
    """p(bought | blend score), by score quantile bins, made non-decreasing."""
    known = np.isfinite(score)
    edges = np.unique(np.quantile(score[known], np.linspace(0, 1, bins + 1)))
    last = len(edges) - 2

    def bin_of(values: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, last)

    which = bin_of(score[known])
    rate = np.maximum.accumulate(np.bincount(which, hit[known], last + 1)
                                 / np.maximum(np.bincount(which, minlength=last + 1), 1))

    def chance(values: np.ndarray) -> np.ndarray:
        return np.where(np.isfinite(values), rate[bin_of(np.nan_to_num(values))], 0.0)
    return chance


def loss_model(pool: dict[str, np.ndarray], chance: Callable, bins: int = 8
               ) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """For each user and head size r: the estimated P(a hit in the top K, none in the
    top r), by bins of the p-mass inside the head and after it (fitted on `pool`)."""
    def masses(p: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        inside = np.cumsum(chance(p["score"][:, :K]), axis=1)
        return inside, inside[:, -1:] - inside

    inside, after = masses(pool)
    hits = pool["hit"][:, :K]
    lost = hits.any(axis=1, keepdims=True) & ~(np.cumsum(hits, axis=1) > 0)
    x_edges = np.quantile(inside, np.linspace(0, 1, bins + 1))
    y_edges = np.quantile(after, np.linspace(0, 1, bins + 1))

    def cell(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (np.clip(np.searchsorted(x_edges, a, side="right") - 1, 0, bins - 1) * bins
                + np.clip(np.searchsorted(y_edges, b, side="right") - 1, 0, bins - 1))

    cells = cell(inside, after).ravel()
    rate = (np.bincount(cells, lost.ravel(), bins * bins)
            / np.maximum(np.bincount(cells, minlength=bins * bins), 1))

    def loss(p: dict[str, np.ndarray]) -> np.ndarray:
        estimated = rate[cell(*masses(p))]
        estimated[:, K - 1] = 0  # a head of K is the plain list
        return estimated
    return loss


def pick(pool: dict[str, np.ndarray], index: Any, lam: float, term: str,
         chance: Callable | None = None, heads: np.ndarray | None = None) -> np.ndarray:
    """(users, K) pool slots picked greedily, -1 where the pool ran out."""
    n_users, size = pool["score"].shape
    chosen = np.full((n_users, K), -1)
    for first in range(0, n_users, CHUNK):
        part = slice(first, min(first + CHUNK, n_users))
        score = pool["score"][part]
        absent = ~np.isfinite(score)
        rel = np.where(absent, 0, score) / np.maximum(
            np.nanmax(score, axis=1, keepdims=True), 1e-12)
        p = chance(score) if chance is not None else None
        labels = pool["label"][part]
        vectors = np.zeros((*labels.shape, index.manifest.dim), np.float32)
        vectors[labels >= 0] = index.vectors_of(labels[labels >= 0])
        sims = np.einsum("upd,uqd->upq", vectors, vectors)
        rows = np.arange(len(score))
        closest, total = np.zeros(score.shape), np.zeros(score.shape)
        taken, miss = np.zeros(score.shape, bool), np.ones((len(score), 1))
        for place in range(min(K, size)):
            similar = closest if term == "max" else total / max(place, 1)
            relevance = rel if p is None else p * miss
            value = np.where(taken | absent, -np.inf, lam * relevance - (1 - lam) * similar)
            best = value.argmax(axis=1)
            if heads is not None:
                best = np.where(place < heads[part], place, best)
            chosen[part, place] = np.where(np.isfinite(value[rows, best]), best, -1)
            taken[rows, best] = True
            closest = np.maximum(closest, sims[rows, best])
            total += sims[rows, best]
            if p is not None:
                miss = miss * (1 - p[rows, best])[:, None]
    return chosen


def write_recs(scorer: Scorer, pool: dict[str, np.ndarray], chosen: np.ndarray) -> None:
    user, place = np.nonzero(chosen >= 0)
    rows = pool["starts"][user] + chosen[user, place]
    scorer.con.register("picked", pa.table({
        "user_id": pool["users"][rows], "item_id": pool["items"][rows],
        "rank": (place + 1).astype(np.int64)}))
    scorer.con.execute("CREATE OR REPLACE TEMP TABLE recs AS SELECT * FROM picked")
    scorer.con.unregister("picked")


def run_cut(ws: Workspace, cut: str, tuning: Tuning, pool_k: int
            ) -> dict[tuple, tuple[float, float, float]]:
    scorer = Scorer(ws, RecommendConfig())
    try:
        base = apply(RecommendConfig(), tuning)
        scorer.config = base
        # Calibrated inside the training period, on the fit's validation window.
        start = datetime.fromisoformat(tuning.validation_cut)
        relevant_between(scorer.con, start, datetime.fromisoformat(tuning.validation_end))
        scorer.prepare(start, scorer.con.sql(
            "SELECT DISTINCT user_id FROM relevant").to_arrow_table())
        validation = ranked_pool(scorer, base.blend_weights, K * pool_k)
        chance = calibrate(validation["score"], validation["hit"])
        loss = loss_model(validation, chance)
        cut_at = datetime.fromisoformat(cut)
        relevant_between(scorer.con, cut_at, scoring_date(scorer))
        scorer.prepare(cut_at, scorer.con.sql(
            "SELECT DISTINCT user_id FROM relevant").to_arrow_table())
        index = scorer.product_index()
        pool = ranked_pool(scorer, base.blend_weights, K * pool_k)
        top = pool["hit"][:, :K]
        print(f"{cut[:10]}: hits per user with a hit "
              f"{top.sum(axis=1)[top.any(axis=1)].mean():.2f}; share of users hit at rank "
              f"1..{K}: {np.round(top.mean(axis=0), 2).tolist()}", flush=True)
        results = {}
        for setting in GRID:
            name, lam, term, eps = setting
            heads = None
            if name == "safe_head":
                estimated = loss(pool) <= eps
                heads = np.where(estimated.any(axis=1), estimated.argmax(axis=1) + 1, K)
            chosen = pick(pool, index, lam, term,
                          chance if name == "coverage" else None, heads)
            write_recs(scorer, pool, chosen)
            metrics = measure(scorer.con, K)
            results[setting] = (metrics.hit_rate, metrics.ndcg,
                                diversity(scorer.con, index) or 0.0)
            print(f"  {cut[:10]} {setting}: {results[setting]}", flush=True)
        return results
    finally:
        scorer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workspace", type=Path)
    parser.add_argument("--fits", type=Path, required=True,
                        help="diversity_sweep.py's cache of the fitted blends (JSON)")
    parser.add_argument("--pools", type=int, nargs="+", default=[10])
    args = parser.parse_args()
    ws = Workspace.open(args.workspace)
    fits = json.loads(args.fits.read_text())
    print("| re-ranker | lambda | diversity term | eps | pool | mean hit@10 | "
          "mean NDCG@10 | diversity | vs plain blend |")
    print("|---|---|---|---|---|---|---|---|---|")
    for pool_k in args.pools:
        per_cut = [run_cut(ws, cut, Tuning(**fits[cut]), pool_k) for cut in cut_dates(ws)]
        plain = statistics.mean(r[GRID[0]][2] for r in per_cut)
        for setting in GRID:
            hit, ndcg, div = (statistics.mean(r[setting][i] for r in per_cut)
                              for i in range(3))
            name, lam, term, eps = setting
            print(f"| {name} | {lam:g} | {term} | {eps or '-'} | {pool_k}k | {hit:.4f} | "
                  f"{ndcg:.4f} | {div:.3f} | {div / plain - 1:+.1%} |", flush=True)


if __name__ == "__main__":
    pa.set_cpu_count(2)
    main()
