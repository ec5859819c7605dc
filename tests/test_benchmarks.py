"""The benchmark scripts run end to end in their --quick mode."""

import argparse
import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script, argv, monkeypatch):
    monkeypatch.setattr(sys, "argv", [script] + argv)
    mod = runpy.run_path(str(ROOT / "benchmarks" / script), run_name="bench")
    return mod["main"](argv)


def test_few_shot_quick(tmp_path, monkeypatch):
    out = tmp_path / "fs.json"
    # pointnav-rotated, one meta-learner and pretrained: the cheapest smoke test of the script (the
    # gradient learners' few-shot programs are tested in test_meta / test_seeds; pointnav-goal's
    # semi-amortised context and second-order MAML compile several times longer)
    rc = _run("few_shot.py", ["--quick", "--no-oracle", "--family", "pointnav-rotated", "--algorithms",
                              "context,pretrained", "--out", str(out)], monkeypatch)
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["budgets"] == [0, 10, 30]
    for name in ("context", "scratch"):
        assert len(data[name]["mean"]) == 3 and len(data[name]["ci95"]) == 3
        assert all(np.isfinite(v) for v in data[name]["mean"])
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert "| init |" in out.with_suffix(".md").read_text()
    # paired by task against pretrained: every other init but the oracle, every budget
    paired = data["paired_vs_pretrained"]
    assert set(paired) == {"context", "scratch"}
    assert all(len(v["diff_low"]) == len(v["p_improve"]) == 3 for v in paired.values())
    # the default: 3 meta-training seeds (one vmapped program) x 2 tasks x 2 adaptation seeds, 3 budgets
    assert np.asarray(data["context"]["returns"]).shape == (3, 2, 2, 3)
    assert np.asarray(data["scratch"]["returns"]).shape == (3, 2, 2, 3)
    assert data["axes"] == ["meta_seed", "task", "adapt_seed", "budget"] and data["meta_seeds"] == [0, 1, 2]
    assert "bootstrap" in data["ci_method"]
    derived = {"query_source": "adapted", "updates_per_step": 1, "tau": 0.95, "epsilon": 0.5}  # --quick sets the rest
    assert data["family_defaults_used"] == {"context": derived, "pretrained": derived}  # derived, none recommended
    assert (tmp_path / "fs_profile.png").stat().st_size > 10_000
    assert "| init − pretrained |" in out.with_suffix(".md").read_text()
    # the monotonicity check: every init's largest drop between budgets, with its interval
    drops = data["largest_drop"]
    assert set(drops) == {"context", "pretrained", "scratch"}
    for d in drops.values():
        assert d["from"] < d["to"] and d["diff_low"] <= d["diff"] <= d["diff_high"]
        assert d["significant"] == (d["diff_high"] < 0)
    assert "Largest drop from an earlier budget" in out.with_suffix(".md").read_text()
    # the baselines' adaptation guard, chosen on validation tasks (only theirs)
    guards = data["guard_adaptation"]
    assert set(guards) == {"pretrained", "scratch"}
    for g in guards.values():
        assert g["guard"] == (not g["val_adapted"] > g["val_unadapted"]) and g["val_tasks"] > 0
    assert "Adaptation guard, chosen on" in out.with_suffix(".md").read_text()
    # first-episode curves: cumulative return per step of a PointNav episode (25 steps)
    first = data["first_episode"]
    assert first["steps"] == list(range(1, 26))
    assert first["context"]["online"] and not first["pretrained"]["online"]
    for name in ("pretrained", "context"):
        mean = np.asarray(first[name]["mean"])
        assert mean.shape == (25,) and np.all(np.diff(mean) <= 0)  # PointNav rewards are <= 0
    assert (tmp_path / "fs_first_episode.png").stat().st_size > 10_000
    # --plot-only redraws both figures from the JSON alone
    for png in (out.with_suffix(".png"), tmp_path / "fs_first_episode.png"):
        png.unlink()
    assert _run("few_shot.py", ["--out", str(out), "--plot-only"], monkeypatch) == 0
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert (tmp_path / "fs_first_episode.png").stat().st_size > 10_000


def test_context_variants_quick(tmp_path, monkeypatch, capsys):
    out = tmp_path / "cv.json"
    rc = _run("context_variants.py", ["--quick", "--set", "encoder_post=(8,)", "--out", str(out)], monkeypatch)
    assert rc == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    # pointnav-goal recommends context_refine 5: the first episode acts on the refined context
    assert line.startswith("pointnav-goal context {'encoder_post': (8,)}: train ") and "first episode (adapted)" in line
    data = json.loads(out.read_text())
    assert data["sets"] == {"encoder_post": "(8,)"} and len(data["mean"]) == len(data["budgets"])
    assert f"{data['mean'][1]:.2f} ± {data['ci95'][1]:.2f}" in line  # the JSON holds what the line printed
    assert np.asarray(data["returns"]).shape[-1] == len(data["budgets"])


def test_goal_inference_quick(tmp_path, monkeypatch, capsys):
    from metadqn_jax import envs, tasks

    # the script registers an environment and a family: keep them out of the other tests
    monkeypatch.setattr(envs.registry, "_CUSTOM", dict(envs.registry._CUSTOM))
    monkeypatch.setattr(tasks.registry, "FAMILIES", dict(tasks.registry.FAMILIES))
    path = tmp_path / "gi.json"
    assert _run("goal_inference.py", ["--quick", "--out", str(path)], monkeypatch) == 0
    out = capsys.readouterr().out
    rows = [line.split("|")[1:3] for line in out.splitlines() if line.startswith("| 0")]
    returns = {float(d): float(r) for d, r in rows}
    assert returns[0.0] > returns[0.1] > returns[0.3]  # a worse goal estimate costs return
    assert "pointnav-goal-observed: multi-task DQN" in out
    data = json.loads(path.read_text())  # the same figures as JSON
    assert [row["delta"] for row in data["precision"]][:3] == [0.0, 0.01, 0.02]
    assert {float(d): round(r, 2) for d, r in ((x["delta"], x["return"]) for x in data["precision"])} == returns
    assert f"greedy return {data['observed_goal_dqn']['mean']:.2f}" in out and len(data["encoder_rmse"]) == 1


def test_few_shot_set_takes_literals_and_bare_words():
    """``--set`` values are Python literals, or a bare word as a string (``adapt=head``); anything
    else is one parser error naming the item (before any compute)."""
    parse_sets = runpy.run_path(str(ROOT / "benchmarks" / "few_shot.py"), run_name="bench")["parse_sets"]
    p = argparse.ArgumentParser()
    assert parse_sets(p, ["tau=0.995", "adapt=head", "hidden=(8, 8)", "double=False", "huber=false",
                          "dueling=TRUE", "query_source='buffer'"]) == {
        "tau": 0.995, "adapt": "head", "hidden": (8, 8), "double": False, "huber": False, "dueling": True,
        "query_source": "buffer"}
    for bad in (["adapt=two words"], ["tau=0.9.9"], ["not_a_field=1"], ["tau="]):
        with pytest.raises(SystemExit):
            parse_sets(p, bad)


def _zoo_json(context, pretrained, scratch, oracle, diff_high, budgets=(0, 25, 500)):
    rows = {"context": context, "pretrained": pretrained, "scratch": scratch, "oracle": oracle}
    return {"budgets": list(budgets), "first_episode": {"steps": list(range(1, 501))},
            **{k: {"mean": list(v)} for k, v in rows.items()},
            "paired_vs_pretrained": {"context": {"diff_high": list(diff_high)}}}


def test_zoo_table_applies_issue_28s_rules(tmp_path, monkeypatch, capsys):
    """benchmarks/zoo.py: pretrained trains when it is half the oracle's return above scratch;
    context is below pretrained where the paired interval's upper end is below 0; an inference
    family is near the oracle within 10 % of oracle - scratch after one episode."""
    zoo = runpy.run_path(str(ROOT / "benchmarks" / "zoo.py"), run_name="bench")
    good = zoo["checks"](_zoo_json((300, 500, 495), (500, 500, 500), (20, 20, 25), (500,) * 3, (-1, 2, 3)), True)
    assert good["pretrained_trains"] and good["below_pretrained_at"] == [0] and good["near_oracle"]
    assert good["gap_one_episode"] == pytest.approx(5 / 475)
    void = zoo["checks"](_zoo_json((30, 40, 60), (30, 30, 40), (20, 20, 25), (500,) * 3, (1, 1, 1)), False)
    assert not void["pretrained_trains"] and void["below_pretrained_at"] == [] and void["near_oracle"] is None
    (tmp_path / "cartpole-cart.json").write_text(json.dumps(
        _zoo_json((300, 500, 495), (500, 500, 500), (20, 20, 25), (500,) * 3, (-1, 2, 3))))
    assert zoo["main"](["--table-only", "--out", str(tmp_path), "--families", "cartpole-cart,pointnav-line"]) == 0
    out = capsys.readouterr().out
    assert "| cartpole-cart | no | 25.0 | 500.0 / 500.0 | 300.0 / 495.0 | 500.0 | yes | 0 | 1 % |" in out
    assert "| pointnav-line | | not run |" in out and (tmp_path / "zoo.md").exists()
