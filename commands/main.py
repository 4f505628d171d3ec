"""`pinshop`: the Typer app. One place turns PinshopError into 'Error: ...' and exit 1."""

from __future__ import annotations

import os
import signal
import sys
from typing import Annotated

import typer

from pinshop_cli.errors import PinshopError

from . import (
    changes,
    chat,
    demo,
    doctor,
    events,
    index,
    ingest,
    look,
    match,
    models,
    recommend,
    serve,
    sql,
)

app = typer.Typer(
    name="pinshop",
    help="Batch shopping-catalog processing: find products in pin photos, embed and index a "
    "catalog, match photos to products.\n\nStart with `pinshop demo`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    add_completion=False,
)


class _Flags:
    """What the top-level options decide for this process (the CLI's own state)."""

    debug = False
    interrupted = False  # Ctrl-C was pressed (see _interrupt)


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    _Flags.debug = debug


app.command("ingest")(ingest.ingest)
app.command("index")(index.index)
app.command("match")(match.match)
app.command("similar")(look.similar)
app.command("complete")(look.complete)
app.command("duplicates")(look.duplicates)
app.command("audit")(look.audit)
app.command("ingest-events")(events.ingest_events)
app.command("recommend")(recommend.recommend)
app.command("generate-events")(events.generate_events)
app.command("chat")(chat.chat)
app.command("sql")(sql.sql)
app.command("changes")(changes.changes)
app.command("serve")(serve.serve)
app.command("demo")(demo.demo)
app.command("doctor")(doctor.doctor)
app.add_typer(models.app, name="models")


# Settings of the libraries pinshop drives, decided once by the program (a library never
# writes the process environment): no pip installs at run time, no banners on stdout
# (it carries --json), and a local model directory never asks a hub.
LIBRARY_ENVIRONMENT = {"YOLO_AUTOINSTALL": "false", "YOLO_VERBOSE": "false",
                       "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _interrupt(signum: int, frame: object) -> None:
    """Python's own Ctrl-C, remembered: DuckDB turns the KeyboardInterrupt raised inside a
    query into its own error ("Query interrupted"), and closing a connection still busy
    with that query raises another, so the exception that arrives is not always a
    KeyboardInterrupt (a traceback and exit 1, where the user pressed Ctrl-C)."""
    _Flags.interrupted = True
    raise KeyboardInterrupt


def _from_ctrl_c(exc: BaseException) -> bool:
    """Whether `exc` is what a Ctrl-C became: DuckDB's error for it, or an error raised
    while one was being handled. (Not any error after a Ctrl-C: chat handles one and goes
    on, and a later crash must still show its traceback.)"""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt) or (
                isinstance(seen, RuntimeError) and str(seen) == "Query interrupted"):
            return True
        seen = seen.__context__
    return False


def run() -> None:
    """Console-script entry point."""
    for name, value in LIBRARY_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        app()
    except PinshopError as exc:
        if _Flags.debug:
            raise
        from rich.markup import escape

        from ._output import err

        err.print(f"[bold red]Error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if _Flags.interrupted and not _Flags.debug and _from_ctrl_c(exc):
            sys.exit(130)
        raise


if __name__ == "__main__":
    run()
