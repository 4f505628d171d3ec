from __future__ import annotations

from typing import Annotated

import typer

from ._output import JsonOption, WorkspaceOption, echo, print_json, table


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
    per_category: Annotated[int | None, typer.Option(
        help="At most this many items of one category in a top k (default 3).")] = None,
    workspace: WorkspaceOption = None,
    json: JsonOption = False,
) -> None:
    """Offline recommendations from events, computed in DuckDB.

    Blends item-item collaborative filtering, a visual taste profile, category popularity
    and the shop's best sellers with weights fitted to the shop (--tune); never recommends
    purchased items unless they are re-bought; every item carries its reason.

    Examples: `pinshop recommend --tune`, `pinshop recommend --user u000042 --k 5`,
    `pinshop recommend --evaluate`
    """
    from pinshop_cli import PinshopError
    from pinshop_cli.recommendation.api import evaluate as run_evaluate
    from pinshop_cli.recommendation.api import recommend as run_recommend
    from pinshop_cli.recommendation.api import recommend_all
    from pinshop_cli.recommendation.api import tune as run_tune
    from pinshop_cli.recommendation.config import RecommendConfig, with_overrides

    config = with_overrides(RecommendConfig(), k=k, per_category=per_category)
    if tune:
        fitted = run_tune(workspace, config)
        if json:
            print_json(fitted.to_dict())
            return
        _show_tuning(fitted.to_dict())
    elif evaluate:
        result = run_evaluate(workspace, cut, config)
        if json:
            print_json(result.to_dict())
            return
        if result.tuning:
            _show_tuning(result.tuning)
        table(f"evaluation @{result.k}: train before {result.cut} ({result.train_events} "
              f"events), {result.test_users} test users",
              ["method", "hit rate", "recall", "NDCG", "coverage"],
              [[name, m.hit_rate, m.recall, m.ndcg, m.coverage]
               for name, m in result.methods.items()])
        for note in result.notes:
            echo(note, err=True)
    elif all_users:
        rows = recommend_all(workspace, config)
        if json:
            print_json({"rows": rows})
        else:
            echo(f"{rows} recommendations written to recommendations.parquet", err=True)
    elif user is not None:
        recs = run_recommend(workspace, user, config)
        if json:
            print_json([r.__dict__ for r in recs])
            return
        table(f"recommendations for {user}", ["rank", "product", "price", "category", "reason"],
              [[r.rank, f"{r.title} ({r.item_id})", r.price, r.category, r.reason]
               for r in recs])
    else:
        raise PinshopError("say who for: --user ID, --all, --tune or --evaluate")


def _show_tuning(tuning: dict) -> None:
    weights = ", ".join(f"{name} {value:g}" for name, value in tuning["weights"].items())
    table(f"blend fitted on {tuning['validation_users']} users' activity from "
          f"{tuning['validation_cut']} to {tuning['validation_end']}: {weights}; popularity "
          f"half-life {tuning['popularity_half_life_days']:g} days",
          ["on validation", "NDCG", "hit rate"],
          [[name, m["ndcg"], m["hit_rate"]] for name, m in tuning["validation"].items()])
    echo(tuning["note"], err=True)
