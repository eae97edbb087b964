"""Schema migrations, for operators."""

from __future__ import annotations

import typer

from memchat.cli.app import db_app, operator_memory_of


@db_app.command()
def path(ctx: typer.Context):
    """Print where the database is: the file, or the URL with its password masked."""
    typer.echo(operator_memory_of(ctx).database_location())


@db_app.command()
def upgrade(ctx: typer.Context):
    """Bring the database schema to the newest revision."""
    typer.echo(operator_memory_of(ctx).upgrade_schema())


@db_app.command()
def current(ctx: typer.Context):
    """Print the database's schema revision and the newest one known."""
    typer.echo(operator_memory_of(ctx).schema_state())
