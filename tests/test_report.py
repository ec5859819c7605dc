"""Few-shot result summaries: the paired comparison of two inits evaluated on the same tasks."""

import numpy as np
import pytest

from metadqn_jax import report
from metadqn_jax.fewshot import summarize


def _pair(seed=0, n=100, shift=0.1):
    """Two inits on the same ``n`` tasks (axes [task, budget]); the tasks vary a lot, the inits by ``shift``."""
    rng = np.random.default_rng(seed)
    task = rng.normal(0.0, 2.0, (n, 1)) * np.ones((1, 3))  # shared by both inits: varies a lot
    a = summarize((0, 25, 100), task + rng.normal(0.0, 0.1, (n, 3)) + shift, axes="tb")
    b = summarize((0, 25, 100), task + rng.normal(0.0, 0.1, (n, 3)), axes="tb")
    return a, b


def test_paired_comparison_cancels_the_shared_task_variation():
    a, b = _pair(shift=0.1)
    pr = report.paired(a, b)
    np.testing.assert_allclose(pr.diff, a.mean - b.mean, rtol=1e-12)
    assert np.all(pr.diff_low < 0.1) and np.all(0.1 < pr.diff_high) and np.all(pr.ci95 < 0.05)  # resolved
    assert np.all(pr.significant) and np.all(pr.p_low > 0.5)  # P(a > b) = Φ(0.1 / (0.1 √2)) ≈ 0.76
    assert np.all(a.ci95 > 0.3) and np.all(np.abs(a.mean - b.mean) < a.ci95 + b.ci95)  # unpaired: overlap
    same = report.paired(a, a)
    assert np.all(same.diff == 0) and np.all(same.ci95 == 0) and np.all(same.p_improve == 0.5)


def test_paired_table_bolds_only_resolved_differences_and_skips_baseline_and_oracle():
    a, b = _pair(shift=0.1)
    oracle = summarize((0, 25, 100), np.zeros((100, 3)), axes="tb")
    text = report.paired_table({"maml": a, "pretrained": b, "oracle": oracle}, "pretrained")
    rows = [line for line in text.splitlines() if line.startswith("| maml")]
    assert len(rows) == 1 and rows[0].count("**") == 6  # all three budgets resolved
    assert "oracle" not in text.split("\n", 2)[-1] and "| pretrained |" not in text
    data = report.to_dict({"maml": a, "pretrained": b}, meta_seeds=[0])
    assert np.asarray(data["maml"]["returns"]).shape == (1, 100, 1, 3)  # [meta_seed, task, adapt_seed, budget]
    assert data["axes"] == ["meta_seed", "task", "adapt_seed", "budget"] and data["meta_seeds"] == [0]
    assert "bootstrap" in data["ci_method"] and len(data["maml"]["iqm"]) == 3


def test_paired_comparison_rejects_unpaired_results():
    a, _ = _pair()
    with pytest.raises(ValueError, match="same runs and budgets"):
        report.paired(a, summarize((0, 25, 100), np.zeros((50, 3)), axes="tb"))


def test_cli_verdict_counts_paired_significance_and_falls_back_to_bands():
    from metadqn_jax.app.results import verdict_line

    a, b = _pair(shift=0.1)
    scratch = summarize((0, 25, 100), b.returns - 5.0)
    line = verdict_line({"maml": a, "pretrained": b, "scratch": scratch}, ["maml"])
    assert line.startswith("maml vs. pretrained, scratch: higher mean return at 3/3 budgets")
    assert "95% CI of the difference, paired by task, above 0, at 3/3)" in line  # the unpaired bands overlap
    worse = verdict_line({"maml": summarize((0, 25, 100), b.returns - 0.1), "pretrained": b}, ["maml"])
    assert "higher mean return at 0/3" in worse and "at 0/3)" in worse
    no_runs = {"maml": a._replace(returns=None), "pretrained": b}
    assert "95% CIs separated, at 0/3)" in verdict_line(no_runs, ["maml"])


def test_verdict_is_void_when_a_baseline_did_not_train():
    from metadqn_jax.app.results import verdict_line

    untrained_baselines = report.untrained_baselines

    a, b = _pair(shift=0.1)
    trained = summarize((0, 25, 100), b.returns + 5.0)  # pretrained well above scratch
    assert untrained_baselines({"maml": a, "pretrained": trained, "scratch": b}, ["maml"]) == []
    line = verdict_line({"maml": a, "pretrained": b, "scratch": summarize((0, 25, 100), b.returns + 0.01)}, ["maml"])
    assert line.startswith("VOID comparison: pretrained did not train")  # not above scratch anywhere
    assert "maml vs. pretrained, scratch" in line.splitlines()[1]
    assert untrained_baselines({"maml": a, "pretrained": b}, ["maml"]) == []  # no scratch: nothing to say


def test_profile_plot_is_written(tmp_path):
    a, b = _pair()
    path = report.plot_profile({"maml": a, "pretrained": b}, tmp_path / "profile.png")
    assert path.stat().st_size > 1000
