import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI
from helpers import installed_script

NETGUARD = Path(__file__).parent / "netguard"
sys.path.insert(0, str(NETGUARD))
import netguard  # noqa: E402
import preloaded  # noqa: E402

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture(scope="session")
def openai_server():
    server = FakeOpenAI()
    yield server
    server.close()


@pytest.fixture
def server(openai_server):
    openai_server.reset()
    return openai_server


POSTGRES_ADMIN_URL = os.environ.get("MEMCHAT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_unavailable() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install '.[test]' brings it)"
    try:
        psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        return f"no PostgreSQL at {POSTGRES_ADMIN_URL} ({str(exc).strip().splitlines()[0]}); set MEMCHAT_TEST_POSTGRES"
    return None


@pytest.fixture(scope="session")
def postgres_skip_reason():
    return _postgres_unavailable()


BACKENDS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc):
    """A test runs once on each backend when it asks for `db_url`, itself or through a fixture
    that opens the database (`memory`, `served`, `memchat`, `memchat_script`); any other test runs
    once, and fails if it opens the database after all (see `isolated_env`)."""
    if "db_url" not in metafunc.fixturenames:
        return
    if any("db_url" in mark.args[0] for mark in metafunc.definition.iter_markers("parametrize")):
        return
    backends = ("sqlite",) if metafunc.definition.get_closest_marker("sqlite_only") else BACKENDS
    metafunc.parametrize("db_url", backends, indirect=True)


SLOW_FIXTURES = {"memchat", "memchat_script", "served", "module_server"}
"""Fixtures that start memchat processes (each one imports the package, and litellm for a turn:
seconds; `module_server` is test_conformance's server for a whole module): a test that uses
one is marked `slow`, so `pytest -m "not slow"` is the quick loop."""


def pytest_collection_modifyitems(items):
    misplaced = []
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if SLOW_FIXTURES & fixtures:
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("sqlite_only") and "db_url" not in fixtures:
            misplaced.append(item.nodeid)
    if misplaced:
        raise pytest.UsageError(
            "marked sqlite_only but asking for no database (ask for db_url, or drop the mark): " + ", ".join(misplaced)
        )


@pytest.fixture
def db_url(request, isolated_env, tmp_path, postgres_skip_reason, monkeypatch):
    """A fresh, empty database on one backend (the test runs once per backend), named by
    MEMCHAT_DB for the test and every memchat process it starts."""
    if request.param == "sqlite":
        url = str(isolated_env)
        monkeypatch.setenv("MEMCHAT_DB", url)
        yield url
        return
    if postgres_skip_reason:
        pytest.skip(postgres_skip_reason)
    databases = request.getfixturevalue("postgres_databases")
    name = databases.take()
    try:
        url = f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
        monkeypatch.setenv("MEMCHAT_DB", url)
        yield url
    finally:
        databases.drop(name)


class PostgresDatabases:
    """New, empty PostgreSQL databases for one pytest worker's tests. Making one and dropping
    one take the server a second or more each: a thread of their own makes the next test's
    database while a test runs and drops a used one while the next runs, so no test waits for
    either. Each database is still new and empty when its test begins, and dropped (WITH FORCE,
    as any connection a test left open goes with it) once it ends."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.work = ThreadPoolExecutor(max_workers=1, thread_name_prefix="postgres-databases")
        self.spare: Future | None = None
        self.dropped: list[Future] = []

    def take(self) -> str:
        made = self.spare or self.work.submit(self._create)
        self.spare = self.work.submit(self._create)
        return made.result()

    def drop(self, name: str) -> None:
        self.dropped.append(self.work.submit(self._drop, name))

    def close(self) -> None:
        """Drop the spare, wait for every drop, and raise what any of them raised."""
        if self.spare is not None:
            self.drop(self.spare.result())
        self.work.shutdown(wait=True)
        for done in self.dropped:
            done.result()

    def _create(self) -> str:
        import psycopg

        name = self.prefix + secrets.token_hex(6)
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return name

    def _drop(self, name: str) -> None:
        import psycopg

        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_databases():
    databases = PostgresDatabases("memchat_test_")
    yield databases
    databases.close()


@contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database's URL, the database dropped afterwards."""
    import psycopg

    name = prefix + secrets.token_hex(6)
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def isolated_env(request, monkeypatch, openai_server, tmp_path):
    """No user settings per test, the OpenAI provider pointed at the local fake server, model
    calls retried without waiting, no background server, and MEMCHAT_DB naming a file of the
    test's own. A test that
    does not ask for `db_url` must leave that file unmade: one that opens the database asks for
    it, and so runs on both backends."""
    default_db = tmp_path / "memchat.db"
    monkeypatch.setenv("MEMCHAT_DB", str(default_db))
    monkeypatch.setenv("MEMCHAT_CONFIG", str(tmp_path / "settings" / "config.json"))
    monkeypatch.setenv("MEMCHAT_RETRY_BACKOFF", "0")
    # A background server per test would load litellm beside every test: tests/test_daemon.py
    # turns it on where it is what the test is about.
    monkeypatch.setenv("MEMCHAT_DAEMON", "off")
    monkeypatch.delenv("MEMCHAT_MODEL", raising=False)
    monkeypatch.delenv("MEMCHAT_DEBUG", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    # litellm prefers OPENAI_BASE_URL: both point at the local server, so no test traffic can
    # reach a real endpoint a developer has configured.
    monkeypatch.setenv("OPENAI_API_BASE", openai_server.url)
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)
    for name in ("ANTHROPIC_API_KEY", "MEMCHAT_LEASE_SECONDS", "MEMCHAT_IMPORT_MAX_MIB"):
        monkeypatch.delenv(name, raising=False)
    yield default_db
    if "db_url" not in request.fixturenames and default_db.exists():
        pytest.fail(
            "this test opened the database (MEMCHAT_DB) without asking for it: add the `db_url` fixture "
            "(or `memory`, `memchat`, ...), so it runs on both backends (on SQLite alone if also marked `sqlite_only`)",
            pytrace=False,
        )


@pytest.fixture(autouse=True, scope="session")
def isolated_caches(tmp_path_factory):
    """Tokenizer caches of the developer's machine (a cached llama tokenizer, say) must not change
    what the tests see; and every process the tests start, memchat's included, may connect to
    loopback addresses only (tests/netguard)."""
    home = tmp_path_factory.mktemp("hf-home")
    saved = {name: os.environ.get(name) for name in ("HF_HOME", "HF_HUB_OFFLINE", "PYTHONPATH")}
    os.environ["HF_HOME"] = str(home)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(NETGUARD), saved["PYTHONPATH"]]))
    netguard.install()
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def served(db_url, server):
    """`memchat serve` as a real process on the test's database and local provider."""
    from serving import Served

    running = Served()
    yield running
    running.stop()


@pytest.fixture
def memory(db_url):
    from memchat import Memory

    with Memory() as memory:
        yield memory


@pytest.fixture
def memchat_script(db_url) -> str:
    """The installed `memchat` script's path, for a test that drives it through a terminal or
    signals (pexpect, a pty, Popen); `memchat` runs a command and waits for it."""
    return installed_script()


class MemchatCommand:
    """Runs the installed `memchat` script as a user would, with the test's environment (its
    database, settings and local provider) plus `env`."""

    def __init__(self, script: str):
        self.script = script

    def __call__(self, *args, input=None, env=None, timeout=120, **options) -> subprocess.CompletedProcess:
        """The finished command: `returncode`, `stdout` and `stderr` as text. It runs in a process
        forked from the preloaded interpreter (tests/preloaded.py: no second of litellm's import
        per command; one started with the command's import-time variables) unless its options
        need the installed script itself."""
        environment = {**os.environ, **(env or {})}
        forks = preloaded.server(environment) if set(options) <= {"cwd", "check"} else None
        if forks:
            check, cwd = options.get("check", False), options.get("cwd")
            return preloaded.run(forks, self.script, args, environment, cwd, input, timeout, check)
        return self.installed(*args, input=input, env=env, timeout=timeout, **options)

    def installed(self, *args, input=None, env=None, timeout=120, **options) -> subprocess.CompletedProcess:
        """As `__call__`, always by the installed script in a new interpreter, as users run it."""
        return subprocess.run(
            [self.script, *map(str, args)],
            input=input,
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=timeout,
            **options,
        )

    def shell(self, script: str, *, input=None, env=None, timeout=120, **options) -> subprocess.CompletedProcess:
        """`script` run by bash, as a user types it in a terminal, with the installed memchat
        first on PATH."""
        path = f"{Path(self.script).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        return subprocess.run(
            ["bash", "-c", script],
            input=input,
            capture_output=True,
            text=True,
            env={**os.environ, "PATH": path, **(env or {})},
            timeout=timeout,
            **options,
        )

    def start(self, *args, env=None, **options) -> subprocess.Popen:
        """The command running in the background, its output piped as text unless `options` say
        otherwise."""
        options.setdefault("stdout", subprocess.PIPE)
        options.setdefault("stderr", subprocess.PIPE)
        options.setdefault("text", True)
        return subprocess.Popen([self.script, *map(str, args)], env={**os.environ, **(env or {})}, **options)


@pytest.fixture
def memchat(db_url) -> MemchatCommand:
    """`memchat(*args, input=..., env=..., timeout=...)` runs one memchat command on the test's
    database; the test runs on both backends (mark it `sqlite_only` when no backend changes what
    it checks)."""
    return MemchatCommand(installed_script())

