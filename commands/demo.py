from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._output import RichProgress, echo, err, note, table


def demo(
    workspace: Annotated[Path, typer.Option(
        "--workspace", "-w", help="Where to build the demo workspace.")] = Path("pinshop-demo"),
    data: Annotated[Path | None, typer.Option(help="Sample data directory.")] = None,
    report: Annotated[Path, typer.Option(help="HTML report to write.")] = Path(
        "pinshop-demo-report.html"),
) -> None:
    """Build a workspace from sample_data/ and run ingest -> index -> match -> recommend.

    Example: `pinshop demo`
    """
    from pinshop_cli.demo import run_demo
    from pinshop_cli.report.html import write_report

    source = data or Path("sample_data")
    err.rule(f"1. ingest {source / 'catalog.csv'} and {source / 'pins'}")
    with RichProgress() as progress:
        result = run_demo(workspace, data, progress=progress)
    summary = result.ingest
    echo(f"{summary.rows_ok} products ({summary.rows_rejected} rejected), "
               f"{summary.pins_ok} pins, {summary.detections} regions; embedder "
               f"{summary.embedder}; detector {summary.detector}", err=True)
    err.rule("2. index")
    for manifest in (m for m in result.indexes if m.category is None):
        echo(f"{manifest.name}: {manifest.count} vectors, recall@10 "
             f"{manifest.recall_at_10}, built in {manifest.build_seconds}s at "
             f"{manifest.built_at}", err=True)
    for message in result.index_notes:
        note(message)
    per_category = [m for m in result.indexes if m.category is not None]
    echo(f"+ {len(per_category)} per-category indexes (a detected sofa searches the "
               "sofas)", err=True)
    err.rule("3. match every pin (best product per object)")
    for message in result.match.notes:
        note(message)
    rows = [[Path(pin.image).name, obj.category or obj.class_name, m.id, m.title,
             m.price_text(), f"{m.score:.3f}"]
            for pin in result.match.pins for obj in pin.objects for m in obj.matches[:1]]
    table("pin -> best match", ["pin", "object", "id", "title", "price", "score"], rows)
    table(f"text: {result.match.text}", ["id", "title", "price", "score"],
          [[m.id, m.title, m.price_text(), f"{m.score:.3f}"]
           for m in result.match.text_matches])
    err.rule("4. recommend (200 synthetic shoppers, 20k events)")
    table(f"recommendations for {result.user}, the most active shopper",
          ["rank", "product", "price", "reason"],
          [[r.rank, r.title, r.price_text(), r.reason] for r in result.recommendations[:5]])
    evaluation = result.evaluation
    table(f"evaluation @{evaluation.k} (train before {evaluation.cut[:10]})",
          ["method", "hit rate", "NDCG", "coverage"],
          [[name, m.hit_rate, m.ndcg, m.coverage] for name, m in evaluation.methods.items()])
    err.rule("5. shop the look")
    table("cheaper look-alikes of the Hugo Leather Lounge Chair (890.00 EUR)",
          ["id", "title", "price", "similarity"],
          [[i.product.id, i.product.title, i.product.price_text(), i.caption()]
           for i in result.look_alikes.items])
    table("complete the look of the Nimbus Boucle Armchair", ["id", "title", "why"],
          [[p.product.id, p.product.title, p.reason] for p in result.completed.picks])
    echo(f"duplicates: {result.duplicates.clusters} cluster(s) of "
               f"{result.duplicates.table.num_rows} products (duplicates.parquet); audit: "
               + ", ".join(f"{c} {n}" for c, n in result.audit.counts.items())
               + " findings (audit.parquet)", err=True)
    write_report(result.match, report)
    echo(f"\nHTML report: {report}   workspace: {result.workspace}\n"
               f"Next: pinshop match YOUR_PHOTO.jpg -w {workspace}\n"
               f"      pinshop similar P006 --cheaper -w {workspace}\n"
               f"      pinshop audit --report audit.html -w {workspace}\n"
               f"      pinshop chat -w {workspace}", err=True)
