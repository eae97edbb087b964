"""memchat commands in processes forked from an interpreter that has already imported memchat,
litellm and the server stack, so a test pays litellm's import (seconds) once per pytest worker
instead of once per command.

Each command is still a process of its own: its own pid, the test's environment, working
directory and standard streams (passed as file descriptors), `memchat.cli.main` run with the
command's arguments exactly as the installed script runs it, its exit status and signals its
own. The one difference from the installed script is when the imports ran: so a command is
forked from a server started with the same values of every variable that may be read at import
time (see `_SAME_AFTER_IMPORT`); a call that asks for more than this module gives runs the
installed script instead (`MemchatCommand` in conftest decides). Run as a script, this module is
that server: `python preloaded.py SOCKET`.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PRELOAD = ("memchat.cli", "memchat.api", "memchat.server.app", "uvicorn", "litellm")
"""What the server imports before it forks: nothing of memchat runs, only imports."""

_SAME_AFTER_IMPORT = re.compile(
    r"(MEMCHAT_|OPENAI_|ANTHROPIC_|XDG_|PYTEST_).*|[A-Z0-9_]*_API_KEY|HOME|PATH|COLUMNS|LINES|NO_COLOR|TERM|EDITOR"
)
"""Variables nothing reads at import time (memchat reads its own in `memchat.config` when a
command runs; litellm reads provider keys and addresses per call): a command whose environment
differs in any other variable is forked from another server, started with it."""


def _serve(path: str) -> dict:
    """Accept requests until one is for this process: the forked command returns its request."""
    for name in PRELOAD:
        __import__(name)
    if threading.active_count() != 1:
        raise RuntimeError("a preloaded module started a thread: forking would copy a half-held lock")
    gc.freeze()  # what was imported stays out of every collection: a command's exit does not walk it
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # each request's watcher is reaped by the kernel
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        ready, _, _ = select.select([listener, sys.stdin], [], [])
        if sys.stdin in ready:  # the pytest worker closed its end: it is gone, and so is this
            os._exit(0)
        connection, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            return _watch(connection)
        connection.close()


def _watch(connection: socket.socket) -> dict:
    """In the watcher (one per request): fork the command, tell the client its pid, wait for it
    and tell its wait status. The command returns its request to run it."""
    message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
    request = json.loads(message)
    pid = os.fork()
    if pid == 0:
        connection.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        return request
    for fd in fds:
        os.close(fd)
    connection.sendall(f"{pid}\n".encode())
    _, status = os.waitpid(pid, 0)
    connection.sendall(f"{status}\n".encode())
    os._exit(0)


def _run(request: dict) -> None:
    """In the command: the test's directory, environment and session, then the CLI's `main` as
    the installed script calls it (interpreter shutdown as after any script)."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    if request["new_session"]:
        os.setsid()
    sys.argv = [request["script"], *request["args"]]
    sys.path[0] = os.path.dirname(request["script"])
    from memchat.cli import main

    sys.exit(main())


class Preloaded:
    """One server, started with the environment its commands' imports see."""

    def __init__(self, env: dict):
        self.directory = tempfile.mkdtemp(prefix="memchat-preloaded-")
        self.path = os.path.join(self.directory, "socket")
        self.process = subprocess.Popen(
            [sys.executable, __file__, self.path],
            env=env,
            stdin=subprocess.PIPE,  # held open while this process lives: at its end the server leaves
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.ready = self.process.stdout.readline().strip() == "ready"

    def start(self, script: str, args, env: dict, cwd, stdio, new_session: bool = False) -> Forked:
        """Fork a command with these three file descriptors as its standard streams."""
        request = {
            "script": script,
            "args": [str(arg) for arg in args],
            "env": env,
            "cwd": str(cwd or os.getcwd()),
            "new_session": new_session,
        }
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.connect(self.path)
        socket.send_fds(connection, [json.dumps(request).encode()], list(stdio))
        return Forked(connection, [script, *request["args"]])

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        Path(self.path).unlink(missing_ok=True)
        os.rmdir(self.directory)


class Forked:
    """A forked command, as much of `subprocess.Popen` as the tests use: `pid`, `returncode`,
    `poll`, `wait`, `send_signal`, `terminate`, `kill`."""

    def __init__(self, connection: socket.socket, args: list[str]):
        self.args = args
        self.returncode = None
        self._connection = connection
        self._received = b""
        self.pid = int(self._line(None))

    def _line(self, timeout: float | None) -> str | None:
        """The watcher's next line, or None if it sent none within `timeout` seconds."""
        give_up = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._received:
            left = None if give_up is None else max(0.0, give_up - time.monotonic())
            if not select.select([self._connection], [], [], left)[0]:
                return None
            chunk = self._connection.recv(64)
            if not chunk:
                raise RuntimeError(f"the preloaded interpreter lost the command {self.args}")
            self._received += chunk
        line, self._received = self._received.split(b"\n", 1)
        return line.decode()

    def poll(self):
        if self.returncode is None:
            self._status(0)
        return self.returncode

    def _status(self, timeout: float | None) -> bool:
        line = self._line(timeout)
        if line is None:
            return False
        self.returncode = os.waitstatus_to_exitcode(int(line))
        self._connection.close()
        return True

    def wait(self, timeout: float | None = None):
        if self.returncode is None and not self._status(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


_servers: dict[tuple, Preloaded] = {}
_servers_lock = threading.Lock()
KEPT = 2
"""Servers kept per pytest worker, the most recently used: nearly every test asks for one."""


def server(env: dict) -> Preloaded | None:
    """The preloaded interpreter for a command with this whole environment: one started with the
    same values of every variable that may be read at import time, started when first asked for.
    None when such a server cannot fork safely (an import started a thread): the installed
    script then."""
    key = tuple(sorted((name, value) for name, value in env.items() if not _SAME_AFTER_IMPORT.fullmatch(name)))
    with _servers_lock:
        found = _servers.pop(key, None)
        if found is None or found.process.poll() is not None and found.ready:
            found = Preloaded(env)
        _servers[key] = found
        while len(_servers) > KEPT:
            _servers.pop(next(iter(_servers))).close()
    return found if found.ready else None


@atexit.register
def _close_all() -> None:
    for running in _servers.values():
        running.close()


def run(preloaded: Preloaded, script: str, args, env: dict, cwd, input, timeout: float, check=False):
    """`subprocess.run(capture_output=True, text=True)` of a forked command."""
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        if input is not None:
            stdin.write(input.encode())
            stdin.seek(0)
        command = preloaded.start(script, args, env, cwd, (stdin.fileno(), stdout.fileno(), stderr.fileno()))
        try:
            command.wait(timeout)
        except subprocess.TimeoutExpired:
            command.kill()
            command.wait()
            raise
        outputs = []
        for stream in (stdout, stderr):
            stream.seek(0)
            outputs.append(_text(stream.read()))
    done = subprocess.CompletedProcess(command.args, command.returncode, *outputs)
    if check:
        done.check_returncode()
    return done


def _text(data: bytes) -> str:
    """As `subprocess.run(text=True)` decodes: the locale's encoding, universal newlines."""
    import io

    return io.TextIOWrapper(io.BytesIO(data)).read()


if __name__ == "__main__":
    _run(_serve(sys.argv[1]))
