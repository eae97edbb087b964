import os
import secrets
import sys
from pathlib import Path

import pytest

from fake_openai import FakeOpenAI

NETGUARD = Path(__file__).parent / "netguard"
sys.path.insert(0, str(NETGUARD))
import netguard  # noqa: E402

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


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path, postgres_skip_reason):
    """A fresh, empty database per test, on each backend memchat supports."""
    if request.param == "sqlite":
        yield str(tmp_path / "memchat.db")
        return
    if postgres_skip_reason:
        pytest.skip(postgres_skip_reason)
    import psycopg

    name = "memchat_test_" + secrets.token_hex(6)
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def isolated_env(db_url, monkeypatch, openai_server, tmp_path):
    """A fresh database and no user settings per test, and the OpenAI provider pointed at the
    local fake server."""
    db = db_url
    monkeypatch.setenv("MEMCHAT_DB", db)
    monkeypatch.setenv("MEMCHAT_CONFIG", str(tmp_path / "settings" / "config.json"))
    monkeypatch.delenv("MEMCHAT_MODEL", raising=False)
    monkeypatch.delenv("MEMCHAT_DEBUG", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    # litellm prefers OPENAI_BASE_URL: both point at the local server, so no test traffic can
    # reach a real endpoint a developer has configured.
    monkeypatch.setenv("OPENAI_API_BASE", openai_server.url)
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)
    for name in ("ANTHROPIC_API_KEY", "MEMCHAT_LEASE_SECONDS", "MEMCHAT_IMPORT_MAX_MIB"):
        monkeypatch.delenv(name, raising=False)
    return db


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
def served(server):
    """`memchat serve` as a real process on the test's database and local provider."""
    from serving import Served

    running = Served()
    yield running
    running.stop()


@pytest.fixture
def memory(isolated_env):
    from memchat import Memory

    with Memory() as memory:
        yield memory


@pytest.fixture(scope="session")
def memchat_script() -> str:
    """The `memchat` console script installed beside this Python."""
    candidate = Path(sys.executable).parent / "memchat"
    if not candidate.exists():
        pytest.fail(f"the memchat script is not installed beside {sys.executable}: pip install '.[test]' first")
    return str(candidate)

