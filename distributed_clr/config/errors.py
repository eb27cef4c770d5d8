"""The error of a config key, value or file that cannot be used."""

from __future__ import annotations

from distributed_clr.errors import UserError

__all__ = ["ConfigError"]


class ConfigError(UserError, ValueError):
    """An unknown key, an invalid value, or an unreadable config file."""
