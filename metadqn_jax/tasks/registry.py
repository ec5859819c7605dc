"""The task-family registry: a dict from name to :class:`~metadqn_jax.tasks.family.TaskFamily`.

:data:`FAMILIES` starts with :data:`~metadqn_jax.tasks.builtin.BUILTIN_FAMILIES` (in that
order); :func:`register_family` adds a user's family. Every function here reads the module
attribute ``FAMILIES`` when called, so a test can swap in a copy with
``monkeypatch.setattr(metadqn_jax.tasks.registry, "FAMILIES", dict(...))``.
"""

from __future__ import annotations

from metadqn_jax.tasks.builtin import BUILTIN_FAMILIES
from metadqn_jax.tasks.family import TaskFamily

FAMILIES: dict[str, TaskFamily] = {family.name: family for family in BUILTIN_FAMILIES}


def register_family(family: TaskFamily, *, overwrite: bool = False) -> TaskFamily:
    """Adds ``family`` to :data:`FAMILIES` under ``family.name`` (returns it).

    Raises:
      ValueError: a family of that name is already registered (and not ``overwrite``).
    """
    if not overwrite and family.name in FAMILIES:
        raise ValueError(f"a task family named {family.name!r} is already registered")
    FAMILIES[family.name] = family
    return family


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
