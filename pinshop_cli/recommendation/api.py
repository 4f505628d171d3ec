"""The recommender's public functions: recommend, recommend_all, tune and evaluate.

Each opens the workspace, runs one Scorer (scorer.py) for one scoring date and closes it;
writes to the workspace happen under its lock, and only in tune and recommend_all (which
also keep the style clusters' cache current, style.py); recommend and evaluate write
nothing. The fitted blend (tuning.py) is applied
here, so the scorer itself only ever sees a complete config.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PinshopError, parse_date
from ..progress import NullProgress, Progress
from ..workspace.layout import Workspace
from ..workspace.storage import write_parquet
from .config import COMPONENTS, BlendWeights, Evaluation, Recommendation, RecommendConfig
from .ease import ease_table
from .metrics import measure, per_user, relevant_between
from .novelty import diversity, novelty
from .reasons import blend, recommendations
from .scorer import Scorer, scoring_date
from .significance import interval
from .style import STYLE_FILE, save_styles, uncached_styles
from .tuning import Tuning, apply, fit, load, save

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any, TypeAlias

    import pyarrow as pa

    #: A browsing session: a CSV or Parquet file of events, an Arrow table or event dicts.
    Session: TypeAlias = str | Path | pa.Table | Sequence[Mapping[str, Any]]

ANONYMOUS = "(session)"  # the user id of a session recommended for without one


def _score(ws: Workspace, config: RecommendConfig | None, users: pa.Table | None,
           session: Session | None = None, styles: bool = False,
           notes: list[str] | None = None) -> tuple[pa.Table, pa.Table | None]:
    """Blended top-k for `users` (everyone with events when None), as of the newest event,
    with the workspace's fitted weights when there are some, and the pull of `session`
    (what it names outside the catalog goes to `notes`); with `styles`, also the style
    fit for the workspace's cache when it has none current (for a writer to save under
    the lock)."""
    from .session import read_session, session_tables

    # Bad input is an error before any work.
    user = None if users is None or users.num_rows != 1 else str(users.column("user_id")[0])
    events = None if session is None else read_session(
        session, notes, None if user == ANONYMOUS else user)
    scorer = Scorer(ws, apply(config or RecommendConfig(), load(ws)))
    try:
        weights = scorer.config.blend_weights
        scorer.prepare(scoring_date(scorer), users,
                       components=tuple(c for c in COMPONENTS if getattr(weights, c) != 0),
                       in_stock_only=True)
        if events is not None:
            session_tables(scorer, events, notes)
        if notes is not None and user is not None:
            _note_a_stranger(scorer, user, events, notes)
        blend(scorer, weights)
        return recommendations(scorer), uncached_styles(scorer) if styles else None
    finally:
        scorer.close()


def _note_a_stranger(scorer: Scorer, user: str, session: pa.Table | None,
                     notes: list[str]) -> None:
    """Say so when `user` has no events: a mistyped id got the bestsellers unsaid, like
    any shopper's list."""
    if user == ANONYMOUS:
        return
    known = scorer.con.execute("SELECT count(*) FROM train JOIN user_keys k ON "
                               "train.user_id = k.key WHERE k.user_id = $user",
                               {"user": user}).fetchone()
    if known is not None and known[0] == 0:
        pulled = " and what the session pulls in" if session is not None else ""
        notes.append(f"user {user!r} has no events: popular items{pulled}")


def tune(workspace: str | Path | None = None, config: RecommendConfig | None = None
         ) -> Tuning:
    """Fit the blend on the whole history (its newest events as validation) and store the
    fit in the workspace, where `recommend` picks it up (with the style clusters' cache
    brought up to date)."""
    ws = Workspace.open(workspace)
    scorer = Scorer(ws, config or RecommendConfig())
    try:
        tuning = fit(scorer, scoring_date(scorer))
        styles = uncached_styles(scorer)
    finally:
        scorer.close()
    with ws.lock():
        save(ws, tuning)
        if styles is not None:
            save_styles(ws.root, styles)
    return tuning


def refresh_styles(workspace: str | Path | None = None, notes: list[str] | None = None
                   ) -> bool:
    """After `pinshop index`: where the workspace keeps a style clusters' cache (its
    recommendations use styles), fit it to the new index generation and write it, so that
    answers read it rather than each fitting in memory (18 s at 1M products) until the next
    `--tune` or `--all`. Returns whether it was written; why not, when it failed (damaged
    events, another writer), goes to `notes`: the indexes it follows stand either way."""
    ws = Workspace.open(workspace)
    if not (ws.root / STYLE_FILE).exists():
        return False
    try:
        scorer = Scorer(ws, RecommendConfig())
        try:
            styles = uncached_styles(scorer)
        finally:
            scorer.close()
        if styles is not None:
            with ws.lock():
                save_styles(ws.root, styles)
    except PinshopError as exc:
        (notes if notes is not None else []).append(f"style clusters not refitted: {exc}")
        return False
    return styles is not None


def recommend(workspace: str | Path | None = None, user: str | None = None,
              config: RecommendConfig | None = None, session: Session | None = None,
              notes: list[str] | None = None) -> list[Recommendation]:
    """Top-k recommendations for one user (a cold user gets popular items); with
    `session`, the browsing session's neighbours are pulled in (session.py), also for no
    user at all (an anonymous session); session ids not in the catalog are said in
    `notes`."""
    import pyarrow as pa

    if user is None and session is None:
        raise PinshopError("say who for: a user, a session, or recommend_all")
    if user is not None and not user.strip():
        raise PinshopError("a user id cannot be blank")
    user = None if user is None else user.strip()  # as events' user ids are read
    users = pa.table({"user_id": [ANONYMOUS if user is None else user]})
    rows = _score(Workspace.open(workspace), config, users, session,
                  notes=notes)[0].to_pylist()
    return [Recommendation(**row) for row in rows]


def recommend_all(workspace: str | Path | None = None,
                  config: RecommendConfig | None = None) -> int:
    """Recommendations for every user with events, into recommendations.parquet (and the
    style clusters' cache brought up to date)."""
    ws = Workspace.open(workspace)
    table, styles = _score(ws, config, None, styles=True)
    with ws.lock():
        write_parquet(table, ws.recommendations)
        if styles is not None:
            save_styles(ws.root, styles)
    return int(table.num_rows)


def evaluate(workspace: str | Path | None = None, cut: datetime | str | None = None,
             config: RecommendConfig | None = None, progress: Progress | None = None
             ) -> Evaluation:
    """Time split: train on events before `cut` (default: the 80th percentile of event
    times), fit the blend inside that training period (tuning.py; unless `config` fixes
    the weights), score the users active after the cut, and measure hit-rate@k, recall@k,
    NDCG@k, catalog coverage (metrics.py), novelty and intra-list image diversity
    (novelty.py), with bootstrap 95% intervals over the test users and of each method's
    paired NDCG gain over most-popular (significance.py), for the fitted blend (with its
    MMR and serendipity slot, without the slot, and without either), the unfitted default
    blend, each component alone, global most-popular and EASE. Relevant
    items: those a user saved, carted or bought after the cut. `progress` hears of each
    stage (a minute or more at a million events)."""
    config = config or RecommendConfig()
    progress = progress or NullProgress()
    ws = Workspace.open(workspace)
    scorer = Scorer(ws, config)
    con = scorer.con
    try:
        if cut is None:  # (events dated past the clock are left out, as scoring_date does)
            row = con.execute("SELECT quantile_disc(ts, 0.8) FROM all_events WHERE ts <= $at",
                              {"at": scoring_date(scorer)}).fetchone()
            cut_at = row[0] if row else None
        else:
            cut_at = cut if isinstance(cut, datetime) else parse_date(cut, "--cut")
        if cut_at is None:
            raise PinshopError("events.parquet is empty: ingest some events first")
        tuning = None
        if config.weights is None:
            progress.start("fitting blend", 1)
            tuning = fit(scorer, cut_at)
            progress.advance()
        scorer.config = apply(config, tuning)
        relevant_between(con, cut_at, scoring_date(scorer))
        test_users = con.sql("SELECT DISTINCT user_id FROM relevant").to_arrow_table()
        if test_users.num_rows == 0:
            raise PinshopError(f"no saves, carts or purchases after the cut {cut_at}: "
                               "choose an earlier --cut")
        scorer.prepare(cut_at, test_users)
        train_events = con.execute("SELECT count(*) FROM train").fetchone()
        # The baseline: the same most-popular items for everyone, by plain event counts.
        con.execute("""
            CREATE OR REPLACE TEMP TABLE most_popular AS
            WITH top AS (
                SELECT item_id, count(*)::DOUBLE AS score FROM train
                GROUP BY item_id ORDER BY score DESC, item_id LIMIT $pool
            )
            SELECT u.user_id, top.item_id, top.score FROM users u CROSS JOIN top
        """, {"pool": config.popular_pool})
        scorer.normalize("most_popular")
        progress.start("EASE baseline", 1)
        notes = [ease_table(con, config.candidates)]
        scorer.normalize("ease")
        progress.advance()
        # Each component alone, and the baselines ranked in the category-popularity slot
        # under the same rules (exclusions, diversity cap).
        # (weights, table in the popularity slot, MMR lambda, serendipity slot); None: the
        # config's. `blend` is as configured; `blend_with_serendipity` and
        # `blend_without_serendipity` have its MMR with and without the slot,
        # `blend_without_mmr` neither (the plain blend).
        popularity = BlendWeights.alone("popularity")
        fitted = scorer.config.blend_weights
        methods: dict[str, tuple[BlendWeights, str, float | None, bool | None]] = {
            "blend": (fitted, "popularity", None, None),
            "blend_with_serendipity": (fitted, "popularity", None, True),
            "blend_without_serendipity": (fitted, "popularity", None, False),
            "blend_without_mmr": (fitted, "popularity", 1.0, False),
            "default_blend": (BlendWeights(), "popularity", 1.0, False),
            **{name: (BlendWeights.alone(name), "popularity", 1.0, False)
               for name in COMPONENTS},
            "most_popular_baseline": (popularity, "most_popular", 1.0, False),
            "ease": (popularity, "ease", 1.0, False),
        }
        results, users = {}, {}
        index = scorer.product_index()
        progress.start("scoring methods", len(methods))
        for name, (weights, table, lam, surprise) in methods.items():
            blend(scorer, weights, table, lam, surprise)
            results[name] = replace(measure(con, config.k), novelty=novelty(con),
                                    diversity=diversity(con, index))
            users[name] = per_user(con, config.k)
            progress.advance()
        notes += [f"{name} recommended nothing at this cut" + (
                      ": it needs sales in the same weeks a year before"
                      if name == "seasonal" else "")
                  for name, metrics in results.items() if metrics.novelty is None]
        baseline = users["most_popular_baseline"]["ndcg"]
        for name, metrics in results.items():
            metrics.hit_rate_ci = interval(users[name]["hit"])
            metrics.ndcg_ci = interval(users[name]["ndcg"])
            metrics.ndcg_gain_ci = interval(users[name]["ndcg"] - baseline)
    finally:
        scorer.close()
    if tuning is not None:
        notes.append(tuning.note)
    return Evaluation(config.k, cut_at.isoformat(sep=" "), int(train_events[0]) if
                      train_events else 0, test_users.num_rows, results,
                      tuning.to_dict() if tuning else None, notes)


__all__ = ["evaluate", "recommend", "recommend_all", "tune"]
