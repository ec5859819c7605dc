"""Deployment (metadqn_jax.deploy): load_policy / adapt_to_task on a real (tiny) trained run,
and the documented example."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metadqn_jax import ConfigError, TaskFamily, adapt_to_task, deploy, load_policy
from metadqn_jax.checkpoint import FORMAT_POLICY, Checkpointer, CheckpointError

from conftest import TEST_COMPILE_CACHE as CACHE  # noqa: E402

pytestmark = pytest.mark.usefixtures("shared_compile_cache")



@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished ``metadqn train --quick`` run: test_cli's reference run when it exists in this
    session, else one trained here (in-process)."""
    shared = tmp_path_factory.getbasetemp() / "cli_runs" / "full"
    if (shared / "policy" / "pretrained").is_dir() and (shared / "few_shot.json").is_file():
        return shared
    from metadqn_jax import cli

    root = tmp_path_factory.mktemp("deploy_runs")
    rc = cli.main(["train", "--quick", "--baselines", "pretrained", "--out", str(root), "--name", "demo",
                   "--no-progress", "--compile-cache", str(CACHE)])
    assert rc == 0
    return root / "demo"


def test_load_policy(run_dir):
    policy = load_policy(run_dir)
    assert policy.algorithm == "context" and policy.config.algorithm == "context"
    assert policy.obs_shape == (2,) and policy.num_actions == 4
    # the exported meta-parameters are the best ones of the final checkpoint
    exported = Checkpointer(run_dir / "policy" / "context", kind=FORMAT_POLICY).read_arrays()
    final = Checkpointer(run_dir / "checkpoints" / "context").read_arrays(20)
    for path, leaf in jax.tree_util.tree_flatten_with_path(policy.meta_params)[0]:
        name = ".".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)
        assert np.array_equal(np.asarray(leaf), exported[f"params.{name}"])
        assert np.array_equal(np.asarray(leaf), final[f"early_stop.best_params.{name}"])
    # unadapted task parameters: the context of the context encoder starts at zero
    assert np.all(np.asarray(policy.params["ctx"]) == 0) and policy.params["ctx"].shape == (8,)
    # act is pure and jittable, single and batched observations
    obs = jnp.array([[0.0, 0.0], [0.3, -0.2], [-0.5, 0.5]], jnp.float32)
    a = policy.act(policy.params, obs)
    assert a.shape == (3,) and a.dtype == jnp.int32 and np.all((np.asarray(a) >= 0) & (np.asarray(a) < 4))
    assert np.array_equal(jax.jit(policy.act)(policy.params, obs), a)
    assert int(policy.act(policy.params, obs[1])) == int(a[1])
    assert policy.info["step"] == 20 and policy.info["best_step"] in (10, 20)


def test_adapt_to_task(run_dir):
    policy = load_policy(run_dir)
    tasks = policy.family.tasks("test")
    task = jax.tree.map(lambda x: x[0], tasks)
    # budget 0: nothing seen yet, the unadapted parameters
    p0 = adapt_to_task(policy, task, budget=0, key=jax.random.key(1))
    for x, y in zip(jax.tree.leaves(p0), jax.tree.leaves(policy.params)):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    # a budget: the context is inferred from the transitions (same structure, new values)
    p = adapt_to_task(policy, task, budget=10, key=jax.random.key(1))
    assert jax.tree.structure(p) == jax.tree.structure(policy.params)
    assert not np.allclose(np.asarray(p["ctx"]), 0.0)
    again = adapt_to_task(policy, task, budget=10, key=jax.random.key(1))
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(p), jax.tree.leaves(again)))
    # a batch of tasks: one adaptation each (leading axis)
    batch = jax.tree.map(lambda x: x[:3], tasks)
    pb = adapt_to_task(policy, batch, budget=10, key=jax.random.key(2))
    assert pb["ctx"].shape == (3, 8)
    assert policy.act(jax.tree.map(lambda x: x[1], pb), jnp.zeros(2)).shape == ()
    with pytest.raises(ValueError, match="budget must be an integer >= 0"):
        adapt_to_task(policy, task, budget=-1)


def test_adapt_pretrained_gradient_and_finetuning(run_dir):
    """The pretrained init adapts by inner TD steps and then fine-tunes (budget > support size);
    by default its adaptation is guarded (``guard_adaptation``): the unadapted parameters are
    handed out until the adapted ones have won an episode."""
    policy = load_policy(run_dir, "pretrained")
    assert policy.params["ctx"].shape == (0,)
    task = jax.tree.map(lambda x: x[1], policy.family.tasks("test"))
    unadapted = jax.tree.leaves(policy.params["net"])
    guarded = adapt_to_task(policy, task, budget=10, key=jax.random.key(0))  # = support size
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(jax.tree.leaves(guarded["net"]), unadapted))
    plain = dataclasses.replace(policy.few_shot, guard_adaptation=False)
    adapted = adapt_to_task(policy, task, budget=10, key=jax.random.key(0), few_shot=plain)  # adaptation only
    # + 8 steps (2 fine-tuning updates); without the selection guard, which would deploy the
    # adapted parameters until fine-tuning has won an episode
    tuned = adapt_to_task(policy, task, budget=18, key=jax.random.key(0),
                          few_shot=dataclasses.replace(plain, finetune_select=False))
    for leaves in (jax.tree.leaves(adapted["net"]), jax.tree.leaves(tuned["net"])):
        assert any(not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(leaves, unadapted))
    assert any(not np.array_equal(np.asarray(a), np.asarray(b))
               for a, b in zip(jax.tree.leaves(adapted["net"]), jax.tree.leaves(tuned["net"])))


def test_adapt_to_task_refuses_what_is_not_a_task(run_dir):
    """A task of another environment, a dict, None, a batch with mismatched fields or a NaN
    field: one ValueError naming the policy's params class (the trained run's policy)."""
    policy = load_policy(run_dir)
    pool = policy.family.tasks("test")
    task = jax.tree.map(lambda x: x[0], pool)
    cartpole = jax.tree.map(lambda x: x[0], TaskFamily("deploy-cartpole", "CartPole-v1", ranges={"length": (0.3, 1.2)},
                                                       num_train=2, num_val=2, num_test=2).tasks("test"))
    prefix = ("adapt_to_task: env_params must be a PointNavParams (the PointNav-v0 params of the policy's "
              f"family {policy.family.name})")
    for bad in (cartpole, {"goal_x": 0.7}, None, jax.tree.map(lambda x: x[:2], pool).replace(goal_x=task.goal_x),
                task.replace(action_rotation=jnp.float32(jnp.nan))):
        with pytest.raises(ValueError, match=re.escape(prefix)):
            adapt_to_task(policy, bad, budget=10, key=jax.random.key(0))


def test_documented_example_runs(run_dir):
    code = re.search(r"Example .*?::\n\n(.*?)(?:\n\S|\Z)", deploy.__doc__, re.S).group(1)
    code = "\n".join(line[4:] for line in code.splitlines())
    assert 'load_policy("runs/demo")' in code
    scope: dict = {}
    exec(compile(code.replace('"runs/demo"', repr(str(run_dir))), "deploy-example", "exec"), scope)  # noqa: S102
    assert scope["action"].dtype == jnp.int32 and scope["action"].shape == ()
    assert scope["zero_shot"].shape == ()


def test_load_policy_errors(run_dir, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_policy(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"is not a metadqn run directory \(no config.yaml\)"):
        load_policy(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="trained context, pretrained, not 'maml'"):
        load_policy(run_dir, "maml")
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "policy" / "context")
    with pytest.raises(CheckpointError, match="no exported policy for 'context' .*metadqn train --resume"):
        load_policy(copy)
    text = (copy / "config.yaml").read_text().replace("context_dim: 8", "context_dim: 4")
    (copy / "config.yaml").write_text(text)
    with pytest.raises(CheckpointError, match="meta.context_dim is 8 in the checkpoint but 4 in the config"):
        load_policy(copy, "pretrained")


def test_public_api_is_lazy():
    """``import metadqn_jax`` does not import JAX (fast CLI start); names resolve on first use."""
    import subprocess
    import sys

    code = "import sys, metadqn_jax; assert 'jax' not in sys.modules; print(metadqn_jax.__version__)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800)  # a hang guard only
    assert r.returncode == 0, r.stderr
    import metadqn_jax

    assert set(metadqn_jax.__all__) <= set(dir(metadqn_jax))
    assert metadqn_jax.load_policy is load_policy and metadqn_jax.Checkpointer is Checkpointer
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        metadqn_jax.nope  # noqa: B018
