"""The one exception type for bad user input (shown as a single line, never a deep stack trace)."""

from __future__ import annotations


class RoleVecError(ValueError):
    """Invalid argument, file or configuration; the message names the argument and its valid values."""
