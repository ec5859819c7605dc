"""The zoo: the development families of ``benchmarks/zoo/`` at the library's derived defaults.

    python benchmarks/zoo.py                                   # every family (hours on a 2-core CPU)
    python benchmarks/zoo.py --families cartpole-cart,pointnav-line
    python benchmarks/zoo.py --table-only                      # the table from the JSON already there

Each family is defined as a user would (a YAML ``family:`` block, or a module that registers
it) and meta-trained with no setting but the family: ``benchmarks/few_shot.py --family-file F
--algorithms context,pretrained`` (3 meta-seeds, 20 held-out test tasks x 5 adaptation seeds,
scratch and the per-task DQN oracle), one JSON per family in ``--out`` (kept: a family whose JSON
is there is not run again). The table checks issue 28's rules on each family:

* **pretrained trains**: its best return is at least half the oracle's above scratch's (on the
  scale oracle - scratch, at the largest budget); if not, every comparison with it is void;
* **meta >= pretrained**: the meta-learned init (context) is nowhere below pretrained beyond the
  paired 95 % interval (task- and meta-seed-resampled, ``paired_vs_pretrained``);
* **near the oracle** (families that need inference): context within 10 % of the oracle after one
  episode, on the scale oracle - scratch.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ZOO = Path(__file__).resolve().parent / "zoo"
# name -> (definition file, whether a task must be inferred from data: one policy cannot serve all)
FAMILIES: dict[str, tuple[str, bool]] = {
    "cartpole-cart": ("cartpole-cart.yaml", False),
    "acrobot-masses": ("acrobot-masses.yaml", False),
    "mountaincar-physics": ("mountaincar-physics.yaml", False),
    "pointnav-line": ("pointnav-line.yaml", True),
    "cartpole-signed-cart": ("cartpole-signed-cart.yaml", True),
    "mountaincar-goal": ("mountaincar-goal.yaml", True),
    "gridgoal-goal": ("gridgoal.py", True),
    "gridgoal-turned": ("gridgoal.py", True),
}
ALGORITHMS = "context,pretrained"


def run_family(name: str, out: Path, extra: list[str]) -> Path:
    """Runs ``benchmarks/few_shot.py`` on one zoo family unless its JSON exists; its path."""
    path = out / f"{name}.json"
    if path.exists():
        return path
    source, _ = FAMILIES[name]
    option = "--family-file" if source.endswith(".yaml") else "--family-module"
    cmd = [sys.executable, str(Path(__file__).resolve().parent / "few_shot.py"), option, str(ZOO / source),
           "--family", name, "--algorithms", ALGORITHMS, "--out", str(path), *extra]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return path


def checks(data: dict, needs_inference: bool) -> dict:
    """Issue 28's rules on one family's few_shot.py JSON (see the module docstring)."""
    budgets = list(data["budgets"])
    mean = {k: np.asarray(data[k]["mean"]) for k in ("context", "pretrained", "scratch", "oracle") if k in data}
    oracle = float(mean["oracle"][-1]) if "oracle" in mean else float("nan")
    scratch = float(mean["scratch"][-1])
    span = oracle - scratch
    pre_best = float(np.max(mean["pretrained"]))
    trains = span > 0 and pre_best - scratch >= 0.5 * span
    diff_high = np.asarray(data["paired_vs_pretrained"]["context"]["diff_high"])
    below = [b for b, hi in zip(budgets, diff_high) if hi < 0]
    steps = data.get("first_episode", {}).get("steps") or [budgets[-1]]  # 1 .. the episode length
    episode = int(max(steps))
    one_ep = budgets.index(episode) if episode in budgets else len(budgets) - 1
    gap = (oracle - float(mean["context"][one_ep])) / span if span > 0 else float("nan")
    return {"pretrained_trains": bool(trains), "below_pretrained_at": below, "gap_one_episode": gap,
            "near_oracle": bool(gap <= 0.10) if needs_inference else None, "episode": budgets[one_ep],
            "oracle": oracle, "scratch": scratch, "pretrained_best": pre_best,
            "pretrained_0": float(mean["pretrained"][0]), "context_0": float(mean["context"][0]),
            "context_one_episode": float(mean["context"][one_ep])}


def table(rows: dict[str, dict]) -> str:
    head = ("| family | inference | scratch | pretrained @0 / best | context @0 / @1 ep | oracle | pretrained trains "
            "| context below pretrained at | gap to oracle @1 ep |")
    lines = [head, "|" + "---|" * 9]
    for name, c in rows.items():
        if c is None:
            lines.append(f"| {name} | | not run | | | | | | |")
            continue
        below = ", ".join(str(b) for b in c["below_pretrained_at"]) or "nowhere"
        near = "" if c["near_oracle"] is None else (" ok" if c["near_oracle"] else " FAIL")
        lines.append(
            f"| {name} | {'yes' if FAMILIES[name][1] else 'no'} | {c['scratch']:.1f} | {c['pretrained_0']:.1f} / "
            f"{c['pretrained_best']:.1f} | {c['context_0']:.1f} / {c['context_one_episode']:.1f} | {c['oracle']:.1f} | "
            f"{'yes' if c['pretrained_trains'] else 'no'} | {below} | "
            f"{100 * c['gap_one_episode']:.0f} %{near} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--families", default=",".join(FAMILIES), help="comma list (default: every zoo family)")
    p.add_argument("--out", type=Path, default=Path("docs/results/zoo"), help="folder of the per-family JSON")
    p.add_argument("--table-only", action="store_true", help="only the table, from the JSON in --out")
    args, extra = p.parse_known_args(argv)
    names = [n.strip() for n in args.families.split(",") if n.strip()]
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        p.error(f"unknown zoo families {unknown}; known: {', '.join(FAMILIES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name in names:
        path = args.out / f"{name}.json"
        if not args.table_only:
            path = run_family(name, args.out, extra)
        rows[name] = checks(json.loads(path.read_text()), FAMILIES[name][1]) if path.exists() else None
    text = ("Zoo families at the library's derived defaults (context vs pretrained; mean over 3 meta-seeds x "
            "20 test tasks x 5 adaptation seeds; budgets in env steps)\n\n" + table(rows) + "\n\n"
            "pretrained trains: its best return (any budget) is at least half the oracle's margin over scratch; "
            "where not, a comparison with it proves little. Below pretrained: budgets where the paired 95 % "
            "interval of context - pretrained lies below 0. Gap: (oracle - context) / (oracle - scratch) after "
            "one episode, for families that need inference (negative: above the oracle).\n")
    print(text)
    (args.out / "zoo.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
