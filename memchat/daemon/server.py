"""The background server itself: `python -m memchat.daemon.server FOLDER KEY STARTER_PID`,
started by a command (`memchat.daemon.start`), never by hand.

It takes its lock, listens on its socket (0600, in the 0700 folder), and loads nothing until
the command that started it has ended, or a command arrives: starting it costs that command no
CPU. Then it imports memchat's CLI, the storage layer and litellm once, freezes what it imported
out of the garbage collector's way, and accepts commands. Each one is forked twice: a watcher,
which tells the client the command's pid and later its wait status, and the command itself,
which takes over the client's arguments, environment, directory, umask and streams and runs
`memchat.cli.main` (see the package's docstring). Nothing of memchat runs in the server: it only
imports, so every command starts from the same state.

It leaves, removing its socket, after an idle time without commands, on SIGTERM
(`memchat daemon stop`), or when memchat's installed code changes underneath it. Commands
running then finish: they are processes of their own.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import gc
import io
import json
import os
import re
import select
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from memchat.config import take_environment, use_bundled_model_costs, whole_environment
from memchat.daemon import (
    LOG_FILE,
    Place,
    code_fingerprint,
    command_of,
    fingerprint,
    idle_seconds,
    peer_uid,
    receive_request,
)

PRELOAD = ("memchat.cli", "memchat.api", "memchat.turn", "prompt_toolkit.shortcuts", "prompt_toolkit.history")
"""What the server imports before it forks (and litellm, through `memchat.llm.load`): nothing of
memchat runs, only imports."""

WARM_TOKENIZERS = ("gpt-4o", "gpt-4")
"""Models whose tiktoken encodings (o200k_base, cl100k_base: every OpenAI model's, and litellm's
default for the others) are read once here rather than by every command (0.5 s each)."""

REQUEST_LIMIT = 64 << 20
"""The largest request taken: arguments and environment (the system allows a few MiB of them)."""

LEARNED_FILE = "modules"
LEARNED_LIMIT = 5000
_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")

LOG_LIMIT = 1 << 20
"""A log above this size is started afresh when a server starts."""

CHECK_EVERY = 5.0
"""Seconds between the server's checks of its idle time and of its code."""


def main(folder: str, key: str, starter: int) -> None:
    place = Place(Path(folder), key)
    lock = _take_lock(place)
    if lock is None:
        return  # another server has this place: it serves these commands
    started = time.time()
    os.ftruncate(lock, 0)
    os.pwrite(lock, f"{os.getpid()}\n".encode(), 0)  # for `memchat daemon status|stop`, before it serves
    _log(f"server {place.name} started (pid {os.getpid()})")
    os.umask(0o077)
    try:
        place.socket.unlink()  # a server that died left it
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with place.here():
        listener.bind(place.socket.name)
        os.chmod(place.socket.name, 0o600)
    listener.listen(64)
    signal.signal(signal.SIGTERM, lambda *_: _leave_at_once(place))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    code = code_fingerprint()
    idle = idle_seconds()
    if fingerprint(whole_environment(), place.folder) != key:
        _log(f"server {place.name} leaves: it was not started as its commands run (the code changed?)")
        _leave(place, listener, lock)
        return
    _wait_for(starter, listener)
    loading = time.monotonic()
    failure = _load(place.folder)
    if failure is None and code_fingerprint() != code:
        failure = "the installed code changed while it loaded"
    if failure:
        _log(f"server {place.name} leaves: {failure}")
        _leave(place, listener, lock)
        return
    _log(f"server {place.name} loaded in {time.monotonic() - loading:.1f} s")
    stopping: list[str] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append("stopped"))
    _serve(place, listener, lock, code, idle, started, stopping)


def _take_lock(place: Place) -> int | None:
    """The place's lock, held while this server lives; None if another server holds it."""
    give_up = time.monotonic() + 1.0
    while True:
        descriptor = os.open(place.lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(descriptor)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN) or time.monotonic() > give_up:
                return None
            time.sleep(0.01)  # a command checking whether a server runs holds it for an instant
            continue
        try:
            same = os.fstat(descriptor).st_ino == os.stat(place.lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return descriptor
        os.close(descriptor)  # removed as a leftover meanwhile: take the new file's lock


def _wait_for(starter: int, listener: socket.socket) -> None:
    """Until the command that started this server has ended, or a command is waiting."""
    try:
        watched = os.pidfd_open(starter)
    except (OSError, AttributeError):
        watched = None
    try:
        while True:
            waiting = [listener] + ([watched] if watched is not None else [])
            ready, _, _ = select.select(waiting, [], [], None if watched is not None else 0.1)
            if ready or (watched is None and not _alive(starter)):
                return
    finally:
        if watched is not None:
            os.close(watched)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _load(folder: Path) -> str | None:
    """Import what commands need; a reason not to serve, or None."""
    from memchat import llm

    for name in PRELOAD:
        __import__(name)
    litellm = llm.load()
    for model in WARM_TOKENIZERS:
        litellm.token_counter(model=model, text="warm")
    return _learn(folder)


def _learn(folder: Path) -> str | None:
    """Import what earlier commands imported on their way (litellm loads much of itself at the
    first call: provider code, HTTP/2, its proxy's types; a tenth of a second per command), as
    they listed it in LEARNED_FILE. A module that fails to import is left to the commands."""
    path = folder / LEARNED_FILE
    try:
        listed = path.read_text(encoding="utf-8").split()
    except OSError:
        listed = []
    names = dict.fromkeys(listed)
    for name in names:
        if name not in sys.modules and _MODULE_NAME.fullmatch(name):
            try:
                __import__(name)
            except BaseException:  # noqa: BLE001 - whatever a module does on import, the server goes on
                continue
    if len(names) != len(listed) or len(names) > LEARNED_LIMIT:
        _rewrite(path, list(names)[-LEARNED_LIMIT:])
    if threading.active_count() != 1:
        return "an import started a thread, and forking would copy a lock it may hold"
    gc.collect()
    gc.freeze()  # what was imported stays out of every collection: a command's exit does not walk it
    return None


def _rewrite(path: Path, names: list[str]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        temporary.write_text("".join(f"{name}\n" for name in names), encoding="utf-8")
        os.replace(temporary, path)
    except OSError:
        pass


def _report_imports(folder: Path, known: frozenset[str]) -> None:
    """At the command's exit: the modules it imported that the server had not (see `_learn`)."""
    new = [name for name in list(sys.modules) if name not in known and name != "__main__"]
    if not new:
        return
    try:
        descriptor = os.open(folder / LEARNED_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write("".join(f"{name}\n" for name in new))
    except OSError:
        pass


def _serve(
    place: Place, listener: socket.socket, lock: int, code: str, idle: float, started: float, stopping: list[str]
) -> None:
    watchers: set[int] = set()
    served = running = 0
    tally, told = os.pipe()  # each command's watcher writes "+" as it starts one and "-" as it ends
    woken, wake = os.pipe()  # a signal (SIGTERM: stop) ends the wait at once
    os.set_blocking(wake, False)
    signal.set_wakeup_fd(wake)
    last = time.monotonic()
    checked = time.monotonic()
    while not stopping:
        left = idle - (time.monotonic() - last)
        ready, _, _ = select.select([listener, tally, woken], [], [], max(0.0, min(CHECK_EVERY, left)))
        if woken in ready:
            os.read(woken, 512)
        if tally in ready:
            marks = os.read(tally, 4096)
            served += marks.count(b"+")
            running += marks.count(b"+") - marks.count(b"-")
            last = time.monotonic()  # only commands count as activity: `memchat daemon status` does not
        if running:
            last = time.monotonic()
        for pid in list(watchers):
            if os.waitpid(pid, os.WNOHANG)[0]:
                watchers.discard(pid)
                if not running and (failure := _learn(place.folder)):
                    stopping.append(failure)
        if listener in ready:
            connection, _ = listener.accept()
            if peer_uid(connection) != os.getuid():
                connection.close()  # the socket is 0600 in a 0700 folder: only a privileged user gets here
                continue
            pid = os.fork()
            if pid == 0:
                signal.set_wakeup_fd(-1)
                for descriptor in (listener.fileno(), lock, tally, woken, wake):
                    os.close(descriptor)
                described = {"pid": os.getppid(), "name": place.name, "started": started, "idle_seconds": idle}
                _watch(connection, place, code, told, {**described, "served": served, "running": running})
            watchers.add(pid)
            connection.close()
        if time.monotonic() - checked >= CHECK_EVERY:
            checked = time.monotonic()
            if code_fingerprint() != code:
                stopping.append("the installed code changed")
        if not running and time.monotonic() - last >= idle:
            stopping.append(f"idle for {idle:g} s")
    _log(f"server {place.name} leaves: {stopping[0]} ({served} commands served)")
    _leave(place, listener, lock)


def _leave_at_once(place: Place) -> None:
    """SIGTERM before the server serves (while it waits or loads): nothing runs to finish."""
    try:
        place.socket.unlink()
    except FileNotFoundError:
        pass
    _log(f"server {place.name} leaves: stopped before it served")
    os._exit(0)


def _leave(place: Place, listener: socket.socket, lock: int) -> None:
    try:
        place.socket.unlink()
    except FileNotFoundError:
        pass
    listener.close()
    os.close(lock)  # the lock file stays: removing it could let two servers hold "one" lock


def _watch(connection: socket.socket, place: Place, code: str, told: int, status: dict) -> None:
    """In the watcher (one per command): fork the command, tell the client its pid, then its
    wait status. A client that goes away (killed) takes its command with it, as a terminal
    closing takes a local one."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        request, fds = receive_request(connection, REQUEST_LIMIT)
    except (OSError, ValueError):
        os._exit(0)
    if request.get("kind") == "status":
        status["uptime"] = time.time() - status["started"]
        _send(connection, json.dumps(status))
        os._exit(0)
    if request.get("kind") != "run" or len(fds) != 4 or request.get("key") != place.key or code_fingerprint() != code:
        _send(connection, "refused")  # the client runs the command itself
        os._exit(0)
    if _client_gone(connection):
        os._exit(0)  # interrupted while the server loaded: its command is not to run
    begun = time.monotonic()
    pid = os.fork()
    if pid == 0:
        connection.close()
        os.close(told)
        _become(place, request, fds)
        return  # never reached: _become ends the process
    for fd in fds:
        os.close(fd)
    _tally(told, b"+")
    _send(connection, str(pid))
    wait_status = _wait_or_kill(pid, connection)
    command = command_of(request["argv"][1:]) or "?"
    ended = os.waitstatus_to_exitcode(wait_status)
    _log(f"server {place.name}: {command} ended ({ended}) in {time.monotonic() - begun:.2f} s")
    _tally(told, b"-")
    _send(connection, str(wait_status))
    os._exit(0)


def _tally(told: int, mark: bytes) -> None:
    """Tell the server that a command started or ended. A server that has left meanwhile
    (`memchat daemon stop`, an upgrade, a `kill -9` of it alone) counts no more, and its command
    goes on: its client must still learn its pid and how it ended."""
    try:
        os.write(told, mark)
    except OSError:
        pass


def _client_gone(connection: socket.socket) -> bool:
    """Whether the client has closed its end already: it was interrupted while it waited (for a
    server still loading), and nothing of its command is to run."""
    ready, _, _ = select.select([connection], [], [], 0)
    if not ready:
        return False
    try:
        return connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _wait_or_kill(pid: int, connection: socket.socket) -> int:
    """The command's wait status; if the client's end closes first, the command is killed."""
    try:
        watched = os.pidfd_open(pid)
    except (OSError, AttributeError):
        return os.waitpid(pid, 0)[1]  # no pidfd (an old kernel): the command outlives its client
    try:
        while True:
            ready, _, _ = select.select([watched, connection], [], [])
            if watched in ready:
                return os.waitpid(pid, 0)[1]
            try:
                if connection.recv(1, socket.MSG_PEEK):
                    connection.recv(4096)  # nothing is expected: dropped
                    continue
            except OSError:
                pass
            os.kill(pid, signal.SIGKILL)
            return os.waitpid(pid, 0)[1]
    finally:
        os.close(watched)


def _become(place: Place, request: dict, fds: list[int]) -> None:
    """The command: the client's streams, directory, umask, session and environment, then the
    CLI's `main` as the installed script runs it."""
    stdin, stdout, stderr, here = fds
    for target, fd in enumerate((stdin, stdout, stderr)):
        os.dup2(fd, target)
    os.fchdir(here)
    for fd in set(fds) - {0, 1, 2}:
        os.close(fd)
    os.setpgid(0, 0)  # its own process group: what it signals as a group is itself
    os.umask(int(request["umask"]))
    for number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)
    take_environment(request["env"])
    use_bundled_model_costs()  # as memchat set it before loading litellm, in the process that did
    atexit.register(_report_imports, place.folder, frozenset(sys.modules))
    _fresh_streams()
    sys.argv = list(request["argv"])
    if os.path.isfile(sys.argv[0]):  # as for a script run by its path: its folder first on the path
        sys.path.insert(0, os.path.dirname(os.path.realpath(sys.argv[0])))
    from memchat.cli import main

    main()  # exits with the command's code, through the interpreter's own shutdown


def _fresh_streams() -> None:
    """sys.stdin/stdout/stderr on the client's descriptors, opened as the interpreter opens them
    at start-up: the same encoding (the server was started with the same locale), and line
    buffered where they are a terminal, so a reply streams as it does locally."""
    encoding, errors = sys.stdout.encoding, sys.stdout.errors
    unbuffered = sys.stdout.write_through  # -u or PYTHONUNBUFFERED, which the client shares
    streams = []
    for fd, mode in ((0, "rb"), (1, "wb"), (2, "wb")):
        binary = io.open(fd, mode, buffering=0 if unbuffered and fd else -1, closefd=False)
        stream = io.TextIOWrapper(
            binary,
            encoding=encoding,
            errors="backslashreplace" if fd == 2 else errors,
            line_buffering=fd == 2 or (fd == 1 and os.isatty(fd)),
            write_through=fd == 2 or unbuffered,
        )
        streams.append(stream)
    sys.stdin, sys.stdout, sys.stderr = streams
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams


def _send(connection: socket.socket, line: str) -> None:
    try:
        connection.sendall(line.encode() + b"\n")
    except OSError:
        pass


def _log(line: str) -> None:
    sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")
    sys.stderr.flush()


def _fresh_log(folder: Path) -> None:
    """A log grown past LOG_LIMIT is started afresh (it holds no conversation: commands' names,
    exit codes and durations)."""
    path = folder / LOG_FILE
    try:
        if path.stat().st_size > LOG_LIMIT:
            os.truncate(path, 0)
    except OSError:
        pass


if __name__ == "__main__":
    _fresh_log(Path(sys.argv[1]))
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
