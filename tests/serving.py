"""`memchat serve` as a real process for the tests: the installed script, uvicorn on a free
127.0.0.1 port, on the test's database and the test's local provider."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import preloaded


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _more_than_one_worker(args) -> bool:
    """uvicorn starts more than one worker as new interpreters: the installed script then, as
    the preloaded interpreter would save nothing."""
    return "--workers" in args and args[list(args).index("--workers") + 1] != "1"


class Served:
    """`memchat serve` as a real process, forked from the preloaded interpreter (preloaded.py)
    when it can be, else the installed script."""

    def __init__(self, *args: str, env: dict | None = None, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        script = str(Path(sys.executable).parent / "memchat")
        self.log = tempfile.TemporaryFile()
        command = ["serve", "--port", str(self.port), *args]
        environment = {**os.environ, **(env or {})}
        forks = None if _more_than_one_worker(args) else preloaded.server(environment)
        if forks:
            with open(os.devnull) as nothing:
                streams = (nothing.fileno(), self.log.fileno(), self.log.fileno())
                self.process = forks.start(script, command, environment, None, streams, new_session=True)
        else:
            self.process = subprocess.Popen(
                [script, *command], env=environment, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait_until_up()

    def _wait_until_up(self, seconds: float = 60) -> None:
        give_up = time.monotonic() + seconds
        while time.monotonic() < give_up:
            if self.process.poll() is not None:
                raise RuntimeError(f"memchat serve exited {self.process.returncode}: {self.output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"memchat serve did not come up: {self.output()}")

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def client(self, key: str = "unused", **options):
        import openai

        options.setdefault("timeout", 60)
        return openai.OpenAI(base_url=self.base_url, api_key=key, max_retries=0, **options)

    def output(self) -> str:
        """What the server printed so far (its access log included)."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def kill(self) -> None:
        """kill -9 of the server and its workers, as a crash or the OOM killer would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # any worker left behind
        except ProcessLookupError:
            pass
        return self.output()
