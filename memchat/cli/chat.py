"""`memchat chat`: an interactive session on a thread, one warm process for many turns.

A face like the others: each line typed is `Memory.say` on the session's thread, the reply
streamed as it arrives; each slash command is the CLI command of that name on this thread.
The line editor is prompt_toolkit (editing keys, input history kept in the data directory,
Alt-Enter or a \"\"\" block for several lines); with stdin not a terminal, lines are read as they
come, so a session can be scripted.
"""

from __future__ import annotations

import os
import shlex
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from memchat.cli import attachments
from memchat.cli.app import app, chosen_thread, install_signal_handlers, memory_of
from memchat.cli.options import (
    BudgetOpt,
    MaxTokensOpt,
    ModelOpt,
    PolicyName,
    PolicyOpt,
    ReasoningEffortOpt,
    RecallOpt,
    SummaryModelOpt,
    SummaryPromptOpt,
    SummaryShareOpt,
    TemperatureOpt,
    TimeoutOpt,
    TopPOpt,
    thread_settings,
    turn_options,
)
from memchat.cli.render import note, search_snippet
from memchat.cli.threads import prompt_file, start_thread
from memchat.cli.transfer import write_output
from memchat.cli.turns import render_context
from memchat.errors import InvalidInput, MemchatError, ReplyCutOff, Unanswered, cause_of
from memchat.terminal import terminal_safe

if TYPE_CHECKING:
    from memchat.interface import ConversationMemory

BLOCK = '"""'
"""A line holding only this starts a message of several lines; the next such line ends it."""
HISTORY_FILE = "chat-history"
LOAD_WAIT_SECONDS = 30
"""A session left before litellm finished loading waits for it (at most this long), so the
interpreter never exits half-way through an import."""


@app.command()
def chat(
    ctx: typer.Context,
    thread: Annotated[
        Optional[str],
        typer.Argument(metavar="THREAD", help="The thread to continue (default: a new one).", show_default=False),
    ] = None,
    latest: Annotated[
        bool,
        typer.Option(
            "--continue",
            "-c",
            help="Continue the thread with the most recent activity (as `llm chat -c`), named on stderr.",
        ),
    ] = False,
    title: Annotated[str, typer.Option("--title", "-t", help="A new thread's title.")] = "",
    system: Annotated[Optional[str], typer.Option("--system", "-s", help="A new thread's system prompt.")] = None,
    model: ModelOpt = None,
    budget: BudgetOpt = None,
    policy: PolicyOpt = None,
    recall: RecallOpt = None,
    summary_model: SummaryModelOpt = None,
    summary_share: SummaryShareOpt = None,
    summary_prompt: SummaryPromptOpt = None,
    max_tokens: MaxTokensOpt = None,
    temperature: TemperatureOpt = None,
    top_p: TopPOpt = None,
    reasoning_effort: ReasoningEffortOpt = None,
    timeout: TimeoutOpt = None,
    api_base: Annotated[
        Optional[str],
        typer.Option(
            "--api-base",
            metavar="URL",
            help="Provider base URL: kept with a new thread (as `new` keeps it), for this session's turns on THREAD.",
        ),
    ] = None,
):
    """Talk with the model in a session on a thread (a new one unless THREAD or -c is given); /help lists the
    commands. A new thread that is left without a message is not kept."""
    bounds = {
        "max_tokens": max_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "reasoning_effort": reasoning_effort,
        "timeout": timeout,
    }
    if thread is None and not latest:
        turn = turn_options(**bounds)  # checked before the thread is made
        settings = thread_settings(  # `new`'s options, --api-base kept with the thread as `new` keeps it
            title=title,
            system=system,
            model=model,
            budget=budget,
            policy=policy,
            recall=recall,
            summary_model=summary_model,
            summary_share=summary_share,
            summary_prompt=prompt_file(summary_prompt),
            api_base=api_base,
        )
        current = made = start_thread(ctx, settings)
    else:
        if title or system is not None or summary_share is not None or summary_prompt is not None:
            raise InvalidInput(
                "--title, --system and --summary-share/--summary-prompt are for a new thread; "
                "in a session on THREAD use /title and /system, or `memchat set`"
            )
        turn = turn_options(
            model=model,
            budget=budget,
            policy=policy,
            recall=recall,
            summary_model=summary_model,
            api_base=api_base,
            **bounds,
        )
        thread = chosen_thread(ctx, thread, latest, doing="continuing")  # before the database is opened
        current, made = memory_of(ctx).thread(thread), None
    session = ChatSession(
        memory_of(ctx),
        current.id,
        turn.model_dump(exclude_unset=True),
        made=made.id if made else None,
        scripted=not sys.stdin.isatty(),
    )
    session.run(_lines())


@dataclass
class ChatSession:
    memory: ConversationMemory
    thread_id: str
    options: dict[str, Any] = field(default_factory=dict)
    """This session's turn options (`say`'s keywords): those given on the command line for a
    thread that already existed."""
    made: str | None = None
    """The thread this session made to talk on: not kept if it is left without a message, so
    that quitting at once leaves nothing behind for `say -c` to continue."""
    scripted: bool = False
    """The lines come from a file or a pipe, not from someone at a terminal: the first failure
    ends the session with its exit code, since no one is there to react to it and the lines
    after it were written expecting its answer."""

    def run(self, lines: Iterator[str]) -> None:
        thread = self.memory.thread(self.thread_id)
        note(
            f"chat on thread {thread.id}{_titled(thread.title)} · {thread.model or 'default model'} · "
            "/help lists the commands, Ctrl-D leaves"
        )
        loading = threading.Thread(target=self.warm_up, name="memchat-warm-up", daemon=True)
        loading.start()  # while the first message is typed, so that its turn does not wait for it
        try:
            for line in lines:
                text = line.strip()
                if not text:
                    continue
                if text.startswith("/") and not text.startswith("//"):
                    if not self.command(text):
                        break
                else:
                    self.turn(lambda **kw: self.memory.say(self.thread_id, line.removeprefix("/"), **kw))
        finally:
            if self._discarded():
                note(f"thread {self.thread_id} holds no message: not kept")
            else:
                note(
                    f"thread {self.thread_id} (continue it: memchat chat {self.thread_id}, or memchat say {self.thread_id} …)"
                )
            loading.join(timeout=LOAD_WAIT_SECONDS)

    def _discarded(self) -> bool:
        """Delete the thread this session made if it is still empty: True if it was, and the
        session was still on it."""
        if self.made is None:
            return False
        try:
            if self.memory.thread(self.made).message_count:
                return False
            self.memory.delete(self.made)
        except MemchatError:
            return False  # gone already, or the database is failing: the failure that matters is reported
        return self.made == self.thread_id

    def warm_up(self) -> None:
        """Load litellm and the thread's tokenizer, and read its history, as a turn will (a
        client of `memchat serve` has nothing to load: the server is warm)."""
        from memchat.remote import RemoteMemory

        if isinstance(self.memory, RemoteMemory):
            return
        from memchat import llm

        try:
            llm.load()
            self.memory.context(self.thread_id, "…", **_preview_options(self.options))
        except Exception:
            pass  # the first turn meets the same failure and reports it

    def turn(self, speak: Callable[..., Any]) -> None:
        """A turn, its reply streamed, then what the reply held besides its text (reasoning, tool
        calls) one line each; a failure is one line and the session goes on."""
        install_signal_handlers()
        shown = terminal_safe if sys.stdout.isatty() else str
        wrote: list[str] = []

        def write(piece: str) -> None:
            wrote.append(piece)
            sys.stdout.write(shown(piece))
            sys.stdout.flush()

        try:
            with _typing_unechoed():
                reply = speak(stream=True, on_text=write, on_note=note, **self.options)
            if reply.thread_id != self.thread_id:
                self.thread_id = reply.thread_id
                note(f"now on thread {reply.thread_id}")
        except BaseException as raised:
            failure = cause_of(raised)
            if not isinstance(failure, (MemchatError, KeyboardInterrupt)):
                raise
            self._left_unanswered(raised, wrote)
            if self.scripted:
                raise
            if isinstance(failure, ReplyCutOff):
                note(f"{failure}; the partial reply is kept: /retry asks again")
            elif isinstance(failure, KeyboardInterrupt):
                note("interrupted before the reply began; your message is saved: /retry sends it again")
            else:
                saved = " (your message is saved: /retry sends it again)" if isinstance(raised, Unanswered) else ""
                note(terminal_safe(str(failure).splitlines()[0]) + saved)
            return
        finally:
            install_signal_handlers()
        if wrote:
            sys.stdout.write("\n")
            sys.stdout.flush()
        for item in reply.items:
            if item.kind != "message":
                typer.secho("  ".join(shown(line) for line in attachments.lines(item)), dim=True)

    def _left_unanswered(self, failure: BaseException, wrote: list[str]) -> None:
        """After a turn that ended without its reply: end the reply's line, and follow the turn to
        the thread it was taken on (an /edit's fork), so that /retry resends it there."""
        if wrote:
            sys.stdout.write("\n")
        where = failure.thread_id if isinstance(failure, Unanswered) else None
        if where is not None and where != self.thread_id:
            self.thread_id = where
            note(f"now on thread {where}")

    def command(self, line: str) -> bool:
        """Run a slash command; False: leave the session."""
        name, _, rest = line[1:].partition(" ")
        known = COMMANDS.get(name)
        if known is None:
            note(f"unknown command /{name}; the commands: " + " ".join(f"/{n}" for n in COMMANDS))
            return True
        try:
            return known.run(self, rest.strip()) is not False
        except (MemchatError, KeyboardInterrupt) as failure:
            if self.scripted:
                raise
            note(terminal_safe(str(failure).splitlines()[0]) if isinstance(failure, MemchatError) else "interrupted")
        return True


@dataclass(frozen=True)
class Command:
    run: Callable[[ChatSession, str], Any]
    usage: str
    help: str


def _help(session: ChatSession, _: str) -> None:
    width = max(len(command.usage) for command in COMMANDS.values())
    typer.echo("Type a message and press Enter to send it. Alt-Enter (or Esc then Enter) starts a new line;")
    typer.echo(f"a line holding only {BLOCK} starts a block of several lines, ended by another {BLOCK} line.")
    typer.echo("Ctrl-C stops a reply as it streams (kept as a partial reply) or clears the line; Ctrl-D leaves.")
    typer.echo("A message that starts with / is sent by starting it with //.")
    for command in COMMANDS.values():
        typer.echo(f"  {command.usage:<{width}}  {command.help}")


def _retry(session: ChatSession, _: str) -> None:
    session.turn(lambda **kw: session.memory.retry(session.thread_id, **kw))


def _undo(session: ChatSession, _: str) -> None:
    taken = session.memory.undo(session.thread_id)
    positions = ", ".join(f"#{message.position}" for message in taken)
    note(f"undid the last turn ({positions}): kept, and left out of later turns")


def _edit(session: ChatSession, rest: str) -> None:
    position, _, text = rest.partition(" ")
    if not position.isdigit() or not text.strip():
        raise InvalidInput("usage: /edit N new text (N: the user message's number, as `memchat show` gives it)")
    session.turn(lambda **kw: session.memory.edit(session.thread_id, int(position), text.strip(), **kw))


def _fork(session: ChatSession, rest: str) -> None:
    if rest and not rest.lstrip("-").isdigit():
        raise InvalidInput("usage: /fork [N] (the last message the fork keeps; default: all)")
    made = session.memory.fork(session.thread_id, at=int(rest) if rest else None)
    session.thread_id = made.id
    note(f"forked thread {made.forked_from} at #{made.forked_at} into {made.id}; now on {made.id}")


def _context(session: ChatSession, rest: str) -> None:
    render_context(session.memory.context(session.thread_id, rest or None, **_preview_options(session.options)))


def _preview_options(options: dict[str, Any]) -> dict[str, Any]:
    return {key: options[key] for key in ("model", "budget", "max_tokens", "policy", "recall") if key in options}


def _setting(name: str, parse: Callable[[str], Any], shown: str) -> Callable[[ChatSession, str], None]:
    """/model, /system, /budget, /policy: show the thread's setting, or change it as `memchat set` does."""

    def run(session: ChatSession, rest: str) -> None:
        if not rest:
            value = getattr(session.memory.thread(session.thread_id), name)
            note(f"{shown}: {value if value not in (None, '') else '(default)'}")
            return
        session.memory.configure(session.thread_id, **{name: parse(rest)})
        session.options.pop(name, None)
        note(f"{shown} set for thread {session.thread_id}")

    return run


def _budget(text: str) -> int | None:
    if not text.isdigit():
        raise InvalidInput("usage: /budget N (tokens; 0: the model's own limit)")
    return int(text) or None


def _policy(text: str) -> str:
    if text not in [policy.value for policy in PolicyName]:
        raise InvalidInput("usage: /policy " + "|".join(policy.value for policy in PolicyName))
    return text


def _summary(session: ChatSession, _: str) -> None:
    current = session.memory.summary(session.thread_id)
    if current is None:
        note("no summary yet: the summary policy makes one once history leaves the window")
        return
    typer.echo(f"summary of #{current.first_position}–#{current.last_position} ({current.model}):")
    typer.echo(terminal_safe(current.content))


def _search(session: ChatSession, rest: str) -> None:
    if not rest:
        raise InvalidInput("usage: /search WORDS")
    hits = session.memory.search(rest, thread_id=session.thread_id, limit=10)
    if not hits:
        note(f"nothing in this thread matches {rest!r}")
    for hit in hits:
        typer.echo(f"#{hit.message.position} {hit.message.role}: {search_snippet(hit.snippet)}")


def _title(session: ChatSession, rest: str) -> None:
    if not rest:
        note(f"title: {session.memory.thread(session.thread_id).title or '(none)'}")
        return
    session.memory.rename(session.thread_id, rest)
    note(f"renamed thread {session.thread_id}")


def _export(session: ChatSession, rest: str) -> None:
    words = shlex.split(rest)
    if len(words) != 1:
        raise InvalidInput("usage: /export FILE")
    write_output(words[0], lambda out: session.memory.write_export(out, session.thread_id))
    note(f"wrote thread {session.thread_id} to {words[0]}")


def _exit(session: ChatSession, _: str) -> bool:
    return False


COMMANDS: dict[str, Command] = {
    "help": Command(_help, "/help", "this list"),
    "retry": Command(_retry, "/retry", "send the last unanswered message again"),
    "undo": Command(_undo, "/undo", "take the last turn back (kept, marked undone)"),
    "edit": Command(_edit, "/edit N TEXT", "ask message N again as TEXT, in a fork (the session moves to it)"),
    "fork": Command(_fork, "/fork [N]", "fork the thread at message N (default: all) and go on in the fork"),
    "context": Command(_context, "/context [TEXT]", "what the next turn would send"),
    "model": Command(_setting("model", str, "model"), "/model [M]", "show or set the thread's model"),
    "system": Command(_setting("system", str, "system prompt"), "/system [S]", "show or set the system prompt"),
    "budget": Command(_setting("budget", _budget, "budget"), "/budget [N]", "show or set the token budget"),
    "policy": Command(_setting("policy", _policy, "policy"), "/policy [P]", "show or set the memory policy"),
    "summary": Command(_summary, "/summary", "the thread's current summary"),
    "search": Command(_search, "/search WORDS", "full-text search in this thread"),
    "title": Command(_title, "/title [T]", "show or set the thread's title"),
    "export": Command(_export, "/export FILE", "write the thread to FILE as JSON"),
    "exit": Command(_exit, "/exit", "leave (Ctrl-D too)"),
}


def _titled(title: str) -> str:
    return f" ({terminal_safe(title)})" if title else ""


def _lines() -> Iterator[str]:
    """What the user types: through the line editor on a terminal, else stdin's lines."""
    if sys.stdin.isatty() and sys.stdout.isatty():
        yield from _edited_lines()
        return
    block: list[str] | None = None
    for raw in sys.stdin:
        line = raw.rstrip("\n").rstrip("\r")
        if line.strip() == BLOCK:
            if block is None:
                block = []
                continue
            yield "\n".join(block)
            block = None
        elif block is not None:
            block.append(line)
        else:
            yield line


@contextmanager
def _typing_unechoed() -> Iterator[None]:
    """While a turn runs, the terminal does not echo what is typed, so keys pressed while a reply
    streams do not land in the middle of it; the settings come back when the turn ends, however it
    ends (Ctrl-C too). The keys themselves wait for the next prompt, which shows them, as a shell's
    type-ahead does: the terminal passes them on unedited, as the line editor reads keys (line
    editing would take Ctrl-D, Ctrl-U or Ctrl-W for itself), and Ctrl-C still stops the reply."""
    import termios

    try:
        descriptor = sys.stdin.fileno()
        settings = termios.tcgetattr(descriptor)
    except (OSError, ValueError, termios.error):
        yield  # not a terminal
        return
    quiet = list(settings)
    quiet[0] &= ~(termios.ICRNL | termios.INLCR | termios.IGNCR)
    quiet[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.IEXTEN)
    termios.tcsetattr(descriptor, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        termios.tcsetattr(descriptor, termios.TCSANOW, settings)


def _edited_lines() -> Iterator[str]:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.key_binding import KeyBindings

    class InputHistory(FileHistory):
        """The input history, without the lines that open a block: the block is kept whole,
        as one entry that Up brings back."""

        def append_string(self, string: str) -> None:
            if string.strip() != BLOCK:
                super().append_string(string)

    bindings = KeyBindings()

    @bindings.add("escape", "enter")
    def _newline(event) -> None:
        event.current_buffer.insert_text("\n")

    history = InputHistory(str(_history_file()))
    prompt = PromptSession(history=history, key_bindings=bindings)
    block_prompt = PromptSession(key_bindings=bindings)  # a block's lines are kept as one entry, once it ends
    while True:
        try:
            line = prompt.prompt("> ")
        except KeyboardInterrupt:
            continue  # Ctrl-C at the prompt clears the line
        except EOFError:
            return
        if line.strip() == BLOCK:
            block: list[str] = []
            while True:
                try:
                    more = block_prompt.prompt("… ")
                except KeyboardInterrupt:
                    block = []
                    break
                except EOFError:
                    break
                if more.strip() == BLOCK:
                    break
                block.append(more)
            if block:
                message = "\n".join(block)
                history.append_string(message)
                yield message
            continue
        yield line


def _history_file() -> Path:
    """What was typed in earlier sessions, in memchat's data directory (0600: it is what was said)."""
    from platformdirs import user_data_dir

    from memchat.config import private_directory

    directory = Path(user_data_dir("memchat", appauthor=False))
    private_directory(directory)
    path = directory / HISTORY_FILE
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    elif path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    return path
