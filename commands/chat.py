from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Annotated, Any

import typer

from ._output import (
    DeviceOption,
    JsonOption,
    ModelsDirOption,
    RichProgress,
    RuntimeOption,
    WorkspaceOption,
    err,
    open_shop,
    out,
    print_json,
)

COMMANDS = "/image PATH (shop a photo), /reset (forget the conversation), /help, /quit"
HELP = f"""Ask for products in plain words: "a green sofa under 1500", "now something cheaper",
"more like #2". Commands: {COMMANDS}. Ctrl-C stops an answer; Ctrl-D or /quit leaves."""


def chat(
    model: Annotated[str, typer.Option(
        help="Chat model: a registered name (see `pinshop models list`) or a .gguf path.")
    ] = "qwen2.5-coder-1.5b",
    once: Annotated[str | None, typer.Option(
        "--once", help="Answer one question and exit (for scripts).")] = None,
    threads: Annotated[int | None, typer.Option(
        envvar="PINSHOP_THREADS", help="llama.cpp threads (default: every core).")] = None,
    ctx: Annotated[int, typer.Option(help="Context window in tokens.")] = 4096,
    workspace: WorkspaceOption = None,
    models_dir: ModelsDirOption = None,
    runtime: RuntimeOption = "auto",
    device: DeviceOption = "auto",
    user: Annotated[str | None, typer.Option(
        help="Shop as this user: their saved, carted and bought items (events) shape the "
             "ranking.")] = None,
    json: JsonOption = False,
) -> None:
    """A local shopping assistant grounded in the catalog (llama.cpp, runs offline).

    Example: `pinshop chat --once "a cream armchair under 600"`
    """
    from pinshop_cli import PinshopError

    if json and once is None:
        raise PinshopError("--json goes with --once QUESTION (the interactive session "
                           "prints text)")
    if once is not None and not once.strip():
        raise PinshopError("--once needs a question, e.g. --once \"a cream armchair\"")
    with open_shop(workspace, models_dir, runtime, device) as shop:
        with RichProgress() as progress:
            assistant = shop.chat(model, user=user, n_ctx=ctx, threads=threads,
                                  progress=progress)
        if once is not None:
            if json:
                print_json(assistant.ask(once))
            else:
                _print_stream(assistant.ask_stream(once), soft_wrap=False)
                out.print()
            return
        _converse(assistant)


def _converse(assistant: Any) -> None:
    """The interactive session: questions, /image, /reset, /help, /quit."""
    from pinshop_cli import PinshopError

    err.print(f"[bold]pinshop chat[/] · {assistant.model.model_id} · {HELP}", highlight=False)
    while True:
        try:
            line = out.input("[bold cyan]you>[/] ").strip()
        except (EOFError, KeyboardInterrupt):
            out.print()
            return
        if not line:
            continue
        if line in ("/quit", "/exit"):
            return
        if line == "/help":
            err.print(HELP, highlight=False)
            continue
        if line == "/reset":
            assistant.reset()
            err.print("[dim]conversation forgotten[/]")
            continue
        command = line.split(maxsplit=1)[0]
        if command.startswith("/") and command != "/image" or line == "/image":
            said = "usage: /image PATH [question]" if command == "/image" else \
                f"unknown command {command}"
            err.print(f"{said}; commands: {COMMANDS}", highlight=False, markup=False)
            continue
        out.print("[bold magenta]pinshop>[/] ", end="")
        try:
            if command == "/image":
                path, question = _image_argument(line[len("/image"):].strip())
                _print_stream(assistant.shop_image_stream(path, question))
            else:
                _print_stream(assistant.ask_stream(line))
        except KeyboardInterrupt:
            out.print("[dim] (stopped)[/]", end="")
        except PinshopError as exc:
            err.print(f"[red]Error:[/] {exc}", highlight=False)
        out.print()


def _image_argument(text: str) -> tuple[Path, str]:
    """/image's photo and question: a quoted path ('my pic.jpg'), else the longest run of
    words naming a file (a path may hold spaces), else the first word."""
    import shlex

    if text[:1] in ("'", '"'):
        try:
            words = shlex.split(text)
            return Path(words[0]).expanduser(), " ".join(words[1:])
        except ValueError:  # an unclosed quote: read it as written
            pass
    words = text.split(" ")
    for end in range(len(words), 0, -1):
        path = Path(" ".join(words[:end])).expanduser()
        if path.is_file():
            return path, " ".join(words[end:]).strip()
    return Path(words[0]).expanduser(), " ".join(words[1:]).strip()


def _print_stream(events: Generator[Any, None, None], soft_wrap: bool = True) -> None:
    """Print an answer's text pieces as they come (the Reply that ends them is not text).
    The stream is closed however printing ends, so Ctrl-C stops the model too."""
    try:
        for event in events:
            if isinstance(event, str):
                out.print(event, end="", highlight=False, soft_wrap=soft_wrap)
    finally:
        events.close()
