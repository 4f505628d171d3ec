from __future__ import annotations

from typing import Annotated

import typer

from pinshop_cli.errors import PinshopError

from ._output import JsonOption, JsonRows, WorkspaceOption, note, open_shop, table


def sql(
    query: Annotated[str, typer.Argument(help="SQL over the views catalog, pins, detections, "
                                              "embeddings, `rejects_SOURCE` ...")],
    allow_writes: Annotated[bool, typer.Option(
        "--allow-writes", help="Also let the query write files (COPY ... TO) in the "
                               "workspace's exports/ directory, and nowhere else; takes the "
                               "writer lock.")] = False,
    timeout: Annotated[float, typer.Option(
        min=0, help="Stop the statement after this many seconds (0: no limit). Ctrl-C stops "
                    "it too.")] = 60.0,
    memory_limit: Annotated[str | None, typer.Option(
        "--memory-limit", help="DuckDB memory limit, e.g. 4GB (default: half the memory "
                               "available).")] = None,
    limit: Annotated[int, typer.Option(
        min=1, help="Rows shown in the table (--json writes them all, as they come).")] = 1000,
    workspace: WorkspaceOption = None,
    json: JsonOption = False,
) -> None:
    """Run DuckDB SQL over the workspace tables, read-only.

    The views are catalog, pins, detections, events, recommendations, duplicates, audit,
    price_history, embeddings, `embeddings_KIND` (one current vector per id) and
    `rejects_SOURCE`. Nothing outside the workspace can be read (links leading out of it are
    skipped); nothing can be written unless --allow-writes, and then only into
    `WORKSPACE/exports/`, named by full path.

    Example: `pinshop sql "SELECT category, count(*) FROM catalog GROUP BY 1"`
    """
    rows = JsonRows() if json else None  # streamed: none held (1M rows held were 2 GB)
    with open_shop(workspace) as shop:  # a table fetches only the rows it shows
        try:
            result = shop.sql(query, allow_writes=allow_writes, timeout=timeout or None,
                              memory_limit=memory_limit, max_rows=None if json else limit,
                              on_rows=rows.write if rows else None)
        except PinshopError as exc:
            if rows is None or not rows.count:
                raise
            # The rows written stay, the array open: a reader must not take them as whole.
            raise PinshopError(f"{exc}; {rows.count:,} rows were written before it stopped "
                               "(the JSON array is left open)") from None
    if rows is not None:
        rows.close()
    for message in result.notes:
        note(message)
    if json:
        return
    # A terminal table of 100k rows took minutes to draw and was unreadable.
    if result.more:
        note(f"showing the first {limit:,} rows; there are more (--limit N; --json writes "
             "them all)")
    table(None, result.columns, [list(row) for row in result.rows], limit=None)  # --limit
