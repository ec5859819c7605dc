"""``metadqn families``: the registered task families, one line each or as JSON."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["cmd_families"]


def cmd_families(args: argparse.Namespace, flags: Mapping[str, Any]) -> int:
    """Prints every registered family (``--json``: name, env id, varying fields, discount,
    episode length, split sizes and description); returns 0."""
    from metadqn_jax import tasks

    fams = [tasks.get_family(n) for n in tasks.list_families()]
    if args.json:
        out = [{"name": f.name, "env_id": f.env_id, "varying_fields": list(f.varying_fields),
                "gamma": float(f.gamma), "episode_length": f.episode_length,
                "splits": {s: f.num_tasks(s) for s in ("train", "val", "test")},
                "description": f.describe()} for f in fams]
        print(json.dumps(out, indent=1))
    else:
        for f in fams:
            print(f.describe())
    return 0
