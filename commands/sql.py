from __future__ import annotations

from typing import Annotated

import typer

from ._output import JsonOption, WorkspaceOption, note, print_json, table


def sql(
    query: Annotated[str, typer.Argument(help="SQL over the views catalog, pins, detections, "
                                              "embeddings, rejects_* ...")],
    allow_writes: Annotated[bool, typer.Option(
        "--allow-writes", help="Also let the query write files (COPY ... TO) inside the "
                               "workspace directory; nothing outside it.")] = False,
    workspace: WorkspaceOption = None,
    json: JsonOption = False,
) -> None:
    """Run DuckDB SQL over the workspace tables, read-only.

    The views are catalog, pins, detections, events, recommendations, duplicates, audit,
    embeddings, embeddings_<kind> (one current vector per id) and rejects_<source>. Nothing outside
    the workspace can be read; nothing can be written unless --allow-writes.

    Example: `pinshop sql "SELECT category, count(*) FROM catalog GROUP BY 1"`
    """
    from pinshop_cli import run_sql

    result = run_sql(query, workspace, allow_writes=allow_writes)
    for message in result.notes:
        note(message)
    if json:
        print_json([dict(zip(result.columns, row, strict=True)) for row in result.rows])
    else:
        table(None, result.columns, [list(row) for row in result.rows])
