"""The `memchat` command (Typer), a face of `memchat.Memory`: one module per command group.

Importing a group registers its commands; `--help` lists them in this order.
"""

from memchat.cli.app import app, db_app, main
from memchat.cli import threads  # noqa: E402,F401,I001
from memchat.cli import turns  # noqa: E402,F401
from memchat.cli import longterm  # noqa: E402,F401
from memchat.cli import transfer  # noqa: E402,F401
from memchat.cli import db  # noqa: E402,F401

__all__ = ["app", "db_app", "main"]
