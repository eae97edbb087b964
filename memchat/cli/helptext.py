"""How `--help` writes parameters: as git and click-era CLIs do, and as the README spells them.

Typer's own help shows `<str>`/`<bool>` placeholders, `{thread}` in the usage line and string
defaults as `(1024)`. Here flags show no placeholder, values an upper-case name (TEXT, INTEGER,
NUMBER, or the option's own metavar), choices as `[window|summary]`, arguments by their name
(THREAD, `[MESSAGE]` when optional) and defaults as `[default: 1024]`. Every command and group
of the `memchat` app is built with these classes (`App`), so no option has to remember it.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

_TYPE_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "Path": "PATH"}


class _Option(TyperOption):
    def display_type_rich(self, ctx) -> str | None:
        if self.metavar is not None:
            return self.metavar or None
        if self.is_flag:
            return None
        label = self.display_type(ctx).strip("<>")
        if self.type_descriptor.is_choice:
            return f"[{label}]"
        return _TYPE_NAMES.get(label.removesuffix(" range"), label.upper())

    def _get_default_string(self, *, ctx, show_default_is_str: bool, default_value: Any) -> str:
        if show_default_is_str:
            return str(self.show_default)
        return super()._get_default_string(ctx=ctx, show_default_is_str=False, default_value=default_value)


class _Argument(TyperArgument):
    def display_type_rich(self, ctx) -> str | None:
        return None

    @property
    def display_name_raw(self) -> str:
        return self.metavar or self.name.upper()

    def _usage_display_name(self) -> str:
        return self.display_name_raw if self.required else f"[{self.display_name_raw}]"


def _plain(param):
    """The same parameter, written the plain way in help (its parsing is untouched)."""
    if type(param) is TyperOption:
        param.__class__ = _Option
    elif type(param) is TyperArgument:
        param.__class__ = _Argument
    return param


class _PlainHelp:
    def get_params(self, ctx):
        """Every parameter, Typer's own completion and help options included."""
        return [_plain(param) for param in super().get_params(ctx)]

    def collect_usage_pieces(self, ctx):
        self.get_params(ctx)
        return super().collect_usage_pieces(ctx)


class Command(_PlainHelp, TyperCommand):
    """A memchat command."""


class Group(_PlainHelp, TyperGroup):
    """A memchat command group."""


class App(typer.Typer):
    """A Typer app whose commands are `Command`s and groups `Group`s unless told otherwise."""

    def __init__(self, *args, cls=None, **kwargs):
        super().__init__(*args, cls=cls or Group, **kwargs)

    def command(self, *args, cls=None, **kwargs):
        return super().command(*args, cls=cls or Command, **kwargs)
