"""Fitting the blend to one shop's history: which signals pay is a property of the data.

On sparse purchase-only data plain popularity beats every personalized method at most cut
dates; on browsing-rich data the personal components win. So the weights are not chosen
once: a validation window is carved from the end of the training period (the last
`VALIDATION_SHARE` of its events), each component and the candidate blends are scored on
the users active in it, and the best by NDCG@k plus hit rate@k is kept.

The search is small and deterministic:
1. the popularity half-life, from HALF_LIVES, by global popularity alone (how fast a
   shop's demand moves; recomputing only that component);
2. coordinate ascent over the weights on GRID, starting from the best single
   component, so the result is never below it on validation. Trials are compared by
   `objective`: NDCG@k plus hit rate@k. When no blend beats that component, the
   component alone is used and the fit says so.

The search picks among dozens of trials, so its own validation score flatters it. The
validation users are therefore split in two by a hash of their id: the search runs on
one half, and the other half judges (significance.py) whether its choice beats the
simplest strong baseline, all-time most-popular (global popularity without decay), by
NDCG@k alone: the objective's hit rate is a tie-breaker among blends, not a reason to
leave the baseline. Only a gain whose paired-bootstrap 95% interval lies above 0 moves
away from the baseline;
otherwise the baseline is used, and the fit says so.

Last, MMR's lambda (mmr.py) for the chosen weights: the smallest of MMR_LAMBDAS (the most
varied lists) whose NDCG on the search half is within MMR_TOLERANCE of lambda 1's and not
significantly below it: variety where it costs no measurable accuracy. With fewer than
MIN_MMR_USERS users in that half nothing is measurable, and lambda stays 1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..errors import DamagedFileError, PinshopError
from ..workspace.integrity import read_json_object
from ..workspace.layout import Workspace
from ..workspace.storage import write_json
from .config import COMPONENTS, BlendWeights, Metrics, RecommendConfig
from .metrics import measure, per_user, relevant_between
from .reasons import diversify
from .significance import interval, significant_gain

if TYPE_CHECKING:
    from .scorer import Scorer

TUNING_FILE = "recommend_tuning.json"
VALIDATION_SHARE = 0.2  # of the training events, the newest
NO_DECAY = 1e9  # the half-life of all-time popularity
HALF_LIVES = (7.0, 30.0, 120.0, NO_DECAY)  # popularity half-lives tried
GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
PASSES = 2
MAX_VALIDATION_USERS = 5000  # a deterministic sample bounds the cost on large shops
MMR_LAMBDAS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
MMR_TOLERANCE = 0.02  # relative NDCG
#: Below this many users in the search half, "within 2% and not significantly below" holds
#: for any lambda (7 users: every interval spans 0), so the most varied would always win.
MIN_MMR_USERS = 100
BASELINE = "most_popular"  # chosen when nothing beats all-time most-popular significantly


@dataclass
class Tuning:
    weights: dict[str, float]
    popularity_half_life_days: float
    chosen: str  # "blend", the one component used alone, or BASELINE
    note: str
    validation_cut: str
    validation_end: str
    validation_users: int
    #: NDCG@k / hit rate@k on validation: the fitted blend, then each component alone.
    validation: dict[str, dict[str, float]]
    #: The judging half of the validation users: their count, and the search's mean NDCG
    #: gain over all-time most-popular on them with its lower 95% bound.
    check_users: int = 0
    gain_ndcg: float = 0.0
    gain_ndcg_low: float = 0.0
    mmr_lambda: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit(scorer: Scorer, train_end: datetime) -> Tuning:
    """Fit on events before `train_end` only (evaluate passes its cut, so test events never
    influence a choice)."""
    con, config = scorer.con, scorer.config
    cut = con.execute(f"SELECT quantile_disc(ts, {1 - VALIDATION_SHARE}) FROM all_events "
                      "WHERE ts < $end", {"end": train_end}).fetchall()[0][0]
    if cut is None:
        raise PinshopError(f"no events before {train_end} to fit the blend on (with "
                           "--evaluate: choose a later --cut)")
    if not con.execute("SELECT count(*) FROM all_events WHERE ts < $cut", {"cut": cut}
                       ).fetchall()[0][0]:
        # All on one day, or a single event: the fit would choose among zeros.
        raise PinshopError(f"too little history to fit the blend on: every event before "
                           f"{train_end} falls in the validation window (from {cut})")
    relevant_between(con, cut, train_end)
    users = con.sql(f"""
        SELECT DISTINCT user_id FROM relevant
        ORDER BY hash(user_id), user_id LIMIT {MAX_VALIDATION_USERS}""").to_arrow_table()
    if users.num_rows == 0:
        raise PinshopError(f"no saves, carts or purchases between {cut} and {train_end} to "
                           "fit the blend on (with --evaluate: choose a later --cut)")
    scorer.prepare(cut, users, popularity=False)
    # The search half and the judging half (relevant_fit, relevant_check).
    for half, parity in (("fit", 0), ("check", 1)):
        con.execute(f"CREATE OR REPLACE TEMP TABLE relevant_{half} AS SELECT * FROM relevant "
                    f"WHERE hash(user_id) % 2 = {parity}")

    def score(weights: BlendWeights) -> Metrics:
        scorer.rank(weights)
        return measure(con, config.k, "ranked", "relevant_fit")

    alone = {name: BlendWeights.alone(name) for name in COMPONENTS}
    best_half_life, best_pop = config.popularity_half_life_days, -1.0
    # Category popularity is built once, for the chosen half-life.
    for half_life in HALF_LIVES:
        scorer.popularity_tables(cut, half_life, parts=("global_popularity",))
        scorer.gather()
        ndcg = score(alone["global_popularity"]).ndcg
        if half_life == NO_DECAY:
            baseline = per_user(con, config.k, "ranked", "relevant_check")["ndcg"]
        if ndcg > best_pop:
            best_half_life, best_pop = half_life, ndcg
    scorer.popularity_tables(cut, best_half_life)
    scorer.gather()
    singles = {name: score(weights) for name, weights in alone.items()}
    start = max(COMPONENTS, key=lambda name: (objective(singles[name]), singles[name].ndcg))
    current, fitted = alone[start], singles[start]
    useful = [name for name in COMPONENTS if singles[name].ndcg > 0]  # e.g. no taste vectors
    tried = {current}  # a second pass meets many of the first pass's trials again
    for _ in range(PASSES):
        improved = False
        for component in useful:
            for value in GRID:
                trial = replace(current, **{component: value})
                if trial in tried or not any(asdict(trial).values()):
                    continue
                tried.add(trial)
                metrics = score(trial)
                if objective(metrics) > objective(fitted) + 1e-9:
                    current, fitted, improved = trial, metrics, True
        if not improved:
            break
    chosen = "blend" if objective(fitted) > objective(singles[start]) + 1e-9 else start
    note = (f"the fitted blend beats its best component ({start}) on validation"
            if chosen == "blend" else
            f"no blend beat {start} alone on validation: using {start} alone")
    scorer.rank(current)
    gain, low, significant = significant_gain(
        per_user(con, config.k, "ranked", "relevant_check")["ndcg"], baseline)
    half_life = best_half_life
    if not significant:
        note = (f"{chosen} gains {gain:+.4f} NDCG@{config.k} over all-time most-popular on "
                f"the judging half of the validation users, 95% lower bound {low:+.4f}: "
                f"not significant, so all-time most-popular is used")
        chosen, current, half_life = BASELINE, alone["global_popularity"], NO_DECAY
    else:
        note += (f"; it gains {gain:+.4f} NDCG@{config.k} over all-time most-popular on the "
                 f"judging half, 95% lower bound {low:+.4f}")
    search_users = con.execute("SELECT count(DISTINCT user_id) FROM relevant_fit"
                               ).fetchall()[0][0]
    lam = fit_lambda(scorer, current) if search_users >= MIN_MMR_USERS else 1.0
    if lam < 1:
        note += f"; MMR lambda {lam:g} (as accurate on validation, more varied)"
    elif search_users < MIN_MMR_USERS:
        note += (f"; MMR lambda stays 1: {search_users} validation users are too few to "
                 "tell the lambdas apart")
    validation = {"blend": fitted, **singles}
    return Tuning(current.to_dict(), half_life, chosen, note, str(cut), str(train_end),
                  users.num_rows, {name: {"ndcg": m.ndcg, "hit_rate": m.hit_rate}
                                   for name, m in validation.items()},
                  len(baseline), gain, low, lam)


def objective(metrics: Metrics) -> float:
    """What the search maximizes: NDCG@k (the first hit high in the list) plus hit rate@k
    (a list holding anything the shopper takes at all). NDCG alone chose buy-it-again by
    itself on completejourney, as ranked as the blend at the top but with fewer lists
    holding a hit (BENCHMARKS.md)."""
    return metrics.ndcg + metrics.hit_rate


def fit_lambda(scorer: Scorer, weights: BlendWeights) -> float:
    """MMR's lambda for `weights` on the search half (1 without image vectors)."""
    if scorer.product_index() is None:
        return 1.0
    con, k = scorer.con, scorer.config.k
    ndcg = {}
    for lam in MMR_LAMBDAS:
        diversify(scorer, weights, "ranked", lam=lam)
        ndcg[lam] = per_user(con, k, "ranked", "relevant_fit")["ndcg"]
    chosen = 1.0
    for lam in MMR_LAMBDAS[1:]:
        _, high = interval(ndcg[lam] - ndcg[1.0])
        if ndcg[lam].mean() >= (1 - MMR_TOLERANCE) * ndcg[1.0].mean() and high >= 0:
            chosen = lam
    return chosen


def save(ws: Workspace, tuning: Tuning) -> None:
    write_json(tuning.to_dict(), ws.root / TUNING_FILE)


def load(ws: Workspace) -> Tuning | None:
    """The blend `recommend --tune` fitted, if any; DamagedFileError when unreadable."""
    path = ws.root / TUNING_FILE
    if not path.exists():
        return None
    fix = "`pinshop recommend --tune` (or delete it to use the default weights)"
    try:
        tuning = Tuning(**read_json_object(path, fix))
    except TypeError:
        raise DamagedFileError(path, "not a tuning record", fix) from None
    if problem := _problem(tuning):  # a hand edit: NaN scored every item NaN, silently
        raise DamagedFileError(path, problem, fix)
    return tuning


def _problem(tuning: Tuning) -> str | None:
    """What makes a tuning record unusable (None when it is fine)."""
    def number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool) and \
            math.isfinite(value)

    if not isinstance(tuning.weights, dict):
        return "weights is not an object"
    if unknown := sorted(set(tuning.weights) - set(COMPONENTS)):
        return f"unknown weight {unknown[0]!r}: one of {', '.join(COMPONENTS)}"
    if bad := [c for c, w in tuning.weights.items() if not number(w) or w < 0]:
        return f"weight {bad[0]!r} is {tuning.weights[bad[0]]!r}, not a number from 0 up"
    if not number(tuning.popularity_half_life_days) or tuning.popularity_half_life_days <= 0:
        return (f"popularity_half_life_days is {tuning.popularity_half_life_days!r}, not a "
                "number above 0")
    if not number(tuning.mmr_lambda) or not 0 <= tuning.mmr_lambda <= 1:
        return f"mmr_lambda is {tuning.mmr_lambda!r}, not a number from 0 to 1"
    if tuning.chosen not in ("blend", BASELINE, *COMPONENTS):
        return f"chosen is {tuning.chosen!r}: blend, {BASELINE} or one component"
    return None


def apply(config: RecommendConfig, tuning: Tuning | None) -> RecommendConfig:
    """The config with the fitted weights, unless weights were given, and the fitted
    half-life, unless one was given (left at its default)."""
    if config.weights is not None or tuning is None:
        return config
    default = RecommendConfig().popularity_half_life_days
    half_life = (tuning.popularity_half_life_days
                 if config.popularity_half_life_days == default
                 else config.popularity_half_life_days)
    lam = tuning.mmr_lambda if config.mmr_lambda == RecommendConfig().mmr_lambda else \
        config.mmr_lambda
    return replace(config, weights=BlendWeights(**tuning.weights),
                   popularity_half_life_days=half_life, mmr_lambda=lam)
