"""Bit-for-bit behaviour check: capture the outputs of a fixed set of deterministic commands,
then compare two captures.

    python scripts/behaviour_check.py capture OUT_DIR     # ~8 min on a 2-core CPU
    python scripts/behaviour_check.py compare BEFORE AFTER

``capture`` runs ``benchmarks/few_shot.py --quick`` for every built-in family and
``metadqn train/dqn/regress --quick`` (compilation cache off), each into ``OUT_DIR``.
``compare`` checks that every JSON and CSV value and every array of every orbax checkpoint
(meta-state, exported policy) is *identical* (``==``, not ``allclose``), ignoring only what
measures the clock (keys and columns named ``*wall*``, ``*_s``, ``time``), the run folder
paths printed into the logs and the order of CSV rows (the algorithms of a comparison train at
once and append to one ``metrics.csv``). Exit status 0: identical; 1: the first differences are listed.
Used for refactors that must not change a single number (issue 14).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
FAMILIES = ("pointnav-goal", "pointnav-rotated", "cartpole-physics", "cartpole-flipped")


def _commands(out: Path) -> list[tuple[str, list[str]]]:
    cli = [PY, "-m", "metadqn_jax"]
    runs = str(out / "runs")
    cmds = [(f"fs_{f}", [PY, str(ROOT / "benchmarks/few_shot.py"), "--quick", "--family", f,
                         "--out", str(out / f"fs_{f}.json")]) for f in FAMILIES]
    cmds += [
        ("train", cli + ["train", "--quick", "--out", runs, "--name", "train", "--no-progress", "--no-compile-cache"]),
        ("dqn", cli + ["dqn", "--quick", "--out", runs, "--name", "dqn", "--no-compile-cache"]),
        ("regress", cli + ["regress", "--quick", "--out", runs, "--name", "regress", "--no-progress",
                           "--no-compile-cache"]),
    ]
    return cmds


def capture(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=False)
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=str(ROOT))  # this tree, not an installed copy
    for name, cmd in _commands(out):
        print(f"[{name}] {' '.join(cmd)}", flush=True)
        with open(out / f"{name}.log", "w") as log:
            rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
        if rc:
            print(f"[{name}] exit {rc}; see {out / (name + '.log')}")
            return rc
    return 0


def _clock(key: str) -> bool:
    k = key.lower()
    return "wall" in k or k.endswith("_s") or k in ("time", "train s", "command")


def _diff_json(a, b, path: str, diffs: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if _clock(str(k)):
                continue
            if k not in a or k not in b:
                diffs.append(f"{path}.{k}: only in {'after' if k not in a else 'before'}")
            else:
                _diff_json(a[k], b[k], f"{path}.{k}", diffs)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            diffs.append(f"{path}: length {len(a)} != {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            _diff_json(x, y, f"{path}[{i}]", diffs)
    elif isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return
    elif a != b or type(a) is not type(b):
        diffs.append(f"{path}: {a!r} != {b!r}")


def _diff_csv(a: Path, b: Path, diffs: list[str]) -> None:
    import csv
    # rows in a canonical order: the algorithms of a comparison train at once and append their
    # rows to one metrics.csv as their chunks end, so the file's row order is not a result
    ra, rb = (sorted(csv.DictReader(f.open()), key=lambda r: [v for k, v in r.items() if not _clock(k)])
              for f in (a, b))
    if len(ra) != len(rb):
        diffs.append(f"{a.name}: {len(ra)} rows != {len(rb)}")
    for i, (x, y) in enumerate(zip(ra, rb)):
        keys = [k for k in x if not _clock(k)]
        if sorted(keys) != sorted(k for k in y if not _clock(k)):
            diffs.append(f"{a.name}: columns differ")
            return
        for k in keys:
            if x[k] != y[k]:
                diffs.append(f"{a}: row {i} {k}: {x[k]} != {y[k]}")


def _checkpoint_arrays(step_dir: Path) -> dict:
    # the checkpoint module's own reader: the same names and values for format versions 1 and 2
    # (a plain orbax restore gives typed PRNG keys, which np.asarray refuses, and v1/v2 name leaves differently)
    from metadqn_jax.checkpoint import Checkpointer
    kind = json.loads((step_dir / "meta" / "metadata").read_text())["format"]
    return Checkpointer(step_dir.parent, kind=kind).read_arrays(int(step_dir.name))


def compare(before: Path, after: Path) -> int:
    import numpy as np
    diffs: list[str] = []
    checked = 0
    for fa in sorted(before.rglob("*")):
        rel = fa.relative_to(before)
        fb = after / rel
        if fa.suffix == ".json" and "tb" not in rel.parts:
            if not fb.exists():
                diffs.append(f"{rel}: missing in after")
                continue
            _diff_json(json.loads(fa.read_text()), json.loads(fb.read_text()), str(rel), diffs)
            checked += 1
        elif fa.suffix == ".csv":
            _diff_csv(fa, fb, diffs)
            checked += 1
        elif fa.is_dir() and fa.name == "state" and (fa / "_METADATA").exists():
            xa, xb = _checkpoint_arrays(fa.parent), _checkpoint_arrays(fb.parent)
            if set(xa) != set(xb):
                diffs.append(f"{rel}: leaves differ: {sorted(set(xa) ^ set(xb))[:5]}")
            for k in sorted(set(xa) & set(xb)):
                va, vb = xa[k], xb[k]
                same = va.shape == vb.shape and va.dtype == vb.dtype and (
                    np.array_equal(va, vb, equal_nan=va.dtype.kind == "f") if va.dtype.kind in "fc"
                    else np.array_equal(va, vb))
                if not same:
                    diffs.append(f"{rel}{k}: arrays differ")
            checked += 1
    print(f"compared {checked} files/checkpoints: {len(diffs)} differences")
    for d in diffs[:40]:
        print("  " + d)
    return 1 if diffs else 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "capture":
        return capture(Path(argv[1]))
    if len(argv) == 3 and argv[0] == "compare":
        return compare(Path(argv[1]), Path(argv[2]))
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
