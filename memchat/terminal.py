"""Stored text is shown to people in terminals, and it may come from anywhere (an import, a
model's reply): control characters in it could set the window title, rewrite what is on the
screen or hide text. Human-readable output shows them as visible escapes instead; JSON and
exports keep every character as it is."""

from __future__ import annotations

import re

_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
"""C0 and C1 controls but tab and newline, DEL, and the bidirectional overrides and isolates."""


def terminal_safe(text: str) -> str:
    """`text` with every control character (ESC, BEL, carriage return, …) written as `\\xNN` or
    `\\uNNNN`, so it prints as seen and never acts on the terminal."""
    return _CONTROLS.sub(_escape, text)


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
