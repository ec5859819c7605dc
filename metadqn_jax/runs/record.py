"""A run folder's ``config.yaml``: writing the resolved configuration with the defaults it used,
and reading it back.

**config.yaml** (:func:`config_text`) records the resolved configuration: settings left unset
that resolve to a default (the algorithm's ``inner_lr`` / ``meta_lr`` / ``random_support``,
the family's ``gamma`` and its ``meta_defaults``) are written with the value used, and listed
under ``defaults_used`` (per algorithm where the trained algorithms' defaults differ; the field
then stays ``null``, or — a field whose default is a value, recommended by the family for one
algorithm, e.g. ``tau`` — holds ``meta.algorithm``'s value, which the record by algorithm includes).
Reading the file back (:func:`read_run_config`, :func:`config_layer`) turns a value still equal
to its recorded default into "not given" again, so a resumed run resolves every algorithm's
defaults exactly as the original did; a folder written before ``defaults_used`` existed reads
as before. The file ends with the task family's full definition (a ``family:`` block,
:mod:`metadqn_jax.runs.families`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from metadqn_jax.core.errors import ConfigError
from metadqn_jax.meta.defaults import ALGORITHM_RESOLVED, DEFAULT_ALGORITHM
from metadqn_jax.runs.configs import TrainConfig
from metadqn_jax.runs.families import family_block_text, take_family_block
from metadqn_jax.runs.folder import os_reason
from metadqn_jax.runs.layout import CONFIG, config_path
from metadqn_jax.runs.yamlio import load_yaml, plain

__all__ = ["DEFAULTS_USED", "config_text", "config_layer", "write_config", "read_run_config"]

DEFAULTS_USED = "defaults_used"


def _defaults_used(cfg: Any) -> dict[str, Any]:
    """``{"section.field": value | {algorithm: value}}``: the fields of a train configuration
    left unset (``None``) that resolve to a default, with the value each trained algorithm uses
    (one value where they all agree)."""
    if getattr(cfg, "COMMAND", None) != "train":
        return {}
    algorithms = tuple(dict.fromkeys((*cfg.run.trained, cfg.meta.algorithm)))
    configs = {a: cfg.meta.rebuilt(algorithm=a) for a in algorithms}  # each algorithm's resolution
    out: dict[str, Any] = {}

    def record(name: str, over: tuple[str, ...], value_of) -> None:
        # one value where the algorithms agree, else {algorithm: value}
        sections = cfg.field_section(name)
        if not sections or f"{sections[0]}.{name}" in out:
            return
        values = {a: plain(value_of(configs[a])) for a in over}
        distinct = {repr(v) for v in values.values()}
        out[f"{sections[0]}.{name}"] = next(iter(values.values())) if len(distinct) == 1 else values

    # the algorithm-dependent fields and gamma, left unset (resolved on use), by trained algorithm
    for name in (*ALGORITHM_RESOLVED, "gamma"):
        if getattr(cfg.meta, name) is None:
            record(name, cfg.run.trained, lambda c, n=name: c.setting(n))
    # the task family's recommendations (TaskFamily.meta_defaults_for each algorithm) that filled
    # unset fields; by algorithm (the base's included: the value the file holds) where they differ
    for name in dict.fromkeys(n for c in configs.values() for n in c.family_defaults_used):
        record(name, algorithms, lambda c, n=name: getattr(c, n))
    return out


class _Filled:
    """A configuration's ``to_dict()`` with other values, for its class's ``to_yaml`` (same format)."""

    def __init__(self, cfg: Any, data: dict[str, Any]):
        self.COMMAND, self.SECTIONS, self._data = cfg.COMMAND, cfg.SECTIONS, data

    def to_dict(self) -> dict[str, Any]:
        return self._data


def _family_name(cfg: Any) -> str | None:
    """The task family a configuration uses: ``meta.family`` (train), ``run.family`` (dqn)."""
    for attr in ("meta", "run"):
        name = getattr(getattr(cfg, attr, None), "family", None)
        if isinstance(name, str):
            return name
    return None


def config_text(cfg: Any) -> str:
    """The text of ``config.yaml`` for ``cfg``: ``cfg.to_yaml()`` with the defaults it used
    filled in and listed under ``defaults_used`` (train configurations; see the module doc),
    then the ``family:`` block: the full definition of the task family it uses
    (:func:`metadqn_jax.runs.families.family_block_text`)."""
    name = _family_name(cfg)
    if name is None:
        return _config_text(cfg)
    return _config_text(cfg) + family_block_text(name)


def _config_text(cfg: Any) -> str:
    used = _defaults_used(cfg)
    if not used:
        return cfg.to_yaml()
    data = cfg.to_dict()
    for key, value in used.items():
        section, field = key.split(".")
        if not isinstance(value, dict):
            data[section][field] = value
    text = type(cfg).to_yaml(_Filled(cfg, data))
    block = yaml.safe_dump({DEFAULTS_USED: used}, sort_keys=False, default_flow_style=None, width=100).rstrip()
    return (text + "# defaults_used: the settings above that were not given and took a default (the algorithm's,\n"
            "# the family's), by algorithm where the trained algorithms' defaults differ (the field above\n"
            "# then stays null, or holds the value of meta's own algorithm, maml unless set, listed too).\n"
            "# Reading this file treats a field still equal to its default as not given.\n"
            + block + "\n")


def config_layer(data: Mapping[str, Any], source: str = CONFIG) -> dict[str, Any]:
    """A configuration layer from the mapping of a ``config.yaml`` (or a ``--config`` file
    made from one): without its ``defaults_used`` block, and without every field whose value
    still equals the default recorded there (not given: it resolves to that default again).

    Raises:
      ConfigError: ``defaults_used`` is not a mapping of ``section.field`` names.
    """
    if DEFAULTS_USED not in data:
        return dict(data)
    data = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data.items()}
    used = data.pop(DEFAULTS_USED)
    if used is None:
        return data
    if not isinstance(used, Mapping) or not all(isinstance(k, str) and k.count(".") == 1 for k in used):
        raise ConfigError(f"{source}: {DEFAULTS_USED} must be a mapping of section.field names to values, "
                            f"got {used!r}")
    meta = data.get("meta")
    algorithm = meta.get("algorithm") if isinstance(meta, Mapping) else None
    for key, default in used.items():
        section, field = key.split(".")
        values = data.get(section)
        if not isinstance(values, dict) or field not in values:
            continue
        if isinstance(default, Mapping):  # by algorithm: the file holds meta.algorithm's value
            if algorithm is None:  # (the train command has none)
                algorithm = DEFAULT_ALGORITHM
            if algorithm not in default:
                continue
            default = default[algorithm]
        value = values[field]
        if value is not None and type(value) is type(default) and value == default:
            del values[field]  # not given: resolves to the same default again
    return data


def write_config(run_dir: str | Path, cfg: Any) -> Path:
    """Writes ``config.yaml`` (:func:`config_text`) into ``run_dir`` atomically (temporary
    file + rename), creating the folder if needed; returns the file's path.

    Raises:
      ConfigError: the file cannot be written (naming it and why).
    """
    path = config_path(run_dir)
    tmp = path.with_name(path.name + ".tmp")
    try:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        tmp.write_text(config_text(cfg))
        tmp.replace(path)
    except OSError as e:
        raise ConfigError(f"cannot write {str(path)!r} ({os_reason(e)})") from None
    return path


def read_run_config(run_dir: str | Path, cls: Any = None):
    """The resolved configuration saved in ``run_dir/config.yaml`` (:func:`config_layer`: the
    defaults it recorded count as not given). Its ``family:`` block (the task family's full
    definition) is installed first (:func:`metadqn_jax.runs.families.take_family_block`), so a
    run of a user's family reads back in a fresh process; a folder written before the block
    existed needs its family registered.

    Args:
      run_dir: a run folder.
      cls: the command configuration class expected (default
        :class:`~metadqn_jax.runs.configs.TrainConfig`).

    Raises:
      ConfigError: the folder does not exist, is not a metadqn run folder, or is a run of
        another command; or its config.yaml is invalid.
    """
    cls = TrainConfig if cls is None else cls
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        if run_dir.exists():
            raise ConfigError(f"{str(run_dir)!r} is not a run folder (it is a file)")
        raise ConfigError(f"run directory {str(run_dir)!r} does not exist")
    path = config_path(run_dir)
    if not path.is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a metadqn run directory (no config.yaml)")
    data = load_yaml(path)
    command = data.get("command")
    if command != cls.COMMAND:
        raise ConfigError(f"{str(run_dir)!r} is a 'metadqn {command}' run, not a 'metadqn {cls.COMMAND}' run")
    data, _ = take_family_block(data, str(path))
    return cls.resolve(config_layer(data, str(path)))
