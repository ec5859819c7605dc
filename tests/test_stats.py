"""core.stats: the bootstrap over whole tasks against a brute-force reference, and what it must not do
(count the adaptation seeds of one task as independent samples)."""

import numpy as np
import pytest

from metadqn_jax.core import stats


def _brute_force_bootstrap(runs, n_boot, seed):
    """The hierarchical bootstrap written as plain loops over the same draws."""
    m, t = runs.shape[:2]
    seeds, tasks = stats.bootstrap_indices(m, t, n_boot, seed)
    means, iqms = [], []
    for i in range(n_boot):
        sample = []
        for j in range(m):
            for k in range(t):
                sample.append(runs[seeds[i, j], tasks[i, j, k]].mean(axis=0))  # the task's seeds averaged
        sample = np.array(sample)  # [m * t, B]
        means.append(sample.mean(axis=0))
        srt = np.sort(sample, axis=0)
        cut = len(sample) // 4
        iqms.append(srt[cut:len(sample) - cut].mean(axis=0))
    return (np.percentile(means, [2.5, 97.5], axis=0), np.percentile(iqms, [2.5, 97.5], axis=0))


@pytest.mark.parametrize("shape", [(1, 7, 3, 2), (3, 5, 2, 4)])
def test_bootstrap_matches_brute_force_resampling(shape):
    runs = np.random.default_rng(1).normal(size=shape)
    s = stats.summarize_runs(runs, n_boot=300, seed=4)
    (lo, hi), (qlo, qhi) = _brute_force_bootstrap(runs, 300, 4)
    np.testing.assert_allclose(s.ci_low, lo, rtol=1e-12)
    np.testing.assert_allclose(s.ci_high, hi, rtol=1e-12)
    np.testing.assert_allclose(s.iqm_low, qlo, rtol=1e-12)
    np.testing.assert_allclose(s.iqm_high, qhi, rtol=1e-12)
    np.testing.assert_allclose(s.mean, runs.mean(axis=(0, 1, 2)), rtol=1e-12)


def test_meta_seeds_are_resampled_hierarchically():
    m, t = 4, 6
    seeds, tasks = stats.bootstrap_indices(m, t, 500, 0)
    assert seeds.shape == (500, m) and tasks.shape == (500, m, t)  # tasks[i, j] the same for every j
    assert len(np.unique(seeds)) == m and len(np.unique(tasks)) == t  # both levels are drawn
    # a spread between meta-training seeds widens the interval (seeds are a level of the claim)
    rng = np.random.default_rng(0)
    base = rng.normal(size=(1, t, 2, 1)).repeat(m, axis=0)
    spread = base + np.arange(m)[:, None, None, None] * 3.0
    assert stats.summarize_runs(spread).ci95[0] > 2 * stats.summarize_runs(base).ci95[0]


def test_tasks_shared_by_every_seed_are_resampled_once():
    """The crossed design: three meta-seeds evaluated on the same 20 tasks, the return a pure task
    effect. Resampling tasks independently within each seed (the scheme before 2026-12-08)
    averages that effect over three draws and narrows the interval by about sqrt(3); resampling
    the same tasks for every seed gives the interval of the 20 tasks themselves."""
    rng = np.random.default_rng(0)
    m, t = 3, 20
    task = rng.normal(0.0, 1.0, (1, t, 1, 1)).repeat(m, axis=0)  # [M, T, S, B]: no seed effect
    seeds, tasks = stats.bootstrap_indices(m, t, 4000, 0)
    assert np.all(tasks == tasks[:, :1])  # one task draw per resample, for every seed
    crossed = stats.summarize_runs(task, n_boot=4000).ci95[0]
    alone = stats.summarize_runs(task[:1], n_boot=4000).ci95[0]  # the tasks of one seed
    assert crossed == pytest.approx(alone, rel=0.15)
    per_task = task.mean(axis=2)[..., 0]  # [M, T]
    old = np.array([per_task[seeds[i][:, None], rng.integers(0, t, (m, t))].mean() for i in range(4000)])
    old_ci95 = (np.percentile(old, 97.5) - np.percentile(old, 2.5)) / 2
    assert old_ci95 < 0.7 * crossed  # the independent scheme is too narrow here


def test_adaptation_seeds_of_one_task_are_not_independent_samples():
    # 10 tasks; each task's 5 adaptation seeds return exactly its value (as at budget 0).
    task_values = np.random.default_rng(0).normal(0.0, 1.0, 10)
    one_seed = task_values[None, :, None, None]
    five_seeds = np.repeat(one_seed, 5, axis=2)
    a, b = stats.summarize_runs(one_seed), stats.summarize_runs(five_seeds)
    np.testing.assert_array_equal(a.ci_low, b.ci_low)  # copies of a task add no information
    np.testing.assert_array_equal(a.ci_high, b.ci_high)
    # the formula this replaced, 1.96 sd / sqrt(tasks x seeds), narrows by sqrt(5): that is the flaw
    flat = five_seeds.reshape(-1)
    old = 1.96 * flat.std(ddof=1) / np.sqrt(flat.size)
    assert old < 0.6 * b.ci95[0]


def test_probability_of_improvement_and_performance_profile():
    a = np.array([1.0, 2.0, 3.0, 4.0])[None, :, None, None]
    b = np.array([0.0, 3.0, 3.0, 1.0])[None, :, None, None]
    pr = stats.paired_compare(a, b, n_boot=200)
    assert pr.p_improve[0] == pytest.approx((1 + 0 + 0.5 + 1) / 4)  # ties count 1/2
    assert pr.diff[0] == pytest.approx(0.75) and pr.p_low[0] <= pr.p_improve[0] <= pr.p_high[0]
    # several meta seeds: the per-task Mann-Whitney statistic over meta-seed pairs
    a2 = np.array([[1.0], [3.0]])[:, :, None, None]  # 2 meta seeds, 1 task
    b2 = np.array([[2.0], [0.0]])[:, :, None, None]
    assert stats.paired_compare(a2, b2).p_improve[0] == pytest.approx(3 / 4)
    prof = stats.performance_profile(a, [0.5, 2.5, 10.0])
    np.testing.assert_allclose(prof[:, 0], [1.0, 0.5, 0.0])


def test_iqm_trims_a_quarter_from_each_end_and_axes_are_checked():
    assert stats.iqm(np.array([100.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -100.0])) == pytest.approx(3.5)
    assert stats.as_runs(np.zeros((3, 2)), "tb").shape == (1, 3, 1, 2)
    with pytest.raises(ValueError, match="subsequence"):
        stats.as_runs(np.zeros((3, 2)), "bt")
    with pytest.raises(ValueError, match="3 dimensions"):
        stats.as_runs(np.zeros((3, 2)), "tsb")


def test_largest_drop_finds_a_real_drop_and_ignores_noise():
    """The few-shot monotonicity check: a drop of 10 on every task (noise 1) between budgets 1
    and 2 is found and significant; a flat curve with the same noise is not, even though the
    worst of its 6 budget pairs is picked (the interval is simultaneous over the pairs)."""
    rng = np.random.default_rng(0)
    flats = [rng.normal(size=(3, 20, 2, 4)) for _ in range(20)]
    assert sum(stats.largest_drop(f).significant for f in flats) <= 2  # ~5 % family-wise at most
    flat = flats[0]
    dropped = flat.copy()
    dropped[..., 2:] -= 10.0
    d = stats.largest_drop(dropped)
    assert d.significant and d.beyond_intervals and d.later >= 2 and d.earlier < 2 and -11.0 < d.diff < -9.0
    # the interval is wider than the single pair's paired 95 % interval (simultaneous over 6 pairs)
    p = stats.paired_compare(dropped[..., d.later:d.later + 1], dropped[..., d.earlier:d.earlier + 1])
    assert d.diff == pytest.approx(float(p.diff[0]))
    assert d.diff_high - d.diff_low > float(p.diff_high[0] - p.diff_low[0])
    # against a brute-force loop over the pairs and resamples
    per_task = dropped.mean(axis=2)  # [M, T, B]
    seeds, tasks = stats.bootstrap_indices(3, 20, 10_000, 0)
    boot = per_task[seeds[:, :, None], tasks].reshape(10_000, 60, 4).mean(axis=1)
    lo, hi = np.percentile(boot[:, d.later] - boot[:, d.earlier], [2.5 / 6, 100 - 2.5 / 6])
    assert (d.diff_low, d.diff_high) == pytest.approx((lo, hi))
    assert stats.largest_drop(flat[..., :1]) is None
