"""Start-up cost of the ``metadqn`` command: CPU time (user + system) of the commands a person
types first, which must not import JAX or gymnax (issue 15's target: <= 0.5 s CPU each).

    python benchmarks/startup.py [--repeats 5] [--out startup.json]

Each command runs ``--repeats`` times in a fresh process; the table shows the median and the
worst CPU time (children's ``resource.getrusage``), and whether JAX was imported
(``python -X importtime``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

COMMANDS = (["--help"], ["train", "--help"], ["evaluate", "--help"], ["dqn", "--help"], ["regress", "--help"],
            ["families"], ["families", "--json"])
TARGET_S = 0.5


def cpu_seconds(argv: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "metadqn_jax", *argv], check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def imports_jax(argv: list[str]) -> bool:
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "metadqn_jax", *argv], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return any(line.split("|")[-1].strip() in ("jax", "gymnax") for line in p.stderr.splitlines())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=None, help="also write the rows as JSON")
    args = p.parse_args(argv)
    rows = []
    for cmd in COMMANDS:
        times = sorted(cpu_seconds(cmd) for _ in range(args.repeats))
        rows.append({"command": "metadqn " + " ".join(cmd), "median_cpu_s": round(times[len(times) // 2], 3),
                     "max_cpu_s": round(times[-1], 3), "imports_jax": imports_jax(cmd)})
    print(f"| command | CPU s (median of {args.repeats}) | worst | imports jax/gymnax | <= {TARGET_S} s |")
    print("|---|---:|---:|---|---|")
    for r in rows:
        ok = "yes" if r["median_cpu_s"] <= TARGET_S else "NO"
        print(f"| `{r['command']}` | {r['median_cpu_s']:.3f} | {r['max_cpu_s']:.3f} | {r['imports_jax']} | {ok} |")
    if args.out:
        args.out.write_text(json.dumps({"python": sys.version.split()[0], "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
