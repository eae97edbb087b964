"""The `memchat` command's shell: the Typer app, global options, signals, and the one place
where errors become one line on stderr and an exit code (`_Commands`); MEMCHAT_DEBUG=1 lets
tracebacks through. The commands live beside this module, one module per group, each parsing
its arguments, calling one Memory method and rendering.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from typer.exceptions import TyperException

from memchat.cli.helptext import App, Group
from memchat.cli.render import note
from memchat.config import colour_refused, database_url, debug_enabled
from memchat.daemon import GLOBAL_OPTIONS_WITH_VALUES
from memchat.errors import (
    NO_THREADS_YET,
    Interrupted,
    InvalidInput,
    MemchatError,
    NotFound,
    StorageError,
    Unanswered,
    exit_code_for_signal,
)
from memchat.redact import redact
from memchat.terminal import terminal_safe

if TYPE_CHECKING:
    from memchat.interface import ConversationMemory, OperatorMemory

EXIT_STORAGE = StorageError.exit_code


class _Commands(Group):
    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Usage errors as one line too, instead of Typer's framed panel."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except TyperException as exc:
            message = exc.format_message().replace("Value error, ", "")
            if message:  # empty for "no arguments: help shown", which needs no line of its own
                typer.echo(f"memchat: {message}{_usage_hint(exc)}", err=True)
            sys.exit(getattr(exc, "exit_code", 2))
        except typer.Abort:
            typer.echo("memchat: aborted", err=True)
            sys.exit(1)
        if not _flushed():
            code = EXIT_STORAGE
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException):
            raise
        except Unanswered as unanswered:
            _report(unanswered.cause, _next_step(unanswered), raising=unanswered)
        except BaseException as failure:
            _report(failure, "", raising=failure)


def _report(failure: BaseException, next_step: str, *, raising: BaseException) -> None:
    """One line on stderr and the failure's exit code (the table in memchat/errors.py); with
    MEMCHAT_DEBUG set, `raising` goes on with its traceback instead. `next_step` says how to send
    the user's message again when the turn had stored it."""
    if isinstance(failure, MemchatError):
        if debug_enabled():
            raise raising
        _fail(str(failure) + next_step, failure.exit_code)
    elif isinstance(failure, KeyboardInterrupt):
        _fail("interrupted" + next_step, exit_code_for_signal(getattr(failure, "signal_number", None)))
    elif isinstance(failure, BrokenPipeError):
        # The reader went away (`memchat export --all | head`): nothing more to say to it.
        _silence_stdout()
        raise typer.Exit(1)
    elif isinstance(failure, OSError):
        if debug_enabled():
            raise raising
        _silence_stdout()
        _fail(f"cannot write the output: {failure.strerror or failure}", EXIT_STORAGE)
    elif isinstance(failure, Exception):
        if debug_enabled():
            raise raising
        _fail(f"internal error: {type(failure).__name__}: {failure} (MEMCHAT_DEBUG=1 shows the traceback)", 1)
    raise failure


def _usage_hint(exc: TyperException) -> str:
    context = getattr(exc, "ctx", None)
    if context is None:
        return ""
    unknown = type(exc).__name__ == "NoSuchOption" and getattr(exc, "option_name", "")
    if unknown and context.command.name in ("say", "context"):
        return (
            f"; a message that starts with '-' goes after `--`: memchat {context.command.name} THREAD -- "
            f"{shlex.quote(unknown + ' …')}"
        )
    return f" (see `{context.command_path} --help`)"


def _next_step(unanswered: Unanswered) -> str:
    """How to go on after a turn that failed once the user's message was stored."""
    thread = unanswered.thread_id
    if unanswered.partial:
        return f" (the partial reply is kept: `memchat accept {thread}` keeps it, `memchat retry {thread}` asks again)"
    return f" (your message is saved: `memchat retry {thread}` sends it again)"


def _fail(message: str, code: int):
    first_line = message.splitlines()[0] if message else "failed"
    typer.echo(f"memchat: {terminal_safe(redact(first_line))}", err=True)
    raise typer.Exit(code)


def _silence_stdout() -> None:
    """Output can no longer be written (a closed pipe, a full disk): drop what is buffered so the
    interpreter's own flush at exit does not fail a second time with a traceback."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _flushed() -> bool:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    except OSError as exc:
        _silence_stdout()
        typer.echo(f"memchat: cannot write the output: {exc.strerror or exc}", err=True)
        return False
    return True


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP end a turn as Ctrl-C does (the partial reply kept, the lease released);
    SIGINT is handled even where the parent started memchat with it ignored. The first signal
    starts the clean-up; later ones wait for it to finish."""

    def interrupt(signal_number, _frame):
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, signal.SIG_IGN)
        raise Interrupted(signal_number)

    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, interrupt)


app = App(
    cls=_Commands,
    help="Persistent conversation memory for LLMs: threads in SQL, context fitted to a token budget.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_app = App(
    cls=_Commands,
    help="The database: where it is, its schema (memchat also migrates on first use).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(db_app, name="db")


def _print_version(value: bool) -> None:
    if value:
        from memchat.config import memchat_version

        typer.echo(f"memchat {memchat_version()}")
        raise typer.Exit(0)


@app.callback()
def _global(
    ctx: typer.Context,
    db: Annotated[
        Optional[str],
        typer.Option(
            "--db",
            metavar="PATH|URL",
            help="Database: a file path or SQLAlchemy URL (also accepted after the command). "
            "Default: $MEMCHAT_DB, else a file in the user data dir (`memchat db path`).",
        ),
    ] = None,
    server: Annotated[
        Optional[str],
        typer.Option(
            "--server",
            metavar="URL",
            help="Work through a running `memchat serve` at URL instead of a database (also accepted after "
            "the command); its key from $MEMCHAT_API_KEY. Default: $MEMCHAT_SERVER.",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", help="Print memchat's version and exit.", is_eager=True, callback=_print_version),
    ] = False,
):
    ctx.obj = {"db": db, "server": server}
    if colour_refused():
        ctx.color = False  # no-color.org; colour is only ever written to a terminal anyway


def memory_of(ctx: typer.Context) -> ConversationMemory:
    """The memory this invocation works on, opened on first use and closed when the command ends:
    the database, or with --server (or $MEMCHAT_SERVER) a client of that server answering the
    same calls with the same types (`memchat.interface.ConversationMemory`)."""
    root = ctx.find_root()
    if "memory" not in root.obj:
        from memchat.remote import RemoteMemory, server_from

        server = server_from(root.obj["server"])
        if server is None:
            return _database(root)
        if root.obj["db"]:
            raise InvalidInput("give either --db or --server (a server works on its own database)")
        root.obj["memory"] = RemoteMemory(server)
    return root.obj["memory"]


def chosen_thread(ctx: typer.Context, thread: str | None, latest: bool, *, doing: str) -> str:
    """The thread a command works on: the one named, or with -c (`latest`) the one with the most
    recent activity, named in one line on stderr (`doing` it), since the user did not say which
    one it would be."""
    if latest and thread is not None:
        raise InvalidInput(f"give either a THREAD or -c, not both (see `{ctx.command_path} --help`)")
    if not latest:
        if thread is None:
            raise InvalidInput(
                f"no thread: give its id, or -c for the most recent one (see `{ctx.command_path} --help`)"
            )
        return thread
    if holds_no_threads_yet(ctx):
        raise NotFound(NO_THREADS_YET)
    chosen = memory_of(ctx).latest_thread()
    titled = f" ({chosen.title})" if chosen.title else ""
    note(f"{doing} thread {chosen.id}{titled}, the most recent")
    return chosen.id


def operator_memory_of(ctx: typer.Context, *, option: str | None = None) -> OperatorMemory:
    """The database itself, for the operator's commands (serve, key, db), which have no form
    through a server: refused up front with --server; a $MEMCHAT_SERVER set for the client
    commands does not turn them away. An operator's `option` of a client command (`list
    --tenant`) is refused in client mode either way, before anything is opened."""
    root = ctx.find_root()
    if option is not None:
        from memchat.remote import server_from

        server = server_from(root.obj["server"])
        if server is not None:
            raise InvalidInput(
                f"`{ctx.command_path} {option}` works on the database itself, not through a server "
                f"(--server / MEMCHAT_SERVER: {server})"
            )
    elif root.obj["server"]:
        raise InvalidInput(f"`{ctx.command_path}` works on the database itself: leave out --server")
    return root.obj.get("memory") or _database(root)


def _database(root: typer.Context) -> OperatorMemory:
    from memchat.api import Memory  # the database layer, loaded by the commands that use it

    root.obj["new_database"] = _missing_database_file(root)
    root.obj["memory"] = Memory(root.obj["db"])
    root.call_on_close(root.obj["memory"].close)
    return root.obj["memory"]


def _missing_database_file(root: typer.Context) -> str | None:
    """The SQLite file this invocation works on, if it does not exist yet."""
    url = database_url(root.obj["db"])
    file = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else None
    return file if file and not os.path.exists(file) else None


def holds_no_threads_yet(ctx: typer.Context) -> bool:
    """True when this invocation's database is a SQLite file not made yet: a command that only
    looks a thread up answers that there is none without making the file."""
    root = ctx.find_root()
    if "memory" in root.obj:
        return False
    from memchat.remote import server_from

    return server_from(root.obj["server"]) is None and _missing_database_file(root) is not None


def new_database_file(ctx: typer.Context) -> str | None:
    """The SQLite file this invocation created, if it did (a first use)."""
    return ctx.find_root().obj.get("new_database")


def hoist_global_options(argv: list[str]) -> list[str]:
    """`memchat list --db x.db` means `memchat --db x.db list`, as users type it: a global option
    found after the command (and before any `--`) is moved in front of it."""
    front: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "--":
            rest += argv[index:]
            break
        name = word.split("=", 1)[0]
        if rest and name in GLOBAL_OPTIONS_WITH_VALUES:
            taken = 1 if "=" in word else 2
            front += argv[index : index + taken]
            index += taken
            continue
        rest.append(word)
        index += 1
    return front + rest


def main() -> None:
    install_signal_handlers()
    app(args=hoist_global_options(sys.argv[1:]), prog_name="memchat")
