"""API keys for `memchat serve`: `memchat key create|list|revoke` (the operator's commands)."""

from __future__ import annotations

from typing import Annotated

import typer

from memchat.cli.app import app, operator_memory_of
from memchat.cli.helptext import App
from memchat.cli.options import JsonOpt
from memchat.cli.render import local_time, note, print_json

key_app = App(
    help="API keys for `memchat serve`: each key is a tenant that sees only its own conversations.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(key_app, name="key")

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The key's name (its tenant).", show_default=False)]


@key_app.command()
def create(ctx: typer.Context, name: NameArg):
    """Make a key and print it, once: the database keeps only its hash."""
    key = operator_memory_of(ctx).create_key(name)
    typer.echo(key)
    note(f"made key {name!r}; it is shown only now: give it to the client as its API key (Authorization: Bearer)")


@key_app.command("list")
def list_keys(ctx: typer.Context, as_json: JsonOpt = False):
    """Every key: name, first characters, when made, whether revoked."""
    keys = operator_memory_of(ctx).keys()
    if as_json:
        print_json([key.model_dump(mode="json") for key in keys])
        return
    if not keys:
        typer.echo("no keys: `memchat serve` answers without keys, on 127.0.0.1 only", err=True)
        return
    for key in keys:
        state = f"revoked {local_time(key.revoked_at)}" if key.revoked_at else "live"
        typer.echo(f"{key.name:<24} {key.shown}…  made {local_time(key.created_at)}  {state}")


@key_app.command()
def revoke(ctx: typer.Context, name: NameArg):
    """Refuse the key from the next request on (running servers included)."""
    memory = operator_memory_of(ctx)
    memory.revoke_key(name)
    note(f"revoked key {name!r}; its conversations stay in the database")
    if not any(key.revoked_at is None for key in memory.keys()):
        note(
            "no key is live now: `memchat serve` refuses requests without one "
            "(`memchat serve --without-keys` answers them, on 127.0.0.1)"
        )
