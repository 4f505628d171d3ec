from __future__ import annotations

from typing import Annotated

import typer

from ._output import JsonOption, ModelsDirOption, WorkspaceOption, err, print_json, table

MARKS = {"ok": "ok", "absent": "[dim]absent[/]", "warn": "[yellow]warn[/]",
         "fail": "[bold red]FAIL[/]"}


def doctor(
    model: Annotated[str | None, typer.Option(
        help="Chat model for the test generation (default: the default chat model if "
             "present, else the smallest present one).")] = None,
    no_generate: Annotated[bool, typer.Option(
        "--no-generate", help="Skip the llama.cpp test generation.")] = False,
    workspace: WorkspaceOption = None,
    models_dir: ModelsDirOption = None,
    json: JsonOption = False,
) -> None:
    """Check the installation: native library versions, models, ONNX exports, devices, a
    llama.cpp generation in a child process, disk space. Exit 0 when pinshop is usable.

    Example: `pinshop doctor`
    """
    from rich.markup import escape

    from pinshop_cli.doctor import doctor as run_doctor

    report = run_doctor(workspace, models_dir, chat_model=model, generate=not no_generate)
    if json:
        print_json(report.to_dict())
    else:
        table("pinshop doctor", ["check", "status", "found"],
              [[c.name, c.status, c.detail] for c in report.checks])
        for check in report.checks:
            if check.fix:
                err.print(f"{MARKS[check.status]} {escape(check.name)}: {escape(check.fix)}",
                          highlight=False)  # a fix such as "pip install 'ray[data]'" is text
        err.print("pinshop is usable" if report.ok else
                  "[bold red]pinshop is not usable until the FAIL lines are fixed[/]")
    if not report.ok:
        raise typer.Exit(1)
