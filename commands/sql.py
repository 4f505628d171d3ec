from __future__ import annotations

from typing import Annotated

import typer

from ._output import JsonOption, WorkspaceOption, print_json, table


def sql(
    query: Annotated[str, typer.Argument(help="SQL over the views catalog, pins, detections, "
                                              "embeddings, rejects_* ...")],
    workspace: WorkspaceOption = None,
    json: JsonOption = False,
) -> None:
    """Run DuckDB SQL over the workspace tables.

    Example: `pinshop sql "SELECT category, count(*) FROM catalog GROUP BY 1"`
    """
    from pinshop_cli import run_sql

    result = run_sql(query, workspace)
    if json:
        print_json([dict(zip(result.columns, row, strict=True)) for row in result.rows])
    else:
        table(None, result.columns, [list(row) for row in result.rows])
