"""Secrets never reach a message: provider errors can echo the API key or the URL they were
sent to, and those lines end up on terminals, in logs and in bug reports."""

from __future__ import annotations

import re

from memchat.config import secret_values

SECRET_SUFFIXES = ("_API_KEY", "_KEY", "_TOKEN", "_SECRET", "_PASSWORD")
SHORTEST_SECRET = 8
"""Shorter values are too likely to be ordinary words to blank out wherever they appear."""
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]+)@")


def mask_url_passwords(text: str) -> str:
    """`http://user:pass@host` → `http://user:***@host`, wherever a URL stands in `text`."""
    return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


def redact(text: str, *secrets: str | None) -> str:
    """`text` with URL passwords masked and every secret blanked: the values given, and those of
    environment variables named like keys, tokens and passwords."""
    values = {value for value in secrets if value and len(value) >= SHORTEST_SECRET}
    values |= secret_values(SECRET_SUFFIXES, SHORTEST_SECRET)
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, "***")
    return mask_url_passwords(text)
