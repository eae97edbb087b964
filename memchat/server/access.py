"""Who may use the server, and which memory a request sees."""

from __future__ import annotations

from fastapi import Request

from memchat.api import Memory


def memory_of(request: Request) -> Memory:
    """The Memory this request works on."""
    return request.app.state.memory
