"""Several meta-training seeds as one vmapped program (driver.train_meta with a batch of keys,
compare(meta_seeds=N)): shapes, independence of the seeds, agreement with one-seed runs."""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np

from metadqn_jax.compare import compare
from metadqn_jax.core.tree import tree_where
from metadqn_jax.driver import ValidationConfig, train_meta
from metadqn_jax.fewshot import FewShotConfig
from metadqn_jax.meta import MetaConfig

CFG = MetaConfig(family="pointnav-goal", algorithm="fomaml", num_meta_steps=6, chunk_size=3, num_tasks=4,
                 envs_per_task=1, rollout_steps=5, support_size=5, buffer_size=10, query_batch=8, hidden=(8,),
                 inner_steps=1)
VAL = ValidationConfig(every=3, num_tasks=2)


def test_seed_batched_training_follows_each_seed():
    keys = jax.random.split(jax.random.key(3), 2)
    both = train_meta(CFG, keys, validation=VAL, progress=False)
    assert both.state.step.shape == (2,) and both.early_stop.best_return.shape == (2,)
    assert all(leaf.shape[0] == 2 for leaf in jax.tree.leaves(both.early_stop.best_params))
    assert [row["meta_step"] for row in both.history] == [3, 6]
    seed_params = [jax.tree.map(lambda x, i=i: np.asarray(x[i]), both.state.params) for i in range(2)]
    flat = [np.concatenate([x.ravel() for x in jax.tree.leaves(p)]) for p in seed_params]
    assert not np.allclose(flat[0], flat[1])  # the seeds are different runs
    for i in range(2):  # ... and each is the run its key alone gives (up to batched-kernel round-off)
        alone = train_meta(CFG, keys[i], validation=VAL, progress=False)
        for a, b in zip(jax.tree.leaves(alone.state.params), jax.tree.leaves(seed_params[i])):
            np.testing.assert_allclose(np.asarray(a), b, rtol=2e-4, atol=2e-5)
        np.testing.assert_allclose(float(alone.early_stop.best_return), float(both.early_stop.best_return[i]),
                                   rtol=1e-4, atol=1e-4)


def test_tree_where_picks_whole_seed_rows():
    new = {"w": np.ones((3, 2, 2)), "b": np.ones(3)}
    old = {"w": np.zeros((3, 2, 2)), "b": np.zeros(3)}
    out = tree_where(np.array([True, False, True]), new, old)  # one flag per seed, leading axis
    np.testing.assert_array_equal(out["w"].reshape(3, -1).mean(1), [1, 0, 1])
    np.testing.assert_array_equal(out["b"], [1, 0, 1])
    assert float(tree_where(False, new, old)["w"].sum()) == 0.0  # a scalar flag: the whole tree


def test_compare_with_meta_seeds_keeps_the_seed_axis():
    fs = FewShotConfig(budgets=(0, 5), num_tasks=2, seeds=2, support_size=5, eval_episodes=1)
    # one trained init (pretrained: the cheapest to compile; evaluate_few_shot's seed axis is the
    # same code for every learner) and scratch
    cmp = compare(CFG, ["pretrained"], fs, validation=VAL, oracle=False, progress=False,
                  log=lambda s: None, meta_seeds=3)
    for name in ("pretrained", "scratch"):
        assert cmp.results[name].returns.shape == (3, 2, 2, 2)  # [meta_seed, task, adapt_seed, budget]
    # one guard decision per baseline, on validation tasks, over every meta-seed
    assert set(cmp.guards) == {"pretrained", "scratch"} and cmp.guards["pretrained"].num_tasks == 2
    # budget 0 is the unadapted greedy return: the adaptation seeds of a task agree, the meta-seeds not always
    r0 = cmp.results["scratch"].returns[..., 0]
    assert not np.allclose(r0[0], r0[1]) or not np.allclose(r0[1], r0[2])


def test_seed_batched_training_shards_the_task_axis(tmp_path):
    script = textwrap.dedent(f"""
        import jax, numpy as np
        from metadqn_jax.driver import ValidationConfig, train_meta
        from metadqn_jax.meta import MetaConfig
        cfg = MetaConfig(**{CFG.__dict__!r})
        keys = jax.random.split(jax.random.key(3), 2)
        one = train_meta(cfg, keys, validation=ValidationConfig(every=0), progress=False, num_devices=1)
        four = train_meta(cfg, keys, validation=ValidationConfig(every=0), progress=False, num_devices=4)
        obs = jax.tree.leaves(four.state.buffers)[0]
        assert obs.sharding.spec == jax.sharding.PartitionSpec(None, "tasks"), obs.sharding
        for a, b in zip(jax.tree.leaves(one.state.params), jax.tree.leaves(four.state.params)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-5)
        print("OK")
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert p.returncode == 0 and p.stdout.strip().endswith("OK"), p.stderr[-3000:]
