"""Pieces shared by the command bodies: notes on stderr, the compilation cache, and the
resolution of a command's configuration from its layers.

Imports nothing heavy at module level (``metadqn --help`` imports the command modules).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["info", "configure_jax", "resolve_config", "with_oracle", "check_unchanged"]


def info(msg: str) -> None:
    """Prints a note or progress line on stderr (results go to stdout)."""
    print(msg, file=sys.stderr, flush=True)


def configure_jax(args: argparse.Namespace) -> None:
    """Turns on the persistent XLA compilation cache (``--compile-cache``,
    ``--no-compile-cache``; default ``$METADQN_COMPILE_CACHE``, else ``$JAX_COMPILATION_CACHE_DIR``,
    else ``~/.cache/metadqn_jax/xla``). An unwritable folder means no cache, not an error."""
    import jax

    if getattr(args, "no_compile_cache", False):
        return
    path = getattr(args, "compile_cache", None) or os.environ.get("METADQN_COMPILE_CACHE")
    if not path:
        if jax.config.jax_compilation_cache_dir:
            return  # JAX_COMPILATION_CACHE_DIR is set: respect it
        path = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "metadqn_jax" / "xla"
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # not writable: run without the cache
    jax.config.update("jax_compilation_cache_dir", str(path))


def resolve_config(cls, args: argparse.Namespace, flags: Mapping[str, Any], default_layer: Mapping[str, Any],
                   quick_layer: Mapping[str, Any] | None):
    """A command's configuration ``cls`` from its layers, later winning: ``default_layer``,
    ``quick_layer`` (with ``--quick``), the ``--config`` file, the command-line ``flags``
    (the layer of the options given), then the ``--set`` overrides.

    Raises:
      ConfigError: an unreadable config file, an unknown field, or an invalid value.
    """
    from metadqn_jax.app.yamlio import load_yaml, parse_overrides

    layers = [default_layer]
    if getattr(args, "quick", False):
        layers.append(quick_layer)
    if getattr(args, "config", None):
        layers.append(load_yaml(args.config))
    layers.append(flags)
    layers.append(parse_overrides(args.set or [], cls))
    return cls.resolve(*layers)


def with_oracle(cfg, args: argparse.Namespace):
    """``cfg`` with ``oracle`` added to ``run.baselines`` when ``--oracle`` is given."""
    if getattr(args, "oracle", False) and "oracle" not in cfg.run.baselines:
        return type(cfg).resolve(cfg.to_dict(), {"run": {"baselines": [*cfg.run.baselines, "oracle"]}})
    return cfg


def check_unchanged(old, new, allowed: Sequence[str], what: str) -> None:
    """Raises ConfigError naming the first field (outside ``allowed``: ``"section.field"`` or
    ``"section.*"``) where ``new`` differs from the run's stored config ``old``."""
    from metadqn_jax.core.validate import ConfigError

    diff = old.diff(new, ignore=allowed)
    if diff:
        key, a, b = diff[0]
        raise ConfigError(f"{what}: {key} is {a!r} in the run's config.yaml and cannot change (requested "
                          f"{b!r}); only {', '.join(allowed)} may")
