"""Pieces shared by the command bodies: the compilation cache, the family options, and the
resolution of a command's configuration from its layers."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax

from metadqn_jax import envs
from metadqn_jax.core.compile import compile_options, fast_options
from metadqn_jax.core.errors import ConfigError
from metadqn_jax.meta.step import memory_bytes
from metadqn_jax.progress import info
from metadqn_jax.runs.families import import_family_module, load_family_file
from metadqn_jax.runs.record import config_layer
from metadqn_jax.runs.yamlio import load_yaml, parse_overrides

__all__ = ["info", "configure_jax", "apply_family_options", "compiling", "resolve_config", "with_oracle",
           "check_unchanged"]


def configure_jax(args: argparse.Namespace) -> None:
    """Turns on the persistent XLA compilation cache (``--compile-cache``,
    ``--no-compile-cache``; default ``$METADQN_COMPILE_CACHE``, else ``$JAX_COMPILATION_CACHE_DIR``,
    else ``~/.cache/metadqn_jax/xla``). An unwritable folder means no cache, not an error."""
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


def apply_family_options(args: argparse.Namespace, flags: dict[str, Any] | None = None,
                         key: str = "meta.family") -> str | None:
    """Installs the families of ``--family-module`` and ``--family-file`` (in that order) and,
    unless ``flags`` already sets ``key`` (``"section.field"``, e.g. ``meta.family`` or
    ``run.family``), sets it there to the family they define.

    Returns:
      The name of that family (``None`` without either option).

    Raises:
      ConfigError: a bad module or file; a module that registers several families without
        ``--family`` naming one.
    """
    chosen: str | None = None
    module = getattr(args, "family_module", None)
    if module:
        names = import_family_module(module)
        if len(names) == 1:
            chosen = names[0]
        elif len(names) > 1:
            chosen = ""  # ambiguous: --family must say
            ambiguous = names
        else:
            chosen = None
    path = getattr(args, "family_file", None)
    if path:
        chosen = load_family_file(path).name
    if flags is None:
        return chosen or None
    section, field = key.split(".", 1)
    if (flags.get(section) or {}).get(field) is not None:
        return flags[section][field]
    if chosen == "":
        raise ConfigError(f"--family-module {module} registers several families ({', '.join(ambiguous)}); "
                          "choose one with --family")
    if chosen:
        flags.setdefault(section, {})[field] = chosen
    return chosen or None


def compiling(fast: bool):
    """The block in which a command builds its programs: with ``fast`` (its ``fast_compile``
    setting) compiled for compilation speed (:func:`metadqn_jax.core.compile.fast_options`), else
    with XLA's defaults."""
    return compile_options(fast_options() if fast else None)


def resolve_config(cls, args: argparse.Namespace, flags: Mapping[str, Any], default_layer: Mapping[str, Any],
                   quick_layer: Mapping[str, Any] | None):
    """A command's configuration ``cls`` from its layers, later winning: ``default_layer``,
    ``quick_layer`` (with ``--quick``), the ``--config`` file (its ``defaults_used`` read as
    by :func:`metadqn_jax.runs.record.config_layer`; its ``family:`` block installed, and for
    ``train`` / ``dqn`` chosen as ``meta.family`` / ``run.family`` unless the file sets one:
    :func:`metadqn_jax.runs.families.take_family_block`), the command-line ``flags`` (the layer
    of the options given), then the ``--set`` overrides.

    Raises:
      ConfigError: an unreadable config file, an unknown field, or an invalid value.
    """
    layers = [default_layer]
    if getattr(args, "quick", False):
        layers.append(quick_layer)
    if getattr(args, "config", None):  # a run's config.yaml is a valid --config file
        data = cls.take_family(load_yaml(args.config), str(args.config))  # here: its errors name the file
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


def available_memory_bytes() -> int | None:
    """The memory a run may use now: the host's available memory (``MemAvailable`` of
    ``/proc/meminfo``, else the free physical pages) and, on an accelerator, the first device's
    limit (``memory_stats()["bytes_limit"]``), whichever is smaller; ``None`` if unknown."""
    limits = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except OSError:
        try:
            limits.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    device = jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            limits.append(int(stats["bytes_limit"]))
    return min(limits) if limits else None


def check_memory(meta_cfg, meta_seeds: int, force: bool) -> None:
    """Refuses a meta-training configuration whose estimated memory
    (:func:`metadqn_jax.meta.step.memory_bytes`, × ``meta_seeds``) exceeds
    :func:`available_memory_bytes`, before any compute, unless ``force``.

    Raises:
      ConfigError: one line with the estimate, its parts and the memory available.
    """
    env, params = meta_cfg.task_family.env()
    est = memory_bytes(meta_cfg, envs.obs_shape(env, params), envs.num_actions(env, params))
    need = est["total_bytes"] * meta_seeds
    avail = available_memory_bytes()
    if force or avail is None or need <= avail:
        return
    gib = 2.0 ** 30
    raise ConfigError(
        f"this configuration needs about {need / gib:.1f} GiB ({meta_seeds} meta-seed(s) x: replay "
        f"{est['replay_bytes'] / gib:.2f}, parameters and optimiser {4 * est['parameter_bytes'] / gib:.2f}, "
        f"temporaries {est['activation_bytes'] / gib:.2f} GiB) but {avail / gib:.1f} GiB are available; lower "
        f"meta.num_tasks, meta.buffer_size, meta.hidden or run.meta_seeds (--force: try anyway)")

