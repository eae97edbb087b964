"""Loaded by every Python process the tests start: loopback connections only (netguard.py)."""

import netguard

netguard.install()
