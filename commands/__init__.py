"""The `pinshop` command line: thin Typer commands over the pinshop_cli library.

Installed as `pinshop_cli.commands` (see pyproject's package-dir), never as a bare
top-level `commands` package."""
