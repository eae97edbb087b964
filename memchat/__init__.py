"""memchat: persistent conversation memory for LLM applications."""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from memchat.api import Memory  # noqa: E402
from memchat.context import Context  # noqa: E402
from memchat.errors import (  # noqa: E402
    BudgetExceeded,
    InvalidInput,
    LeaseLost,
    MemchatError,
    NotFound,
    ProviderError,
    ReplyCutOff,
    StorageError,
    ThreadBusy,
)
from memchat.turn import Reply  # noqa: E402

__all__ = [
    "BudgetExceeded",
    "Context",
    "InvalidInput",
    "LeaseLost",
    "MemchatError",
    "Memory",
    "NotFound",
    "ProviderError",
    "ReplyCutOff",
    "Reply",
    "StorageError",
    "ThreadBusy",
]
