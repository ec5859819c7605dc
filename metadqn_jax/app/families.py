"""``metadqn families``: the registered task families, as a table or as JSON.

The command starts at once: unless the task registry is already loaded (a program, a test or a
module that registered its own family imported it), the built-in families are printed from
plain data (:mod:`metadqn_jax.app.family_table`, generated from the live families by
``python -m metadqn_jax.app.families --write`` and checked by ``tests/test_inputs.py``), without
importing jax or gymnax. With the registry loaded, every registered family is listed, the
user's too (``metadqn families --family-file F.yaml`` / ``--family-module M`` loads it).

Output that a pipe's reader stops reading (``metadqn families | head -3``) ends quietly, the
way Python's documentation on SIGPIPE recommends (exit status 1, no traceback).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pprint
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from metadqn_jax.app.family_table import BUILTIN_FAMILY_ROWS

__all__ = ["cmd_families", "family_row", "family_rows", "render_table", "family_table_source",
           "write_family_table", "TABLE_COLUMNS"]

REGISTRY_MODULE = "metadqn_jax.tasks.registry"
TABLE_PATH = Path(__file__).resolve().parent / "family_table.py"

# (header, row key) of the table columns
TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("FAMILY", "name"),
    ("ENVIRONMENT", "env_id"),
    ("WHAT VARIES", "varies"),
    ("GAMMA", "gamma"),
    ("STEPS", "episode_length"),
    ("DESCRIPTION", "about"),
)


def family_row(family: Any) -> dict[str, Any]:
    """A family as plain data (the JSON object of ``metadqn families --json``).

    Keys: ``name``, ``env_id``, ``varying_fields``, ``gamma``, ``episode_length``, ``splits``
    (train / val / test pool sizes), ``description`` (:meth:`TaskFamily.describe`, one line),
    ``varies`` (:meth:`TaskFamily.describe_varying`), ``about`` (the family's free text),
    ``meta_defaults`` and ``budgets`` (:attr:`TaskFamily.few_shot_budgets`, env steps).
    """
    return {"name": family.name, "env_id": family.env_id, "varying_fields": list(family.varying_fields),
            "gamma": float(family.gamma), "episode_length": family.episode_length,
            "splits": {s: family.num_tasks(s) for s in ("train", "val", "test")},
            "description": family.describe(), "varies": family.describe_varying(),
            "about": " ".join(str(family.description).split()),
            "meta_defaults": {k: list(v) if isinstance(v, tuple) else v for k, v in family.meta_defaults.items()},
            "budgets": list(family.few_shot_budgets)}


def family_rows() -> list[dict[str, Any]]:
    """The rows of every registered family, in registration order.

    Without the registry loaded (``metadqn families`` in a fresh process) nothing can have
    registered a family, so the rows are the generated plain data of the built-in families
    (no jax import); otherwise they are computed from the registry.
    """
    registry = sys.modules.get(REGISTRY_MODULE)
    if registry is None:
        return copy.deepcopy(BUILTIN_FAMILY_ROWS)
    return [family_row(registry.get_family(name)) for name in registry.list_families()]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return " ".join(str(value).split()) or "-"


def render_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as a plain-text table: a header line, then one line per family, columns
    (:data:`TABLE_COLUMNS`) padded to their widest cell and separated by two spaces."""
    cells = [[h for h, _ in TABLE_COLUMNS]] + [[_cell(r[k]) for _, k in TABLE_COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(TABLE_COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells]
    return "\n".join(lines) + "\n"


def _write_stdout(text: str) -> int:
    """Writes ``text`` to stdout; 0, or 1 when the reader has gone (a closed pipe).

    On ``BrokenPipeError`` stdout is pointed at ``os.devnull`` so that the interpreter's final
    flush does not fail again (Python's documentation, "Note on SIGPIPE").
    """
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return 0


def cmd_families(args: argparse.Namespace, flags: Mapping[str, Any]) -> int:
    """Prints every registered family: a table (family, environment, what varies, discount,
    episode length, description) or, with ``--json``, a list of :func:`family_row` objects.

    Returns:
      0, or 1 if stdout was closed before everything was written (e.g. ``| head -3``).
    """
    if getattr(args, "family_file", None) or getattr(args, "family_module", None):
        from metadqn_jax.app.common import apply_family_options  # imports JAX: only when asked

        apply_family_options(args, None)  # loads the registry: every registered family is listed
    rows = family_rows()
    if getattr(args, "json", False):
        return _write_stdout(json.dumps(rows, indent=1) + "\n")
    return _write_stdout(render_table(rows))


# ------------------------------------------------------------------ the generated table
def family_table_source() -> str:
    """The text of :mod:`metadqn_jax.app.family_table` for the current built-in families."""
    from metadqn_jax.tasks.builtin import BUILTIN_FAMILIES  # imports JAX: only to regenerate the table

    rows = [textwrap.indent(pprint.pformat(family_row(f), width=96, sort_dicts=False), "    ")
            for f in BUILTIN_FAMILIES]
    body = "[\n" + "".join(f"{row},\n" for row in rows) + "]"
    return (
        '"""The built-in task families as plain data: what ``[family_row(f) for f in\n'
        'BUILTIN_FAMILIES]`` returns (:func:`metadqn_jax.app.families.family_row`). ``metadqn families``\n'
        "prints it without importing jax.\n\n"
        "Generated by ``python -m metadqn_jax.app.families --write``; do not edit (tests/test_inputs.py\n"
        'checks that it is current).\n"""\n\n'
        f"BUILTIN_FAMILY_ROWS: list[dict] = {body}\n"
    )


def write_family_table(path: str | Path = TABLE_PATH) -> Path:
    """Writes :func:`family_table_source` to ``path`` (default: the module's file)."""
    path = Path(path)
    path.write_text(family_table_source())
    return path


if __name__ == "__main__":  # python -m metadqn_jax.app.families --write
    if sys.argv[1:] == ["--write"]:
        print(write_family_table())
        raise SystemExit(0)
    raise SystemExit("usage: python -m metadqn_jax.app.families --write")
