"""Smoke tests of benchmarks/throughput.py (``--quick``) and of the PyTorch reference's maths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = ("tasks", "envs_per_task", "inner_steps", "algorithm", "env_steps_per_s", "meta_steps_per_s",
            "compile_s", "peak_rss_mb", "speedup_vs_loop", "speedup_vs_torch", "fraction_of_rollout_limit")


def test_throughput_quick(tmp_path):
    out = tmp_path / "t.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--quick", "--no-torch",
                           "--no-loop", "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1800)  # a hang guard only
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    result = json.loads(out.read_text())
    (row,) = result["rows"]
    for key in REQUIRED:
        assert key in row, key
    assert row["env_steps_per_s"] > 0 and row["meta_steps_per_s"] > 0 and row["compile_s"] > 0
    assert row["speedup_vs_loop"] is None and row["speedup_vs_torch"] is None  # not measured
    assert 0 < row["fraction_of_rollout_limit"] < 10
    assert row["backend"] == "cpu" and row["device"] == "cpu" and result["machine"]["gpu"] == "none (CPU backend)"
    assert result["failed"] == []
    assert row["xla_argument_mb"] == pytest.approx(row["formula_state_mb"], rel=1e-6)  # memory formula
    assert out.with_suffix(".png").stat().st_size > 0
    assert "| tasks |" in proc.stdout


def _flax_to_torch(net_params):
    import torch

    p = net_params["params"]
    names = [k for k in p if k.startswith("hidden_")] + ["head"]
    out = {}
    for i, name in enumerate(sorted(names[:-1], key=lambda n: int(n.split("_")[1])) + ["head"]):
        out[f"net.{2 * i}.weight"] = torch.tensor(np.asarray(p[name]["kernel"]).T.copy(), requires_grad=True)
        out[f"net.{2 * i}.bias"] = torch.tensor(np.asarray(p[name]["bias"]).copy(), requires_grad=True)
    return out


def test_torch_reference_computes_the_same_meta_gradient():
    """Same Q-network, TD loss, inner SGD step and second-order outer gradient as the library."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("gymnasium")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from torch_maml_dqn import TorchConfig, TorchMAMLDQN

    from metadqn_jax.meta import MetaConfig, make_learner
    from metadqn_jax.core.types import Transition

    cfg = MetaConfig(family="cartpole-physics", algorithm="maml", num_tasks=1, envs_per_task=1, rollout_steps=16,
                     support_size=16, buffer_size=16, query_batch=32, inner_steps=2, hidden=(64, 64))
    hp = cfg.hparams()
    learner = make_learner(cfg, 2, (4,))
    params = learner.init(jax.random.key(0))
    target = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.key(1), x.shape), params)
    rng = np.random.default_rng(0)

    def batch(n):
        return Transition(obs=rng.normal(size=(n, 4)).astype(np.float32), action=rng.integers(0, 2, n).astype(np.int32),
                          reward=np.ones(n, np.float32), next_obs=rng.normal(size=(n, 4)).astype(np.float32),
                          terminated=rng.random(n) < 0.2, truncated=np.zeros(n, bool))

    support, query = batch(16), batch(32)
    grads, m = learner.meta_grad(params, target, (jax.tree.map(jnp.asarray, support), jnp.ones(16, bool)),
                                 (jax.tree.map(jnp.asarray, query), jnp.ones(32, bool)), hp)

    agent = TorchMAMLDQN(TorchConfig(num_tasks=1, envs_per_task=1, rollout_steps=16, query_batch=32, inner_steps=2,
                                     inner_lr=float(hp.inner_lr), gamma=float(hp.gamma)))
    tp, tt = _flax_to_torch(params["net"]), _flax_to_torch(target["net"])

    def as_torch(b):
        return (torch.from_numpy(b.obs), torch.from_numpy(b.action.astype(np.int64)), torch.from_numpy(b.reward),
                torch.from_numpy(b.next_obs), torch.from_numpy(b.terminated.astype(np.float32)))

    loss = agent.outer_loss(tp, tt, as_torch(support), as_torch(query))
    tgrads = torch.func.grad(agent.outer_loss)(tp, tt, as_torch(support), as_torch(query))
    assert float(loss.detach()) == pytest.approx(float(m.query_loss), rel=1e-4, abs=1e-6)
    expected = _flax_to_torch(grads["net"])
    for k, g in tgrads.items():
        np.testing.assert_allclose(g.detach().numpy(), expected[k].detach().numpy(), rtol=1e-3, atol=1e-5, err_msg=k)
