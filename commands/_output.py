"""What every command shares: option types, stderr console, JSON/table output, progress."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

# Logs, notes and progress go to stderr; stdout carries only results (tables or --json).
err = Console(stderr=True)
out = Console()

WorkspaceOption = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", envvar="PINSHOP_HOME", show_default="./pinshop-data",
                 help="Workspace directory (or $PINSHOP_HOME)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
ModelsDirOption = Annotated[
    Path | None,
    typer.Option("--models-dir", envvar="PINSHOP_MODELS",
                 help="Directory of model files (or $PINSHOP_MODELS); "
                      "default ~/.cache/pinshop/models."),
]

RUNTIMES = ("auto", "torch", "onnx", "onnx-int8")  # pinshop_cli.models.onnx.RUNTIMES


def _runtime(value: str) -> str:
    if value not in RUNTIMES:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(RUNTIMES)}")
    return value


RuntimeOption = Annotated[
    str,
    typer.Option("--runtime", envvar="PINSHOP_RUNTIME", callback=_runtime,
                 help="Where the embedder runs: auto (ONNX Runtime, exported from torch once "
                      "and cached; torch if that fails), torch, onnx, onnx-int8."),
]


def print_json(data: Any) -> None:
    if is_dataclass(data) and not isinstance(data, type):
        data = asdict(data)
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def note(message: str) -> None:
    err.print(f"[yellow]note:[/] {message}", highlight=False)


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    """Rows as a table on stdout. Values are data, never markup: a title holding "[/]" or
    "[bold]" prints as written."""
    from rich.markup import escape
    from rich.table import Table

    grid = Table(title=escape(title) if title else None, title_justify="left")
    for column in columns:
        grid.add_column(escape(str(column)))
    for row in rows:
        grid.add_row(*("" if v is None else escape(str(v)) for v in row))
    out.print(grid)


class RichProgress:
    """The library's Progress protocol drawn as a rich progress bar (rate, ETA) on stderr."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("{task.description:<15}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), console=err, transient=False,
        )
        self.task: Any = None

    def __enter__(self) -> RichProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def start(self, stage: str, total: int) -> None:
        self.task = self.bar.add_task(stage, total=total, rate="")

    def advance(self, count: int = 1) -> None:
        self.bar.advance(self.task, count)
        speed = self.bar.tasks[self.task].speed
        self.bar.update(self.task, rate=f"{speed:.1f}/s" if speed else "")

    def note(self, message: str) -> None:
        self.bar.console.print(f"[dim]{message}[/]", highlight=False)
