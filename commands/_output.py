"""What every command shares: option types, stderr console, JSON/table output, progress.
Every text a command prints goes through here, cleaned of terminal control characters."""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

# Characters that drive a terminal instead of printing: C0 controls but tab and newline
# (ESC opens colour, cursor, clear-screen, window-title and OSC 8 hyperlink sequences),
# DEL, C1 controls (0x9b is a one-byte CSI) and the bidi controls that reorder a line.
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e"
                    "\u2066-\u2069]")
# JSON escapes C0 itself; the rest pass through json.dumps(ensure_ascii=False) raw.
UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clean(text: str) -> str:
    """`text` with every terminal control character shown as an escape (\\x1b, \\u202e)
    instead of obeyed: data (titles, paths, model output) never controls the terminal."""
    return UNSAFE.sub(lambda m: _escaped(m.group()), text)


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class SafeConsole(Console):
    """A rich Console that cleans every string it is given before rendering it: rich's
    own styling still reaches the terminal, the text inside it never as control codes."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        super().print(*(clean(o) if isinstance(o, str) else o for o in objects), **kwargs)


# Logs, notes and progress go to stderr; stdout carries only results (tables or --json).
PIPED_WIDTH = 200  # the columns of a table written to a pipe or a file
err = SafeConsole(stderr=True)
out = SafeConsole()


def results() -> SafeConsole:
    """`out`, or where no terminal says how wide to draw (stdout a pipe or a file, no tty
    on stdin or stderr, no COLUMNS) one PIPED_WIDTH wide: rich's 80 columns cut every
    column to "det…"."""
    streams = (sys.stdin, sys.stderr)
    if out.is_terminal or os.environ.get("COLUMNS") or any(
            stream is not None and stream.isatty() for stream in streams):
        return out
    return SafeConsole(width=PIPED_WIDTH)

WorkspaceOption = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", envvar="PINSHOP_HOME", show_default="./pinshop-data",
                 help="Workspace directory (or $PINSHOP_HOME)."),
]
#: What --detector takes, for every command with one.
DETECTOR_HELP = ("auto (a detector where weights resolve, plus the catalog's regions) | regions "
                 "(catalog-guided only) | none (the whole photo) | a model name | a .pt path")
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


def _device(value: str) -> str:
    from pinshop_cli.models.device import DeviceError, check_spelling

    try:
        return check_spelling(value)
    except DeviceError as exc:
        raise typer.BadParameter(str(exc)) from None


DeviceOption = Annotated[
    str,
    typer.Option("--device", envvar="PINSHOP_DEVICE", callback=_device,
                 help="Where the models run: auto (a GPU when one is visible), cpu, cuda, "
                      "cuda:N. Asking for a GPU that is not there is an error."),
]


def plain(data: Any) -> Any:
    """A library result as JSON-ready data: its `to_dict()` (the one convention results
    follow), else the dataclass's fields; lists element by element."""
    if hasattr(data, "to_dict"):
        return data.to_dict()
    if is_dataclass(data) and not isinstance(data, type):
        return asdict(data)
    if isinstance(data, list):
        return [plain(item) for item in data]
    return data


def print_json(data: Any) -> None:
    sys.stdout.write(_json_text(data) + "\n")


def _json_text(data: Any, compact: bool = False) -> str:
    text = json.dumps(plain(data), indent=None if compact else 2, default=_json_value,
                      ensure_ascii=False)
    return UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _json_value(value: Any) -> Any:
    """What JSON has no type for: a DECIMAL (a price in SQL) as a number, not the string
    "46.03" every other command's prices are not, unless a double would round it (over 15
    digits: kept exact, as text); the rest (dates) as text."""
    from decimal import Decimal

    if isinstance(value, Decimal) and len(value.as_tuple().digits) <= 15:
        return float(value)
    return str(value)


def _holds_lists(rows: list[tuple[Any, ...]]) -> bool:
    """Whether a column of `rows` holds lists (or structs): judged on each column's first
    value that is not NULL, so a chunk of scalars is not scanned value by value."""
    return any(isinstance(next((row[j] for row in rows if row[j] is not None), None),
                          (list, tuple, dict)) for j in range(len(rows[0])))


class JsonRows:
    """Rows printed as one JSON array of objects as they come, laid out as print_json lays
    out a list: a result of any size in flat memory (`sql --json`)."""

    def __init__(self) -> None:
        self.count = 0

    def write(self, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        objects = [dict(zip(columns, row, strict=True)) for row in rows]
        if _holds_lists(rows):
            # A row holding a vector on one line: laid out by print_json, each of its 384
            # numbers took a line (1 GB for 100k embeddings).
            text = ",\n".join("  " + _json_text(row, compact=True) for row in objects)
        else:  # one chunk's list, without its brackets ("[\n" ... "\n]"): the array goes on
            text = _json_text(objects)[2:-2]
        sys.stdout.write(("[\n" if not self.count else ",\n") + text)
        self.count += len(rows)

    def close(self) -> None:
        sys.stdout.write("\n]\n" if self.count else "[]\n")


def open_shop(workspace: Path | None, models_dir: Path | None = None,
              runtime: str = "auto", device: str = "auto") -> Any:
    """The workspace's Shop (pinshop_cli.open), every command's one door into the library."""
    from pinshop_cli import open as open_workspace

    return open_workspace(workspace, str(models_dir) if models_dir else None, runtime, device)


def check_report(report: Path | None) -> None:
    """Refuse a --report that cannot become a file, before any work is done."""
    from pinshop_cli.errors import PinshopError

    if report is None:
        return
    if report.is_dir():
        raise PinshopError(f"--report {report} is a directory: pass a file name")
    if report.exists() and not _is_html(report):  # a photo, a catalog: it would be lost
        raise PinshopError(f"--report {report} is a file that is not an HTML page, and it "
                           "would be overwritten: pass a new file name")
    # The folders are made when the page is written; one that is a file cannot be.
    blocking = next((parent for parent in report.parents if parent.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise PinshopError(f"--report {report}: {blocking} is a file, not a folder")


def _is_html(path: Path) -> bool:
    try:
        with open(path, "rb") as file:
            start = file.read(512).lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    except OSError:
        return True  # not readable: writing it will say why
    return not start or start.startswith((b"<!doctype html", b"<html"))


def write_report_page(text: str, report: Path) -> None:
    """Write an HTML report atomically; an unwritable place is a one-line error."""
    from pinshop_cli.errors import PinshopError
    from pinshop_cli.report.html import write_page

    check_report(report)
    try:
        write_page(text, report)
    except OSError as exc:
        raise PinshopError(f"cannot write --report {report}: {exc.strerror or exc}") from None
    typer.echo(f"report written to {report}", err=True)


def note(message: str) -> None:
    from rich.markup import escape

    err.print(f"[yellow]note:[/] {escape(message)}", highlight=False)


def echo(message: str, err: bool = False) -> None:
    """A plain line (no markup) on stdout or stderr, cleaned."""
    typer.echo(clean(message), err=err)


#: A terminal table is cut after this many rows, with a note: `match --top-k 100000` took a
#: minute to draw rows no one reads (--json writes them all, in seconds).
TABLE_ROWS = 1000


def table(title: str | None, columns: list[str], rows: list[list[Any]],
          wrap: str | None = None, key: str | None = None,
          limit: int | None = TABLE_ROWS) -> None:
    """Rows as a table on stdout, the first `limit` of them (None: all). Values are data,
    never markup: a title holding "[/]" or "[bold]" prints as written. With `wrap`, only
    that column wraps on a narrow terminal (a title), the others keep their values on one
    line. The `key` column (what tells rows apart: a name) is never cut short; the others
    give way to it."""
    from rich.cells import cell_len
    from rich.markup import escape
    from rich.table import Table

    if limit is not None and len(rows) > limit:
        note(f"{clean(title) + ': ' if title else ''}showing the first {limit:,} of "
             f"{len(rows):,} rows (--json writes them all)")
        rows = rows[:limit]

    shown = [["" if v is None else clean(str(v)) for v in row] for row in rows]
    grid = Table(title=escape(clean(title)) if title else None, title_justify="left")
    for n, column in enumerate(columns):  # the key's width: its longest value, in cells
        whole = max((cell_len(row[n]) for row in shown), default=0) if column == key else None
        grid.add_column(escape(clean(str(column))), min_width=whole,
                        no_wrap=(wrap is not None and column != wrap) or column == key)
    for row in shown:
        grid.add_row(*(escape(value) for value in row))
    results().print(grid)


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
        if total == 0:  # a re-run's finished stage: one line, not an empty "0/0" bar
            self.task = None
            self.note(f"{stage}: nothing to do")
            return
        self.task = self.bar.add_task(stage, total=total, rate="")
        if not self.bar.console.is_terminal:  # a job's log: bars are drawn once, at the end
            self.note(f"{stage}..." if total == 1 else f"{stage}: {total:,} to do")

    def advance(self, count: int = 1) -> None:
        if self.task is None:
            return
        self.bar.advance(self.task, count)
        speed = self.bar.tasks[self.task].speed
        self.bar.update(self.task, rate=f"{speed:.1f}/s" if speed else "")

    def note(self, message: str) -> None:
        from rich.markup import escape

        self.bar.console.print(f"[dim]{escape(clean(message))}[/]", highlight=False)
