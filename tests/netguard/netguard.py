"""No network in the tests but loopback: a connection to any other address fails at once.

Installed in the test process by conftest.py, and in every Python process the tests start
(memchat's included) by sitecustomize.py beside this file, which conftest puts on PYTHONPATH.
"""

from __future__ import annotations

import ipaddress
import socket

_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def _loopback(address) -> bool:
    if not isinstance(address, tuple):
        return True  # a Unix socket path: the PostgreSQL socket, say
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


class NetworkBlocked(ConnectionRefusedError):
    pass


def _guarded(original):
    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address):
            raise NetworkBlocked(f"the tests may not connect to {address!r}: loopback only")
        return original(self, address)

    return connect


def install() -> None:
    socket.socket.connect = _guarded(_connect)
    socket.socket.connect_ex = _guarded(_connect_ex)
