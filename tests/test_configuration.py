"""Configuration: memchat/config.py reads every environment variable memchat reads, each with one
meaning, and imports nothing above it; importing memchat leaves the host process's environment as
it found it; the help formatting's hooks into Typer are where cli/helptext.py expects them."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import memchat
from memchat import config

PACKAGE = Path(memchat.__file__).parent


def test_importing_memchat_leaves_the_environment_unchanged():
    script = (
        "import os\n"
        "before = dict(os.environ)\n"
        "import memchat\n"
        "from memchat import Memory\n"
        "changed = sorted(set(os.environ.items()) ^ set(before.items()))\n"
        "print(changed)\n"
    )
    environment = {name: value for name, value in os.environ.items() if name != "LITELLM_LOCAL_MODEL_COST_MAP"}
    result = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_memchat_loads_litellm_with_its_bundled_cost_map_unless_the_user_chose_otherwise():
    script = "import os\nfrom memchat import llm\nllm.load()\nprint(os.environ.get('LITELLM_LOCAL_MODEL_COST_MAP'))\n"
    environment = {name: value for name, value in os.environ.items() if name != "LITELLM_LOCAL_MODEL_COST_MAP"}
    result = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
    chosen = subprocess.run(
        [sys.executable, "-c", "import os\nfrom memchat import config\nconfig.use_bundled_model_costs()\n"
         "print(os.environ['LITELLM_LOCAL_MODEL_COST_MAP'])\n"],
        env={**environment, "LITELLM_LOCAL_MODEL_COST_MAP": "False"}, capture_output=True, text=True, timeout=60,
    )
    assert chosen.stdout.strip() == "False", chosen.stderr


def test_only_config_reads_the_environment():
    readers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "config.py":
            continue
        text = path.read_text(encoding="utf-8")
        for needle in ("os.environ", "os.getenv", "getenv(", "environ["):
            if needle in text:
                readers.append(f"{path.relative_to(PACKAGE)}: {needle}")
    assert readers == []


def test_config_imports_nothing_of_memchat():
    tree = ast.parse((PACKAGE / "config.py").read_text(encoding="utf-8"))
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    ]
    assert not [name for name in imported if name and name.split(".")[0] == "memchat"]


@pytest.mark.parametrize(
    ("value", "on"), [(None, False), ("", False), ("0", False), ("1", True), ("yes", True), ("true", True)]
)
def test_a_flag_is_on_when_set_to_anything_but_nothing_or_0(monkeypatch, value, on):
    for name in ("MEMCHAT_DEBUG", "MEMCHAT_REQUIRE_KEYS", "MEMCHAT_SERVE_WITHOUT_KEYS"):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert config.debug_enabled() is on
    assert config.serve_keys_required() is on
    assert config.serve_without_keys() is on


HAND_OFF = (
    "MEMCHAT_DB", "MEMCHAT_MAX_BODY", "MEMCHAT_REQUIRE_KEYS", "MEMCHAT_SERVE_WITHOUT_KEYS", "MEMCHAT_SERVE_TIMEOUT",
    "MEMCHAT_SERVE_BUSY_WAIT", "MEMCHAT_SERVE_READ_TIMEOUT", "MEMCHAT_MAX_PENDING", "PROMETHEUS_MULTIPROC_DIR",
)


def test_serve_hands_its_options_to_the_workers_and_they_read_them_back(monkeypatch, tmp_path):
    for name in HAND_OFF:
        monkeypatch.setenv(name, "")  # recorded, so what hand_to_workers sets is undone afterwards
        monkeypatch.delenv(name)
    assert (config.serve_turn_timeout(), config.serve_busy_wait()) == (None, None)
    assert config.serve_read_timeout() == config.DEFAULT_READ_TIMEOUT
    assert (config.serve_max_body(), config.serve_max_pending()) == (config.DEFAULT_MAX_BODY, config.DEFAULT_MAX_PENDING)
    database = f"sqlite:///{tmp_path / 'served.db'}"
    config.hand_to_workers(
        database=database, max_body=1000, keys_required=True, without_keys=False, turn_timeout=12.5,
        busy_wait=None, read_timeout=3.0, max_pending=7, separate_metrics=True,
    )
    assert config.database_from_environment() == database
    assert (config.serve_max_body(), config.serve_max_pending()) == (1000, 7)
    assert (config.serve_keys_required(), config.serve_without_keys()) == (True, False)
    assert (config.serve_turn_timeout(), config.serve_busy_wait(), config.serve_read_timeout()) == (12.5, None, 3.0)
    made = config.metrics_directory()
    assert made and Path(made).is_dir()
    os.rmdir(made)


@pytest.mark.parametrize(("value", "seconds"), [(None, 30.0), ("", 30.0), ("5", 5.0), ("0.1", 30.0), ("x", 30.0)])
def test_a_lease_lasts_what_the_environment_says_within_its_bounds(monkeypatch, value, seconds):
    if value is None:
        monkeypatch.delenv("MEMCHAT_LEASE_SECONDS", raising=False)
    else:
        monkeypatch.setenv("MEMCHAT_LEASE_SECONDS", value)
    assert config.lease_seconds() == seconds


def test_the_help_formatting_overrides_hooks_typer_still_has():
    """cli/helptext.py replaces some of Typer's own help methods (not all of them public API); a
    Typer release that renames one would silently bring back Typer's own help: this says which."""
    import typer.main
    from typer.core import TyperArgument, TyperOption

    from memchat.cli import app, helptext

    for ours, theirs in ((helptext._Option, TyperOption), (helptext._Argument, TyperArgument)):
        for name in vars(ours):
            if not name.startswith("__"):
                assert hasattr(theirs, name), f"typer.core.{theirs.__name__} no longer has {name}"
    say = typer.main.get_command(app).commands["say"]
    options = [param for param in say.params if isinstance(param, TyperOption)]
    assert options and all(hasattr(param, "type_descriptor") for param in options)
    assert all(hasattr(param.type_descriptor, "is_choice") for param in options)
