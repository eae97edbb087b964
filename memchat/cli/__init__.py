"""The `memchat` command (Typer), a face of `memchat.Memory`: one module per command group.

Importing a group registers its commands; `--help` lists them in this order.
"""
# isort: skip_file

from memchat.cli.app import app, db_app, main
from memchat.cli import threads  # noqa: F401
from memchat.cli import turns  # noqa: F401
from memchat.cli import chat  # noqa: F401
from memchat.cli import longterm  # noqa: F401
from memchat.cli import transfer  # noqa: F401
from memchat.cli import usage  # noqa: F401
from memchat.cli import db  # noqa: F401
from memchat.cli import config  # noqa: F401
from memchat.cli import serve  # noqa: F401
from memchat.cli import keys  # noqa: F401
from memchat.cli import daemon  # noqa: F401

__all__ = ["app", "db_app", "main"]
