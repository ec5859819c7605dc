"""A user's task family from a definition: a YAML ``family:`` block, a Python module, a run folder.

Three ways to bring a family the package does not ship (every command that takes a family uses
them through ``--family-file`` / ``--family-module``: ``metadqn train``, ``evaluate``, ``dqn``,
``sweep``, ``families``; ``benchmarks/few_shot.py``):

* **a ``family:`` block in YAML** — in a file given with ``--family-file F.yaml`` (only its
  ``family:`` block is read, so a run's ``config.yaml`` works too) or in the ``--config`` file.
  The block holds the keys of :data:`~metadqn_jax.tasks.family.SPEC_KEYS` (``name`` and
  ``env_id`` required)::

      family:
        name: acrobot-links
        env_id: Acrobot-v1
        ranges: {link_length_1: [0.7, 1.3], link_mass_2: [0.5, 1.5]}
        gamma: 0.99
        budgets: [0, 25, 100, 500, 2000]     # optional: default 0, 1/20, 1/5, 1/2, 1, 2, 4 episodes

* **a Python module** — ``--family-module mypkg.families`` (or a ``.py`` file's path) imports
  it; the module calls :func:`metadqn_jax.tasks.register_family`. This is the way for families
  with code (``sample_fn`` / ``derive``), which YAML cannot hold. The module is recorded
  (:data:`metadqn_jax.tasks.registry.FAMILY_MODULES`) and written into the family's definition.

* **a run folder** — ``metadqn train`` writes the family's full definition
  (:meth:`~metadqn_jax.tasks.family.TaskFamily.to_spec`) as the ``family:`` block of the run's
  ``config.yaml``; :func:`metadqn_jax.runs.record.read_run_config` installs it again, so
  ``metadqn evaluate RUN`` and ``metadqn train --resume RUN`` work in a fresh process with no
  flags (a family with code: its recorded module is imported).

**A definition read from a file wins.** When a ``family:`` block names a family that is already
registered with a different definition (a built-in family changed since the run was trained,
or a user's family named like a built-in one), the file's definition replaces it for this
process and one ``note:`` line on stderr names the fields that differ: a run is always evaluated
and resumed on the tasks it was trained on. An identical definition changes nothing (the
registered object is kept).

Every bad definition is one :class:`~metadqn_jax.core.errors.ConfigError` naming the file (or
module) and the field, e.g. ``acrobot.yaml: family 'acrobot-links': ranges field 'lenght' is not
a field of Acrobot-v1's EnvParams; valid fields: ...``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from metadqn_jax.core.errors import ConfigError
from metadqn_jax.meta.config import check_recommendations
from metadqn_jax.progress import info
from metadqn_jax.runs.yamlio import load_yaml
from metadqn_jax.tasks import TaskFamily, family_spec, registry

__all__ = ["FAMILY_BLOCK", "load_family_file", "import_family_module", "install_definition", "take_family_block",
           "family_block", "family_block_text"]

FAMILY_BLOCK = "family"
_NUMERIC_KEYS = ("ranges", "choices", "base_params", "gamma", "budgets", "split_seed", "num_train", "num_val",
                 "num_test")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _numbers(x: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` as a string: numeric strings in a definition's numeric keys
    become numbers (recursively through lists and mappings)."""
    if isinstance(x, str) and _FLOAT.match(x.strip()):
        return float(x)
    if isinstance(x, list):
        return [_numbers(v) for v in x]
    if isinstance(x, Mapping):
        return {k: _numbers(v) for k, v in x.items()}
    return x


def _normalise(spec: Any) -> Any:
    if not isinstance(spec, Mapping):
        return spec
    return {k: (_numbers(v) if k in _NUMERIC_KEYS else v) for k, v in spec.items()}


# ------------------------------------------------------------------------- modules
def import_family_module(target: str, source: str = "--family-module") -> list[str]:
    """Imports the module ``target`` (a dotted name, found on ``sys.path`` and in the current
    folder; or the path of a ``.py`` file) and returns the names of the families it registers
    (recorded in :data:`~metadqn_jax.tasks.registry.FAMILY_MODULES` with ``target``; a file as
    its absolute path). A module imported before is not run again: its recorded families are
    returned.

    Raises:
      ConfigError: ``source: ...``: the module cannot be found, or importing it raised (its
        message, e.g. a ``TaskFamily`` check).
    """
    is_file = target.endswith(".py") or os.sep in target
    key = str(Path(target).resolve()) if is_file else target
    before = set(registry.FAMILIES)
    try:
        if is_file:
            path = Path(key)
            if not path.is_file():
                raise FileNotFoundError(f"{target!r} is not a Python file")
            name = re.sub(r"\W", "_", path.stem)
            loaded = sys.modules.get(name)
            if loaded is None or getattr(loaded, "__file__", None) != str(path):
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    sys.modules.pop(name, None)
                    raise
        else:
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.append(os.getcwd())  # like 'python -m': modules in the current folder
            importlib.import_module(target)
    except ModuleNotFoundError as e:
        raise ConfigError(f"{source}: cannot import {target!r} ({e}); make it importable (PYTHONPATH) or "
                          "give the path of its .py file") from None
    except FileNotFoundError as e:
        raise ConfigError(f"{source}: {e}") from None
    except Exception as e:  # noqa: BLE001 - the user's module: its error, as one line
        msg = " ".join(str(e).split()) or type(e).__name__
        raise ConfigError(f"{source} {target}: {msg}") from None
    new = [n for n in registry.FAMILIES if n not in before]
    for n in new:
        registry.FAMILY_MODULES[n] = key
    return new or [n for n, m in registry.FAMILY_MODULES.items() if m == key and n in registry.FAMILIES]


# --------------------------------------------------------------------- definitions
def install_definition(spec: Any, source: str, *, note: Callable[[str], None] = info):
    """Builds the family a definition describes and registers it (see the module doc: a
    definition from a file wins over a registered family of the same name, with a note).

    Args:
      spec: the ``family:`` block (a mapping of :data:`~metadqn_jax.tasks.family.SPEC_KEYS`).
      source: where it comes from, for messages (a file's path).
      note: where the note on a replaced definition goes (default: stderr).

    Returns:
      The registered :class:`~metadqn_jax.tasks.TaskFamily` (the one already registered, if
      its definition is the same).

    Raises:
      ConfigError: ``source: <the problem>``, naming the field.
    """
    spec = _normalise(spec)
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{source}: {FAMILY_BLOCK} must be a mapping (name, env_id, ranges, ...), got {spec!r}")
    name = spec.get("name")
    code = spec.get("code") or []
    callables: dict[str, Any] = {}
    if code and isinstance(name, str) and isinstance(code, list):
        registered = registry.FAMILIES.get(name)
        module = spec.get("module")
        if not _has_code(registered, code) and isinstance(module, str):
            import_family_module(module, f"{source}: family {name!r} needs module {module!r}, but")
            registered = registry.FAMILIES.get(name)
        if not _has_code(registered, code):
            what = " and ".join(code)
            why = f"importing {module!r} did not register it" if isinstance(module, str) else \
                "its definition names no module"
            raise ConfigError(f"{source}: family {name!r} has Python code ({what}) that a definition cannot hold "
                              f"and {why}; import the module that registers it with --family-module MODULE")
        callables = {"sample_fn": registered.sample_fn, "derive": registered.derive}
    try:
        family = TaskFamily.from_spec(spec, **callables)
        check_recommendations(family)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{source}: {' '.join(str(e).split())}") from None
    module = spec.get("module") if code else None
    existing = registry.FAMILIES.get(family.name)
    if existing is not None:
        old, new = _comparable(existing.to_spec()), _comparable(family.to_spec())
        if old == new:
            return existing
        fields = [k for k in dict.fromkeys([*old, *new]) if old.get(k) != new.get(k)]
        note(f"note: family {family.name!r}: using the definition in {source}, which differs from the registered "
             f"one in {', '.join(fields)}")
    registry.register_family(family, overwrite=True, module=module if isinstance(module, str) else None)
    return family


def _has_code(family: Any, code: list) -> bool:
    return family is not None and all(getattr(family, part, None) is not None for part in code)


def _comparable(spec: dict) -> dict:
    return {k: v for k, v in spec.items() if k != "module"}


def take_family_block(data: Any, source: str) -> tuple[Any, str | None]:
    """Installs the ``family:`` block of a configuration mapping (a ``--config`` file, a run's
    ``config.yaml``) and returns ``(the mapping without it, the family's name)``; a mapping
    without one is returned as it is, with ``None``."""
    if not isinstance(data, Mapping) or FAMILY_BLOCK not in data:
        return data, None
    rest = {k: v for k, v in data.items() if k != FAMILY_BLOCK}
    return rest, install_definition(data[FAMILY_BLOCK], source).name


def load_family_file(path: str | Path):
    """Installs the family defined by the ``family:`` block of the YAML file ``path`` (other
    keys are ignored, so a run's ``config.yaml`` is a valid family file); returns it.

    Raises:
      ConfigError: an unreadable file, no ``family:`` block, or a bad definition (naming the
        file and the field).
    """
    data = load_yaml(path)
    if not isinstance(data, Mapping) or FAMILY_BLOCK not in data:
        raise ConfigError(f"{path}: a family file needs a '{FAMILY_BLOCK}:' block (name, env_id, ranges, ...)")
    return install_definition(data[FAMILY_BLOCK], str(path))


# ----------------------------------------------------------------- the run folder
def family_block(name: str) -> dict[str, Any]:
    """``{"family": spec}``: the full definition of the registered family ``name``
    (:func:`metadqn_jax.tasks.family_spec`), as written into a run's ``config.yaml``."""
    return {FAMILY_BLOCK: family_spec(name)}


def family_block_text(name: str) -> str:
    """The YAML text of :func:`family_block`, with a comment saying what it is for."""
    text = yaml.safe_dump(family_block(name), sort_keys=False, default_flow_style=None, width=100)
    return ("# family: the task family's full definition (metadqn evaluate / --resume read it: no flags needed\n"
            "# in a fresh process; it wins over a registered family of the same name, with a note)\n" + text)
