from __future__ import annotations

from typing import Annotated, Any

import typer

from ._output import (
    JsonOption,
    RichProgress,
    WorkspaceOption,
    echo,
    note,
    open_shop,
    print_json,
    table,
)


def recommend(
    user: Annotated[str | None, typer.Option(help="Recommend for this user id.")] = None,
    all_users: Annotated[bool, typer.Option(
        "--all", help="Every user with events, into recommendations.parquet.")] = False,
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="Recommendations per user.")] = 10,
    evaluate: Annotated[bool, typer.Option(
        "--evaluate", help="Time-split evaluation: hit-rate, recall, NDCG, coverage.")] = False,
    tune: Annotated[bool, typer.Option(
        "--tune", help="Fit the blend's weights to this shop's history (its newest events "
                       "as validation) and store them; later runs use them.")] = False,
    cut: Annotated[str | None, typer.Option(
        help="Evaluation cut date (default: the 80th percentile of event times).")] = None,
    session: Annotated[str | None, typer.Option(
        help="The current browsing session: a CSV or Parquet file of events (item_id, "
             "event, ts); what it looks at pulls in its neighbours. Without --user, "
             "for an anonymous shopper.")] = None,
    per_category: Annotated[int | None, typer.Option(
        min=1, help="At most this many items of one category in a top k (default 3).")] = None,
    serendipity: Annotated[bool | None, typer.Option(
        "--serendipity/--no-serendipity",
        help="Give the last place to an item outside the shopper's usual categories that "
             "shoppers of the same taste liked (default off; lists of 2 or more).")] = None,
    workspace: WorkspaceOption = None,
    json: JsonOption = False,
) -> None:
    """Offline recommendations from events, computed in DuckDB.

    Blends item-item collaborative filtering, a visual taste profile, category popularity
    and the shop's best sellers with weights fitted to the shop (--tune); never recommends
    purchased items unless they are re-bought; every item carries its reason.

    Examples: `pinshop recommend --tune`, `pinshop recommend --user u000042 --k 5`,
    `pinshop recommend --user u000042 --session session.csv`, `pinshop recommend --evaluate`
    """
    from pinshop_cli import PinshopError
    from pinshop_cli.recommendation.config import RecommendConfig, with_overrides

    config = with_overrides(RecommendConfig(), k=k, per_category=per_category,
                            serendipity=serendipity)
    if not (tune or evaluate or all_users or user is not None or session is not None):
        raise PinshopError("say who for: --user ID, --session FILE, --all, --tune or "
                           "--evaluate")
    if session is not None and (all_users or tune or evaluate):
        raise PinshopError("--session recommends for one shopper: use it with --user or alone")
    if user is not None and (all_users or tune or evaluate):
        raise PinshopError("--user recommends for one shopper: leave out --all, --tune and "
                           "--evaluate")
    if sum((all_users, tune, evaluate)) > 1:  # each is its own run: one at a time
        raise PinshopError("--all, --tune and --evaluate are separate runs: pass one")
    if cut is not None and not evaluate:
        raise PinshopError("--cut is the evaluation's cut date: use it with --evaluate")
    with open_shop(workspace) as shop:
        _recommend(shop, user, all_users, evaluate, tune, cut, config, json, session)


def _recommend(shop: Any, user: str | None, all_users: bool, evaluate: bool, tune: bool,
               cut: str | None, config: Any, json: bool, session: str | None) -> None:
    if tune:
        fitted = shop.tune(config)
        if json:
            print_json(fitted)
            return
        _show_tuning(fitted.to_dict())
    elif evaluate:
        with RichProgress() as progress:  # a minute or more at a million events
            result = shop.evaluate(cut, config, progress)
        if json:
            print_json(result)
            return
        if result.tuning:
            _show_tuning(result.tuning)
        table(f"evaluation @{result.k}: train before {result.cut} ({result.train_events} "
              f"events), {result.test_users} test users",
              ["method", "hit rate", "recall", "NDCG", "coverage", "novelty", "diversity"],
              [[name, *(f"{v:.3f}" for v in (m.hit_rate, m.recall, m.ndcg, m.coverage)),
                *("n/a" if v is None else f"{v:.3f}" for v in (m.novelty, m.diversity))]
               for name, m in result.methods.items()], key="method")
        for line in result.notes:
            if not result.tuning or line != result.tuning["note"]:  # shown with the fit
                echo(line, err=True)
    elif all_users:
        rows = shop.recommend(config=config)
        if json:
            print_json({"rows": rows})
        else:
            echo(f"{rows} recommendations written to recommendations.parquet", err=True)
    else:
        notes: list[str] = []
        recs = shop.recommend(user, config, session, notes)
        for message in notes:
            note(message)
        if json:
            print_json(recs)
            return
        table(f"recommendations for {user.strip() if user else 'this session'}",
              ["rank", "product", "price", "category", "reason"],
              [[r.rank, f"{r.title} ({r.item_id})", r.price_text(), r.category, r.reason]
               for r in recs])


def _show_tuning(tuning: dict) -> None:
    from pinshop_cli.recommendation.tuning import NO_DECAY

    weights = ", ".join(f"{name} {value:g}" for name, value in tuning["weights"].items())
    days = tuning["popularity_half_life_days"]
    # Said as a line, not as the table's title: a title wraps at the narrow table's width.
    echo(f"blend fitted on {tuning['validation_users']} users' activity from "
         f"{tuning['validation_cut'][:19]} to {tuning['validation_end'][:19]}: {weights}; "
         "popularity half-life " + ("none" if days >= NO_DECAY else f"{days:g} days"))
    table(None, ["on validation", "NDCG", "hit rate"],
          [[name, m["ndcg"], m["hit_rate"]] for name, m in tuning["validation"].items()])
    echo(tuning["note"], err=True)
