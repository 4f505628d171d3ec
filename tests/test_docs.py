"""The README documents every command and every option (as sqlite-utils' docs test does)."""

from __future__ import annotations

from pathlib import Path

import typer.main

from pinshop_cli.commands.main import app

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def commands() -> list[tuple[str, object]]:
    """(full command name, click command) for every command and subcommand."""
    group = typer.main.get_command(app)
    found = []
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        subcommands = getattr(command, "commands", None)
        if subcommands:
            found += [(f"{name} {sub}", cmd) for sub, cmd in subcommands.items()]
        else:
            found.append((name, command))
    return found


def test_every_command_and_option_is_in_the_readme() -> None:
    missing = []
    for name, command in commands():
        top = name.split()[0]
        if f"pinshop {top}" not in README and f"`{name}`" not in README:
            missing.append(f"command {name}")
        for parameter in command.params:  # type: ignore[attr-defined]
            for option in getattr(parameter, "opts", []):
                if option.startswith("--") and option not in README:
                    missing.append(f"{name} {option}")
    assert not missing, missing
