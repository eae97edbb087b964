"""`memchat daemon status|stop`: the background servers that run this user's model commands
(`memchat.daemon`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from memchat import daemon
from memchat.cli.app import app
from memchat.cli.helptext import App
from memchat.cli.render import note

daemon_app = App(
    help="The background server that runs model commands (say, chat, ...) without loading litellm each time.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(daemon_app, name="daemon")


@daemon_app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="One JSON object per server, in an array.")] = False):
    """This user's running servers: pid, age, idle time left, commands served, and whether this
    shell's commands use it (a server serves one environment: another needs its own)."""
    found = daemon.servers()
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    if not found:
        mode = "on" if daemon.enabled() else "off (MEMCHAT_DAEMON or `memchat config`)"
        typer.echo(f"no background server is running (the mechanism is {mode})")
        return
    for server in found:
        if server["loading"]:
            whose = "this shell's environment" if server["current"] else "another environment's"
            typer.echo(
                f"pid {server['pid']}: loading, for {whose} (it serves once the command that started it has ended)"
            )
            continue
        if not daemon.enabled():
            use = "not used here (MEMCHAT_DAEMON or `memchat config set daemon` turns it off)"
        else:
            use = "used by this shell's commands" if server["current"] else "another environment's"
        typer.echo(
            f"pid {server['pid']}: up {_duration(server['uptime'])}, leaves after {_duration(server['idle_seconds'])} "
            f"idle, {server['served']} commands served, {server['running']} running; {use}"
        )
    note(f"log: {daemon.directory() / daemon.LOG_FILE}")


@daemon_app.command()
def stop():
    """Stop this user's servers (commands they are running finish); the next model command
    starts one again unless MEMCHAT_DAEMON=off or `memchat config set daemon off`."""
    stopped = daemon.stop_all()
    typer.echo(f"stopped {stopped} background server{'' if stopped == 1 else 's'}")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    parts = [
        f"{hours} h" if hours else "",
        f"{minutes} min" if minutes else "",
        f"{seconds} s" if seconds and not hours else "",
    ]
    return " ".join(part for part in parts if part)
