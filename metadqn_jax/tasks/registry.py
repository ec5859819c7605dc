"""The task-family registry: a dict from name to :class:`~metadqn_jax.tasks.family.TaskFamily`.

:data:`FAMILIES` starts with :data:`~metadqn_jax.tasks.builtin.BUILTIN_FAMILIES` (in that
order); :func:`register_family` adds a user's family. Every function here reads the module
attributes ``FAMILIES`` and ``FAMILY_MODULES`` when called, so a test can swap in copies with
``monkeypatch.setattr(metadqn_jax.tasks.registry, "FAMILIES", dict(...))``.

:data:`FAMILY_MODULES` records, for a family registered by importing a user's module
(``metadqn train --family-module``, :func:`metadqn_jax.runs.families.import_family_module`),
that module: a family with Python code (``sample_fn`` / ``derive``) writes it into its
definition (:meth:`~metadqn_jax.tasks.family.TaskFamily.to_spec`) so that another process can
import it again (:func:`family_spec`).
"""

from __future__ import annotations

from metadqn_jax.tasks.builtin import BUILTIN_FAMILIES
from metadqn_jax.tasks.family import TaskFamily

FAMILIES: dict[str, TaskFamily] = {family.name: family for family in BUILTIN_FAMILIES}
# family name -> the module (a dotted name or a .py file's absolute path) that registered it
FAMILY_MODULES: dict[str, str] = {}


def register_family(family: TaskFamily, *, overwrite: bool = False, module: str | None = None) -> TaskFamily:
    """Adds ``family`` to :data:`FAMILIES` under ``family.name`` (returns it).

    Args:
      family: the family.
      overwrite: replace a registered family of the same name.
      module: the module that registers it (recorded in :data:`FAMILY_MODULES`; written into
        the definition of a family with Python code).

    Raises:
      ValueError: a family of that name is already registered (and not ``overwrite``).
    """
    if not overwrite and family.name in FAMILIES:
        raise ValueError(f"a task family named {family.name!r} is already registered")
    FAMILIES[family.name] = family
    if module is not None:
        FAMILY_MODULES[family.name] = module
    return family


def family_spec(name: str) -> dict:
    """The full definition of the registered family ``name`` as plain data
    (:meth:`~metadqn_jax.tasks.family.TaskFamily.to_spec`, with the module that registered it
    where :data:`FAMILY_MODULES` records one)."""
    return get_family(name).to_spec(module=FAMILY_MODULES.get(name))


def list_families() -> list[str]:
    """Names of the registered task families, in registration order."""
    return list(FAMILIES)


def get_family(name: str) -> TaskFamily:
    """The registered family ``name``.

    Raises:
      ValueError: naming ``name`` and listing the known families.
    """
    if name not in FAMILIES:
        raise ValueError(f"unknown task family {name!r}; known families: {', '.join(FAMILIES)}")
    return FAMILIES[name]
