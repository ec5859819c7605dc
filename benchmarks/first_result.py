"""Time to a first result: wall time of ``metadqn train --quick`` and of the default
``metadqn train`` with a cold and with a warm persistent XLA compilation cache.

    python benchmarks/first_result.py [--skip-default | --skip-quick] [--out first_result.json]

Cold: a fresh, empty ``--compile-cache`` folder (what a new user's first run pays: mostly
compilation). Warm: the same command again with that folder (what every later run pays). Each
command runs in a fresh process into a temporary ``--out``; the table prints wall seconds and
the warm / cold ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {"train --quick": ["train", "--quick"], "train (default)": ["train"]}


def wall(argv: list[str], cache: Path, out: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "metadqn_jax", *argv, "--no-progress", "--compile-cache", str(cache),
                    "--out", str(out)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--skip-default", action="store_true", help="only the --quick command")
    p.add_argument("--skip-quick", action="store_true", help="only the default command")
    p.add_argument("--out", type=Path, default=None, help="also write the rows as JSON")
    args = p.parse_args(argv)
    rows = []
    for name, cmd in COMMANDS.items():
        if (args.skip_default and "--quick" not in cmd) or (args.skip_quick and "--quick" in cmd):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            cache, out = Path(tmp) / "xla", Path(tmp) / "runs"
            cold = wall(cmd, cache, out)
            warm = wall(cmd, cache, out)
        rows.append({"command": f"metadqn {' '.join(cmd)}", "cold_s": round(cold, 1), "warm_s": round(warm, 1),
                     "load_avg_1min": round(os.getloadavg()[0], 2)})
    print("| command | cold cache (s) | warm cache (s) | warm / cold |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(f"| `{r['command']}` | {r['cold_s']:.1f} | {r['warm_s']:.1f} | {r['warm_s'] / r['cold_s']:.2f} |")
    if args.out:
        args.out.write_text(json.dumps({"rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
