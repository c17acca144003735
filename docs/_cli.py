"""The `enmp` CLI as a click command for mkdocs-click (reference/cli.md): typer builds it from the app itself,
so the reference page always shows the commands, options and help texts the installed CLI has."""

import typer

from enmp.cli.main import app

cli = typer.main.get_command(app)
