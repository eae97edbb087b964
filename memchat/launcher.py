"""The `memchat` script's entry point: a command that needs the model stack goes to this user's
background server when one runs for this environment (`memchat.daemon`), and otherwise runs
here, as every other command does, starting a server for the next one. Only the standard
library is loaded before that choice, so a command handed over costs a Python start."""

from __future__ import annotations

import sys


def main() -> None:
    from memchat import daemon

    arguments = sys.argv[1:]
    if daemon.wanted(arguments):
        status = daemon.run_through_server(arguments)
        if status is not None:
            daemon.exit_as(status)
    from memchat.cli import main as run_here

    run_here()
