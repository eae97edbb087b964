import os
import shutil
import sys
from pathlib import Path

import pytest

from fake_openai import FakeOpenAI

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


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch, openai_server):
    """A fresh database per test, and the OpenAI provider pointed at the local fake server."""
    db = tmp_path / "memchat.db"
    monkeypatch.setenv("MEMCHAT_DB", str(db))
    monkeypatch.delenv("MEMCHAT_MODEL", raising=False)
    monkeypatch.delenv("MEMCHAT_DEBUG", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_API_BASE", openai_server.url)
    return db


@pytest.fixture
def memory(isolated_env):
    from memchat import Memory

    with Memory() as memory:
        yield memory


@pytest.fixture(scope="session")
def memchat_script() -> str:
    """The `memchat` console script installed beside this Python."""
    candidate = Path(sys.executable).parent / "memchat"
    found = str(candidate) if candidate.exists() else shutil.which("memchat")
    if not found:
        pytest.fail("the memchat script is not installed: pip install '.[test]' first")
    return found
