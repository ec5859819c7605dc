"""The benchmark scripts run end to end in their --quick mode."""

import json
import runpy
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _run(script, argv, monkeypatch):
    monkeypatch.setattr(sys, "argv", [script] + argv)
    mod = runpy.run_path(str(ROOT / "benchmarks" / script), run_name="bench")
    return mod["main"](argv)


def test_few_shot_quick(tmp_path, monkeypatch):
    out = tmp_path / "fs.json"
    rc = _run("few_shot.py", ["--quick", "--no-oracle", "--algorithms", "maml",
                              "--out", str(out)], monkeypatch)
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["budgets"] == [0, 10, 30]
    for name in ("maml", "scratch"):
        assert len(data[name]["mean"]) == 3 and len(data[name]["ci95"]) == 3
        assert all(np.isfinite(v) for v in data[name]["mean"])
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert "| init |" in out.with_suffix(".md").read_text()
