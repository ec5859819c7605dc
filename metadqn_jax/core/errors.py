"""The error every invalid setting raises (plain Python: importing it loads nothing else, so
the command line can raise and catch it before it imports JAX or numpy)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is out of range or inconsistent (one line naming the field)."""
