from __future__ import annotations

from typing import Annotated

import typer

from pinshop_cli.index.manifest import DEFAULT_EF_CONSTRUCTION, DEFAULT_M

from ._output import JsonOption, WorkspaceOption, note, open_shop, print_json, table


def index(
    by_category: Annotated[bool, typer.Option(
        "--by-category/--no-by-category",
        help="Also keep one index per product category (detected objects search their "
             "category's own index).")] = True,
    rebuild: Annotated[bool, typer.Option(
        "--rebuild", help="Rebuild from scratch instead of updating in place.")] = False,
    m: Annotated[int | None, typer.Option(
        "--m", min=2, help="HNSW M (graph degree) of the graphs built "
                           f"[default: {DEFAULT_M}].")] = None,
    ef_construction: Annotated[int | None, typer.Option(
        min=1, help="HNSW ef_construction of the graphs built "
                    f"[default: {DEFAULT_EF_CONSTRUCTION}].")] = None,
    recall_sample: Annotated[int, typer.Option(
        min=0, help="Queries used to measure recall@10 against exact search (0: skip).")
    ] = 200,
    shards: Annotated[int | None, typer.Option(
        min=1, help="Split each kind's global index into N graphs built in parallel and "
                    "searched together (default: keep the current count, else 1).")] = None,
    engine: Annotated[str, typer.Option(
        help="Where shards build: local (processes) or ray (Ray tasks).")] = "local",
    ray_address: Annotated[str | None, typer.Option(
        envvar="RAY_ADDRESS", help="--engine ray: the cluster to join (default: start a "
                                   "local Ray).")] = None,
    status: Annotated[bool, typer.Option(
        "--status", help="Only report existing indexes: whether they are stale, and whether "
                         "every file matches its recorded size and checksum.")] = False,
    workspace: WorkspaceOption = None,
    json: JsonOption = False,
) -> None:
    """Build or update HNSW indexes from the workspace embeddings, one per kind and category.

    Added, changed and removed products update an index in place; a model change or
    --rebuild builds it anew. Every file is checked against its recorded checksum first, and
    a damaged index is rebuilt. Each build lands as a new generation swapped in by its
    manifest, so a killed build leaves the old one serving. Prints build time, size and
    measured recall@10 vs exact search.

    Examples: `pinshop index`, `pinshop index --shards 4 --engine ray`
    """
    from dataclasses import asdict

    from pinshop_cli import index_status

    if status:
        statuses = index_status(workspace)
        if json:
            print_json([{**(asdict(s.manifest) if s.manifest else {}), "name": s.name,
                         "stale": s.stale, "damage": s.damage} for s in statuses])
            return
        table("indexes", ["name", "count", "built_at", "state"],
              [[s.name, s.manifest.count if s.manifest else "", s.manifest.built_at
                if s.manifest else "", s.state] for s in statuses], key="name")
        for s in statuses:  # the whole reason, which a narrow table cuts short
            if s.damage:
                note(f"index {s.name} is damaged ({s.damage}): run `pinshop index`")
        return
    notes: list[str] = []
    with open_shop(workspace) as shop:
        manifests = shop.index(by_category=by_category, M=m, ef_construction=ef_construction,
                               recall_sample=recall_sample, rebuild=rebuild, shards=shards,
                               engine=engine, ray_address=ray_address, notes=notes)
    for message in notes:
        note(message)
    if json:
        print_json(manifests)
        return
    # Every index, built now or already current (a no-op run lists them unchanged).
    table("indexes", ["name", "model", "count", "dim", "shards", "build s", "size KiB",
                      "recall@10"],
          [[x.name, x.model_id, x.count, x.dim, len(x.shards) or 1, f"{x.build_seconds:.2f}",
            round(x.size_bytes / 1024, 1), x.recall_at_10] for x in manifests], key="name")
