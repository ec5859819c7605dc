"""rejax 0.1.3 DQN on CartPole-v1 at the configuration quoted in BENCHMARKS.md.

Run by benchmarks/dqn_single_task.py in an interpreter that has rejax installed (rejax pins
its own dependencies, so it lives in its own virtual environment). rejax 0.1.3 unpacks a
five-value ``env.step``; gymnax 1.0.1 ships ``LegacyStepAPIWrapper`` for such callers.
Prints one JSON line: wall time of one seed (compile excluded), compile time, and the fraction
of seeds whose greedy evaluation (rejax's own, 128 episodes) reached a mean return >= 475.
"""

import json
import sys
import time

import gymnax
import jax
import numpy as np
from gymnax.wrappers.compat import LegacyStepAPIWrapper
from rejax import DQN



class LegacyStep(LegacyStepAPIWrapper):
    """rejax deep-copies its config; the gymnax wrapper's ``__getattr__`` recurses forever
    on a half-built copy, so share the (stateless) wrapper instead of copying it."""

    def __deepcopy__(self, memo):
        return self


seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
env, env_params = gymnax.make("CartPole-v1")
config = dict(
    env=LegacyStep(env),
    env_params=env_params,
    num_envs=10,
    buffer_size=50_000,
    fill_buffer=1_000,
    batch_size=100,
    num_epochs=5,
    ddqn=True,
    polyak=0.98,
    learning_rate=1e-3,
    total_timesteps=100_000,
    eval_freq=5_000,
)
algo = DQN.create(**config)
train = jax.jit(algo.train)
t = time.perf_counter()
compiled = train.lower(jax.random.key(0)).compile()
compile_s = time.perf_counter() - t
t = time.perf_counter()
_, (lengths, returns) = compiled(jax.random.key(0))
jax.block_until_ready(returns)
wall = time.perf_counter() - t
vtrain = jax.jit(jax.vmap(algo.train))
_, (vl, vr) = vtrain(jax.random.split(jax.random.key(1), seeds))
solved = (np.asarray(vr).mean(axis=-1) >= 475).any(axis=-1)
print(json.dumps({"rejax_wall_s": round(wall, 2), "rejax_compile_s": round(compile_s, 2),
                  "rejax_solved": float(solved.mean()), "rejax_version": "0.1.3"}))
