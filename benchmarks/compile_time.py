"""Where the compile time of a ``metadqn`` command goes: per compiled program, with the
persistent compilation cache off.

    python benchmarks/compile_time.py [--out compile_time.json] [-- train --quick ...]

Runs the ``metadqn`` command (default ``train --quick``) in this process with
``--no-compile-cache --no-progress`` into a temporary ``--out`` and records JAX's own
duration events per program (``jax.monitoring``): tracing (``jaxpr_trace_duration``), lowering
to MLIR (``jaxpr_to_mlir_module_duration``) and XLA compilation
(``backend_compile_duration``), keyed by the jitted function's name. Prints one row per
program name (calls, trace / lower / compile seconds), largest first, the totals and the
command's wall time, so the biggest program is the one to shrink.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "trace_s",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
    "/jax/core/compile/backend_compile_duration": "compile_s",
}


def measure(argv: list[str]) -> dict:
    """Runs ``metadqn ARGV --no-compile-cache --no-progress --out TMP`` in-process; returns
    ``{"wall_s", "programs": [{name, calls, trace_s, lower_s, compile_s}], totals}``."""
    import jax

    from metadqn_jax import cli

    rows: dict[str, dict] = collections.defaultdict(lambda: {"calls": 0, "trace_s": 0.0, "lower_s": 0.0,
                                                             "compile_s": 0.0})

    def listener(event: str, duration: float, **kw):
        col = EVENTS.get(event)
        if col is None:
            return
        row = rows[str(kw.get("fun_name", "?"))]
        row[col] += duration
        if col == "compile_s":
            row["calls"] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        rc = cli.main([*argv, "--no-compile-cache", "--no-progress", "--out", str(Path(tmp) / "runs")])
        wall = time.perf_counter() - t0
    if rc:
        raise SystemExit(f"metadqn {' '.join(argv)} exited {rc}")
    programs = sorted(({"name": k, **v} for k, v in rows.items()), key=lambda r: -r["compile_s"])
    totals = {c: round(sum(r[c] for r in programs), 2) for c in ("trace_s", "lower_s", "compile_s")}
    for r in programs:
        for c in ("trace_s", "lower_s", "compile_s"):
            r[c] = round(r[c], 2)
    return {"command": f"metadqn {' '.join(argv)}", "wall_s": round(wall, 1), "totals": totals,
            "programs": programs}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None, help="also write the result as JSON")
    p.add_argument("--top", type=int, default=15, help="rows to print (largest compile time first)")
    p.add_argument("command", nargs="*", default=["train", "--quick"], help="metadqn arguments (after --)")
    args = p.parse_args(argv)
    res = measure(args.command)
    print(f"{res['command']}: wall {res['wall_s']:.1f} s; trace {res['totals']['trace_s']:.1f} s, "
          f"lower {res['totals']['lower_s']:.1f} s, XLA compile {res['totals']['compile_s']:.1f} s")
    print("| program | compiles | trace (s) | lower (s) | compile (s) |")
    print("|---|---:|---:|---:|---:|")
    for r in res["programs"][: args.top]:
        print(f"| `{r['name']}` | {r['calls']} | {r['trace_s']:.2f} | {r['lower_s']:.2f} | {r['compile_s']:.2f} |")
    if args.out:
        args.out.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
