"""Defaults a user sets once: `memchat config set|unset|list|path`."""

from __future__ import annotations

from typing import Annotated

import typer

from memchat import settings
from memchat.cli.app import app
from memchat.cli.helptext import App
from memchat.cli.render import note

config_app = App(
    help="Defaults you set once (model, budget, max-tokens, api-base), in a file in your config dir.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(config_app, name="config")

KeyArg = Annotated[
    str, typer.Argument(metavar="KEY", help=f"One of: {', '.join(settings.SETTINGS)}.", show_default=False)
]


@config_app.command("set")
def set_(key: KeyArg, value: Annotated[str, typer.Argument(metavar="VALUE", help="The new default.")]):
    """Set a default; an option or the thread's own setting still wins."""
    stored = settings.set_value(key, value)
    note(f"{key} is now {stored} (in {settings.path()})")


@config_app.command()
def unset(key: KeyArg):
    """Remove a default: memchat's own applies again."""
    settings.unset(key)
    note(f"{key} is unset")


@config_app.command("list")
def list_settings():
    """Every setting, its value and what it is for."""
    values = settings.load()
    typer.echo(f"# {settings.path()}")
    for key, setting in settings.SETTINGS.items():
        value = values.get(key)
        typer.echo(f"{key:<11} {value if value is not None else '(not set)':<28} {setting.help}")


@config_app.command()
def path():
    """Print where the settings file is."""
    typer.echo(settings.path())
