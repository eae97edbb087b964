"""Persistence: the only package that opens database sessions."""
