"""The background server: a command that needs the model stack (`say`, `chat`, ...) is run by a
process forked from an interpreter that has already imported it, instead of importing litellm
(seconds) in every process.

The server holds no memory of its own, only imported code. Each command it runs is a fresh
fork with the command's own arguments, environment, working directory, umask and standard
streams (passed over the socket as file descriptors), running `memchat.cli.main` exactly as the
installed script does: it reads the same database and settings, prints the same output, streams
the same way and exits with the same code. The client forwards its signals to the fork (Ctrl-C
keeps a partial reply as a local run does) and exits as the fork exited.

A server is started with the environment of the command that started it, and serves only
commands whose environment, Python and installed code are the same (`fingerprint`): it is found
by a socket named after a keyed hash of those, so any difference is another server. It listens
on a Unix socket in `daemon/` inside memchat's 0700 data directory, answers only its own user
(peer credentials), and leaves after an idle time. This module is the client's side and must
stay light (the standard library and platformdirs): it runs before anything else is imported.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import signal
import socket
import struct
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from memchat.config import (
    daemon_from_environment,
    daemon_idle_from_environment,
    private_directory,
    server_from_environment,
    settings_file,
    whole_environment,
)

MODEL_COMMANDS = frozenset({"say", "retry", "edit", "chat", "embed", "context"})
"""Commands that load litellm (to call a model or count with its tokenizer); `summary` does
only with --rebuild. Every other command stays local: it is as quick without a server."""

GLOBAL_OPTIONS_WITH_VALUES = ("--db", "--server")
"""The global options that take a value: `command_of` skips them to find the command word, and
the CLI moves them in front of the command when typed after it (`cli.app.hoist_global_options`)."""
DEFAULT_IDLE_SECONDS = 600.0
FOLDER = "daemon"
LOG_FILE = "daemon.log"
SECRET_FILE = "secret"
STATUS_WAIT = 0.5
"""Seconds `status` waits for a server's answer; one that gives none is loading (it answers
once it has loaded what commands need)."""

_VOLATILE = frozenset(
    {
        "_",
        "PWD",
        "OLDPWD",
        "SHLVL",
        "COLUMNS",
        "LINES",
        "WINDOWID",
        "GNOME_TERMINAL_SCREEN",
        "KONSOLE_DBUS_SESSION",
        "WT_SESSION",
        "ALACRITTY_WINDOW_ID",
        "STY",
        "VSCODE_GIT_IPC_HANDLE",
        "SSH_AUTH_SOCK",
        "MEMCHAT_DAEMON",
        "MEMCHAT_DAEMON_IDLE",
        "SSH_TTY",
        "GPG_TTY",
        "TMUX_PANE",
        "TERM_SESSION_ID",
        "ITERM_SESSION_ID",
        "KITTY_WINDOW_ID",
        "WEZTERM_PANE",
        "SSH_CLIENT",
        "SSH_CONNECTION",
    }
)
"""Variables a shell changes between commands or terminals that nothing memchat loads reads,
and the mechanism's own (read before a server is chosen, or by the server alone): left out of
the fingerprint so that they do not start a server per directory, per tab or per setting. The
command still runs with them, as it runs with the whole environment it was given."""

_DIRECTORY_HANDLE = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY
"""A working directory is held by a handle that needs no read permission on it (Linux)."""

_FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGWINCH", "SIGUSR1", "SIGUSR2")


# ---- which commands, which server ------------------------------------------------------------


def command_of(argv: list[str]) -> str | None:
    """The command word of memchat's arguments (global options may come first), or None."""
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "--":
            return None
        if word in GLOBAL_OPTIONS_WITH_VALUES:
            index += 2
            continue
        if not word.startswith("-"):
            return word
        index += 1
    return None


def wanted(argv: list[str]) -> bool:
    """Whether this invocation goes through a background server: a command that loads the model
    stack, on a database (not in client mode), with the mechanism not turned off."""
    command = command_of(argv)
    if command not in MODEL_COMMANDS and not (command == "summary" and "--rebuild" in argv):
        return False
    options = argv[: argv.index("--")] if "--" in argv else argv
    if any(word in ("-h", "--help") or word.split("=", 1)[0] == "--server" for word in options):
        return False
    if server_from_environment():
        return False
    return enabled() and hasattr(socket, "SO_PEERCRED")


def enabled() -> bool:
    """MEMCHAT_DAEMON (off, 0, no, false: off), else the `daemon` setting, else on."""
    given = daemon_from_environment()
    if given is not None:
        return given
    return str(_setting("daemon") or "on").lower() != "off"


def idle_seconds() -> float:
    """How long a server waits for a command before it leaves: MEMCHAT_DAEMON_IDLE (seconds),
    else the `daemon-idle` setting, else ten minutes."""
    given = daemon_idle_from_environment()
    if given is not None:
        return given
    try:
        seconds = float(_setting("daemon-idle"))
    except (TypeError, ValueError):
        return DEFAULT_IDLE_SECONDS
    return seconds if seconds > 0 else DEFAULT_IDLE_SECONDS


def _setting(key: str):
    try:
        values = json.loads(settings_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # a broken file is for `memchat config` to report; here it means the defaults
    return values.get(key) if isinstance(values, dict) else None


def directory() -> Path:
    """`daemon/` in memchat's data directory (0700, as the directory it is in)."""
    from platformdirs import user_data_dir

    data = Path(user_data_dir("memchat", appauthor=False))
    private_directory(data)
    private_directory(data / FOLDER)
    return data / FOLDER


def fingerprint(variables: dict[str, str], folder: Path) -> str:
    """What a server must share with a command to run it: the interpreter, the installed code
    (memchat's files, and every site directory, whose entries change with any install or
    upgrade) and the environment but for `_VOLATILE`. Hashed with a key kept in the folder
    (0600), so no value of the environment, a provider key least of all, is written anywhere,
    not even as a plain hash."""
    digest = hashlib.blake2b(key=_secret(folder), digest_size=20)
    for name in sorted(variables):
        if name not in _VOLATILE:
            digest.update(f"{name}={variables[name]}\0".encode("utf-8", "surrogateescape"))
    digest.update(f"{sys.executable}\0{sys.version}\0".encode())
    digest.update(code_fingerprint().encode())
    return digest.hexdigest()


def code_fingerprint() -> str:
    """The installed code as the file system has it now: memchat's own files (an editable
    install is edited in place) and the site directories (an install or upgrade of any package
    replaces entries there)."""
    package = Path(__file__).resolve().parents[1]
    parts = []
    for root, folders, files in os.walk(package):
        folders[:] = sorted(name for name in folders if name != "__pycache__")
        for name in sorted(files):
            if name.endswith((".py", ".mako")):
                found = os.stat(os.path.join(root, name))
                parts.append(f"{root}/{name}:{found.st_mtime_ns}:{found.st_size}")
    for site in sys.path:
        if site.endswith("-packages"):
            try:
                parts.append(f"{site}:{os.stat(site).st_mtime_ns}")
            except OSError:
                continue
    return hashlib.blake2b("\n".join(parts).encode("utf-8", "surrogateescape"), digest_size=20).hexdigest()


def _secret(folder: Path) -> bytes:
    path = folder / SECRET_FILE
    try:
        with open(path, "rb") as handle:
            key = handle.read()
        if len(key) == 32:
            return key
    except FileNotFoundError:
        pass
    key = os.urandom(32)
    temporary = folder / f".{SECRET_FILE}.{os.getpid()}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key)
    try:
        os.link(temporary, path)  # the first writer wins; a racing one reads the winner's key
    except FileExistsError:
        os.unlink(temporary)
        return _secret(folder)
    os.unlink(temporary)
    return key


class Place:
    """Where the server for one fingerprint lives: its socket, and its lock file (held by the
    server while it runs, so a server killed with -9 leaves a lock anyone can take)."""

    def __init__(self, folder: Path, key: str):
        self.folder = folder
        self.key = key
        self.name = key[:16]
        self.socket = folder / f"{self.name}.sock"
        self.lock = folder / f"{self.name}.lock"

    @contextmanager
    def here(self):
        """In the folder, for as long as a bind or connect takes: a Unix socket's path holds at
        most 107 bytes, and a data directory may be deeper than that."""
        back = os.open(".", _DIRECTORY_HANDLE)
        try:
            os.chdir(self.folder)
            yield
        finally:
            os.fchdir(back)
            os.close(back)


def place_for(variables: dict[str, str]) -> Place:
    folder = directory()
    return Place(folder, fingerprint(variables, folder))


def send_request(connection: socket.socket, request: dict, fds: list[int] = ()) -> None:
    """A request: its length (8 bytes, carrying the file descriptors), then its JSON, which may
    be larger than one write of a socket takes (a message of a megabyte is one argument)."""
    payload = json.dumps(request).encode("utf-8", "surrogateescape")
    socket.send_fds(connection, [struct.pack("!Q", len(payload))], list(fds))
    connection.sendall(payload)


def receive_request(connection: socket.socket, most: int) -> tuple[dict, list[int]]:
    """The request `send_request` sent (at most `most` bytes of JSON) and its descriptors."""
    header, fds, _, _ = socket.recv_fds(connection, 8, 4)
    header += _exactly(connection, 8 - len(header))
    (size,) = struct.unpack("!Q", header)
    if size > most:
        raise ValueError(f"a request of {size} bytes")
    request = json.loads(_exactly(connection, size).decode("utf-8", "surrogateescape"))
    if not isinstance(request, dict):
        raise ValueError("a request that is not an object")
    return request, fds


def _exactly(connection: socket.socket, size: int) -> bytes:
    received = b""
    while len(received) < size:
        chunk = connection.recv(min(size - len(received), 1 << 20))
        if not chunk:
            raise ConnectionError("the client went away mid-request")
        received += chunk
    return received


def peer_uid(connection: socket.socket) -> int:
    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", credentials)[1]


# ---- the client ------------------------------------------------------------------------------


def connect(place: Place, timeout: float | None = None) -> socket.socket | None:
    """A connection to the server of `place`, or None when none is listening there."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(timeout)
    try:
        with place.here():
            connection.connect(place.socket.name)
    except OSError:
        connection.close()
        return None
    if peer_uid(connection) != os.getuid():
        connection.close()
        return None
    connection.settimeout(None)
    return connection


def run_through_server(argv: list[str]) -> int | None:
    """Run the command in this environment's server: its exit status as a local run would end
    (an exit code, or minus the signal that ended it). None when there is no server to run it:
    then the caller runs it here, and a server has been started for the next command."""
    try:
        place = place_for(whole_environment())
    except OSError:
        return None  # no data directory to keep a server in: run here, as without the mechanism
    _open_standard_streams()
    connection = connect(place)
    if connection is None:
        start(place)
        return None
    try:
        return _hand_off(connection, place, argv)
    finally:
        connection.close()


def _hand_off(connection: socket.socket, place: Place, argv: list[str]) -> int | None:
    request = {
        "kind": "run",
        "key": place.key,
        "argv": [sys.argv[0], *argv],
        "env": whole_environment(),
        "umask": _umask(),
    }
    try:
        here = os.open(".", _DIRECTORY_HANDLE)
    except OSError:
        return None  # a working directory that cannot be handed over: run here
    try:
        send_request(connection, request, [0, 1, 2, here])
    except OSError:
        return None
    finally:
        os.close(here)
    return _wait(_Lines(connection))


_ENDING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""The signals that end memchat (`cli.app`): before the server has forked the command, they end
its client."""


class _EndedBeforeForked(Exception):
    """A signal of `_ENDING` while the server had not yet forked the command."""

    def __init__(self, number: int):
        super().__init__(number)
        self.number = number


def _wait(reader: _Lines) -> int | None:
    """The command's pid (a server still loading gives it after seconds), then its wait status
    as an exit status, forwarding this client's signals to it meanwhile. None when the server
    refused it or went away before forking it: nothing ran. A Ctrl-C, SIGTERM or SIGHUP before
    the fork ends this client as it ends a local command interrupted before its turn, and the
    connection closing takes along a command forked at that instant."""
    previous = {}
    command = {}

    def forward(number, _frame):
        if "pid" not in command:
            if number in _ENDING:
                raise _EndedBeforeForked(number)
            return
        try:
            os.kill(command["pid"], number)
        except ProcessLookupError:
            pass

    def suspend(number, _frame):
        """Ctrl-Z: the command stops with its client, and goes on with it (`fg`)."""
        if "pid" in command:
            forward(signal.SIGSTOP, None)
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTSTP)
        signal.signal(signal.SIGTSTP, suspend)
        if "pid" in command:
            forward(signal.SIGCONT, None)

    for name in _FORWARDED:
        number = getattr(signal, name, None)
        if number is not None:
            previous[number] = signal.signal(number, forward)
    previous[signal.SIGTSTP] = signal.signal(signal.SIGTSTP, suspend)
    try:
        first = reader.line()
        if first is None or not first.isdigit():
            return None
        command["pid"] = int(first)
        line = reader.line()
    except ConnectionError:
        if "pid" not in command:
            return None
        line = None
    except _EndedBeforeForked as ended:
        sys.stderr.write("memchat: interrupted\n")
        return 128 + ended.number
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if line is None or not line.lstrip("-").isdigit():
        sys.stderr.write(
            "memchat: the background server stopped during the command; `memchat show` shows what was kept "
            "and `memchat retry` sends an unanswered message again\n"
        )
        return 128 + signal.SIGKILL
    return os.waitstatus_to_exitcode(int(line))


class _Lines:
    """Lines from the server, read as they come (a signal's handler may run while waiting)."""

    def __init__(self, connection: socket.socket):
        self.connection = connection
        self.received = b""

    def line(self) -> str | None:
        while b"\n" not in self.received:
            chunk = self.connection.recv(256)
            if not chunk:
                return None
            self.received += chunk
        line, self.received = self.received.split(b"\n", 1)
        return line.decode()


def _open_standard_streams() -> None:
    """A closed stdin, stdout or stderr (`memchat say T hi >&-`) becomes /dev/null here, before
    the connection to the server is made: otherwise the connection takes the free descriptor and
    is handed over as that stream, and the command reads its stdin from it (waiting for ever) or
    writes its reply into it (lost)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def _umask() -> int:
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def exit_as(status: int) -> None:
    """End this process as the command ended: its exit code, or the signal that killed it."""
    if sys.stdout is not None:  # None when this process started with its stdout closed
        sys.stdout.flush()
    if status < 0:
        signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    os._exit(status if status >= 0 else 128 - status)


def start(place: Place) -> None:
    """Start this environment's server in the background (its own session, its output in the
    log), unless one is starting already. It waits for this command to end before it loads
    anything, so starting it costs this command nothing but a process start."""
    if _held(place.lock):
        return
    import subprocess

    log = os.open(place.folder / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        subprocess.Popen(
            # -P: not the directory it starts in on its import path (a stray `typer.py` there
            # must not be what every command imports); it starts in its own folder.
            [sys.executable, "-P", "-m", "memchat.daemon.server", str(place.folder), place.key, str(os.getpid())],
            cwd=place.folder,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    except OSError:
        pass  # no server this time: the command runs here all the same
    finally:
        os.close(log)


def _held(path: Path) -> bool:
    """Whether a live server holds this lock (a server that died lets go of it)."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(descriptor)
    return False


# ---- status and stop -------------------------------------------------------------------------


def servers() -> list[dict]:
    """This user's running servers (in this data directory), each as it describes itself, or as
    `loading` while it waits for its first command or loads; `current` tells whether this
    environment's commands would use it. Leftovers of servers that died are removed."""
    folder = directory()
    current = fingerprint(whole_environment(), folder)[:16]
    found = []
    for lock in sorted(folder.glob("*.lock")):
        place = Place(folder, lock.stem)
        if not _held(lock):
            _remove_leftovers(place)
            continue
        try:
            pid = int(lock.read_text().strip())
        except (OSError, ValueError):
            continue  # taken an instant ago: its pid is being written
        described = {"pid": pid, "name": place.name, "loading": True}
        connection = connect(place, timeout=1)
        if connection is not None:
            try:
                connection.settimeout(STATUS_WAIT)
                send_request(connection, {"kind": "status"})
                answer = _Lines(connection).line()
                if answer:
                    described = {**json.loads(answer), "loading": False}
            except (OSError, ValueError):
                pass  # no answer yet: it is loading
            finally:
                connection.close()
        described["current"] = place.name == current
        found.append(described)
    return found


def stop_all(wait: float = 10.0) -> int:
    """Stop every server of this user in this data directory (commands running finish); the
    number stopped."""
    stopped = []
    for described in servers():
        try:
            os.kill(described["pid"], signal.SIGTERM)
            stopped.append(described)
        except ProcessLookupError:
            continue
    give_up = time.monotonic() + wait
    folder = directory()
    for described in stopped:
        while _held(folder / f"{described['name']}.lock") and time.monotonic() < give_up:
            time.sleep(0.02)
    return len(stopped)


def _remove_leftovers(place: Place) -> None:
    """The socket and lock of a server that died, removed under its lock (taken first, so that
    a server starting meanwhile keeps its files)."""
    try:
        descriptor = os.open(place.lock, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for path in (place.socket, place.lock):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
    except OSError:
        pass
    finally:
        os.close(descriptor)
