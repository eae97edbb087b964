"""`memchat serve`: the memory over HTTP (the server stack is imported only by this command)."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from memchat.cli.app import app, operator_memory_of
from memchat.cli.render import note
from memchat.config import (
    DEFAULT_DB_TIMEOUT,
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_PENDING,
    DEFAULT_READ_TIMEOUT,
    database_url,
    hand_to_workers,
    set_db_timeout,
)
from memchat.errors import InvalidInput


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", metavar="ADDRESS", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, metavar="PORT", help="Port to listen on.")] = 8765,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, metavar="N", help="Worker processes.")] = 1,
    max_body: Annotated[
        int,
        typer.Option("--max-body", min=1024, metavar="BYTES", help="Largest request body accepted (larger: 413)."),
    ] = DEFAULT_MAX_BODY,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            min=1.0,
            max=86_400.0,
            metavar="SECONDS",
            help="Seconds a turn's model call may take (then 504).",
        ),
    ] = 120.0,
    busy_wait: Annotated[
        float,
        typer.Option(
            "--busy-wait",
            min=0.0,
            max=86_400.0,
            metavar="SECONDS",
            help="Seconds a turn waits for another turn on its conversation (then 409).",
        ),
    ] = 60.0,
    read_timeout: Annotated[
        float,
        typer.Option(
            "--read-timeout",
            min=1.0,
            max=3600.0,
            metavar="SECONDS",
            help="Seconds a client may take to send a request's headers (then the connection is closed) "
            "or pause while sending its body (then 408).",
        ),
    ] = DEFAULT_READ_TIMEOUT,
    db_timeout: Annotated[
        float,
        typer.Option(
            "--db-timeout",
            min=1.0,
            max=86_400.0,
            metavar="SECONDS",
            help="Seconds a database statement may wait (for a lock, for an answer) before its request fails (then 503).",
        ),
    ] = DEFAULT_DB_TIMEOUT,
    max_pending: Annotated[
        int,
        typer.Option(
            "--max-pending",
            min=1,
            max=100_000,
            metavar="N",
            help="Requests a worker process takes on at once; more get 503 with Retry-After at once.",
        ),
    ] = DEFAULT_MAX_PENDING,
    log_level: Annotated[
        str, typer.Option("--log-level", metavar="LEVEL", help="critical, error, warning, info or debug.")
    ] = "info",
    without_keys: Annotated[
        bool,
        typer.Option(
            "--without-keys",
            help="Answer requests without a key while no key is live, on a database that has had keys "
            "(they see every conversation; 127.0.0.1 only). Without it, such a database refuses them.",
        ),
    ] = False,
):
    """Serve the memory over HTTP: OpenAI's Conversations, Responses and Chat Completions APIs at
    /v1 (any OpenAI client, base URL http://HOST:PORT/v1), docs at /docs, /healthz, /metrics."""
    set_db_timeout(db_timeout)
    if log_level not in ("critical", "error", "warning", "info", "debug"):
        raise InvalidInput(f"--log-level: {log_level!r} is not one of critical, error, warning, info, debug")
    memory = operator_memory_of(ctx).prepare()  # a bad --db fails here, in one line, before anything listens
    location = memory.database_location()
    beyond_loopback = not is_loopback(host)
    keys = memory.keys()
    live = any(key.revoked_at is None for key in keys)
    if beyond_loopback and without_keys:
        raise InvalidInput(
            f"--without-keys: only on a loopback address, not {host}: anyone who can reach it could read every conversation"
        )
    if beyond_loopback and not live:
        raise InvalidInput(
            f"refusing to listen on {host} without API keys: anyone who can reach it could read every "
            "conversation; make one with `memchat key create NAME`, or listen on 127.0.0.1"
        )
    if keys and not live and not without_keys:
        note(
            "no API key is live: requests are refused (401) until `memchat key create NAME`, or serve with --without-keys"
        )
    hand_to_workers(
        database=database_url(ctx.find_root().obj["db"]),
        max_body=max_body,
        keys_required=beyond_loopback,
        without_keys=without_keys,
        turn_timeout=timeout,
        busy_wait=busy_wait,
        read_timeout=read_timeout,
        max_pending=max_pending,
        separate_metrics=workers > 1,
    )
    import uvicorn

    note(f"serving {location} at http://{host}:{port}/v1 (API docs: http://{host}:{port}/docs)")
    uvicorn.run(
        "memchat.server.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=True,
        server_header=False,
        http="memchat.server.deadlines:HeadDeadlineProtocol",
    )
