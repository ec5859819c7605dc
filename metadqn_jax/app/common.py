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
    ``quick_layer`` (with ``--quick``), the ``--config`` file (its ``defaults_used`` read as
    by :func:`metadqn_jax.app.runs.config_layer`; its ``family:`` block installed, and for
    ``train`` / ``dqn`` chosen as ``meta.family`` / ``run.family`` unless the file sets one:
    :func:`metadqn_jax.app.userfamily.take_family_block`), the command-line ``flags`` (the layer
    of the options given), then the ``--set`` overrides.

    Raises:
      ConfigError: an unreadable config file, an unknown field, or an invalid value.
    """
    from metadqn_jax.app.runs import config_layer
    from metadqn_jax.app.yamlio import load_yaml, parse_overrides

    from metadqn_jax.app.userfamily import take_family_block

    layers = [default_layer]
    if getattr(args, "quick", False):
        layers.append(quick_layer)
    if getattr(args, "config", None):  # a run's config.yaml is a valid --config file
        data = load_yaml(args.config)
        if getattr(cls, "FAMILY_SECTION", None) is not None:  # installed here: its errors name the file
            data, family = take_family_block(data, str(args.config))
            section = cls.FAMILY_SECTION
            values = data.get(section) if isinstance(data, dict) else None
            if family is not None and (values is None or isinstance(values, Mapping)) and \
                    (values or {}).get("family") is None:
                data = {**data, section: {**(values or {}), "family": family}}
        layers.append(config_layer(data, str(args.config)))
    layers.append(flags)
    layers.append(parse_overrides(args.set or [], cls))
    return cls.resolve(*layers)


def with_oracle(cfg, args: argparse.Namespace):
    """``cfg`` with ``oracle`` added to ``run.baselines`` when ``--oracle`` is given."""
    if getattr(args, "oracle", False) and "oracle" not in cfg.run.baselines:
        return type(cfg).resolve(cfg.as_layer(), {"run": {"baselines": [*cfg.run.baselines, "oracle"]}})
    return cfg


def check_unchanged(old, new, allowed: Sequence[str], what: str, *, old_name: str = "the run's config.yaml",
                    new_name: str | None = None) -> None:
    """Raises ConfigError naming the first field (outside ``allowed``: ``"section.field"`` or
    ``"section.*"``) where ``new`` differs from ``old``.

    Args:
      old, new: command configurations, or their ``to_dict()`` mappings (then only the fields
        present in both are compared: a record written by an older version may lack some).
      allowed: the fields that may differ.
      what: the message's prefix (``"--resume"``, ``"evaluate"``).
      old_name: where ``old`` comes from (default: the run's config.yaml).
      new_name: where ``new`` comes from (default: what was requested on the command line).
    """
    from metadqn_jax.core.validate import ConfigError

    if isinstance(old, Mapping) or isinstance(new, Mapping):
        diff = _dict_diff(old if isinstance(old, Mapping) else old.to_dict(),
                          new if isinstance(new, Mapping) else new.to_dict(), allowed)
    else:
        diff = old.diff(new, ignore=allowed)
    if diff:
        key, a, b = diff[0]
        if new_name is None:
            raise ConfigError(f"{what}: {key} is {a!r} in {old_name} and cannot change (requested "
                              f"{b!r}); only {', '.join(allowed)} may")
        raise ConfigError(f"{what}: {key} is {a!r} in {old_name} but {b!r} in {new_name}, and it cannot "
                          f"change; only {', '.join(allowed)} may")


def _dict_diff(a: Mapping[str, Any], b: Mapping[str, Any], allowed: Sequence[str]) -> list[tuple[str, Any, Any]]:
    """``[(section.field, a value, b value)]`` for the fields of both ``a`` and ``b`` that differ
    (outside ``allowed``), in ``a``'s order."""
    out = []
    for section, values in a.items():
        if section == "command" or not isinstance(values, Mapping) or f"{section}.*" in allowed:
            continue
        other = b.get(section)
        if not isinstance(other, Mapping):
            continue
        for name, value in values.items():
            key = f"{section}.{name}"
            if key not in allowed and name in other and other[name] != value:
                out.append((key, value, other[name]))
    return out
