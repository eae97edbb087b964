"""Schema migrations, for operators."""

from __future__ import annotations

import typer

from memchat.cli.app import db_app, memory_of


@db_app.command()
def path(ctx: typer.Context):
    """Print where the database is: the file, or the URL with its password masked."""
    typer.echo(memory_of(ctx, database=True).database_location())


@db_app.command()
def upgrade(ctx: typer.Context):
    """Bring the database schema to the newest revision."""
    typer.echo(memory_of(ctx, database=True).upgrade_schema())


@db_app.command()
def current(ctx: typer.Context):
    """Print the database's schema revision and the newest one known."""
    typer.echo(memory_of(ctx, database=True).schema_state())
