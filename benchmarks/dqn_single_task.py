"""Single-task DQN on CartPole-v1: speed to solve, throughput, and the rollout limit.

    python benchmarks/dqn_single_task.py --out dqn.json

Measured in one run, on this machine:
* ``compile_s`` — lowering + compiling the whole training program (one seed);
* per seed: the whole 100k-step training as one compiled call (``wall_s``, compile excluded),
  the env step of the first greedy evaluation whose mean return ≥ 475 (10 episodes), and
  ``wall_s_to_solve = wall_s × solved_step / total_steps`` (the cost per step is constant);
* ``env_steps_per_s`` — training env steps per second (median seed);
* ``vmapped_seeds_wall_s`` — all seeds as one vmapped program;
* ``rollout_limit_env_steps_per_s`` — an ε-greedy rollout of the same network with the same
  number of environments and no learning;
* ``rejax_wall_s`` / ``rejax_solved`` — rejax 0.1.3 at its CartPole DQN configuration, run in
  the interpreter given by ``--rejax-python`` (rejax needs its own environment); null if absent.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from metadqn_jax import envs
from metadqn_jax.core import policies, rollout
from metadqn_jax.dqn import DQNConfig
from metadqn_jax.dqn import first_solved_step, make_train
from metadqn_jax.core.networks import make_q_network

HERE = Path(__file__).resolve().parent


def rollout_limit(cfg: DQNConfig, steps: int = 20_000) -> float:
    """Env steps/s of an ε-greedy rollout of the same Q-network, no learning."""
    env, env_params = envs.make_env(cfg.env_id)
    net = make_q_network(envs.num_actions(env, env_params), cfg.hidden, dueling=cfg.dueling)
    params = net.init(jax.random.key(0), jnp.zeros(envs.obs_shape(env, env_params)))
    batched = rollout.broadcast_params(env_params, cfg.num_envs)
    iters = steps // cfg.num_envs

    @jax.jit
    def run(key):
        carry = rollout.init_carry(env, key, batched)
        policy = lambda k, obs: policies.epsilon_greedy(k, net.apply(params, obs), 0.1)
        carry, tr = rollout.rollout(env, policy, carry, key, batched, iters)
        return tr.reward.sum()

    run(jax.random.key(1)).block_until_ready()
    best = 0.0
    for i in range(3):
        t = time.perf_counter()
        run(jax.random.key(i + 2)).block_until_ready()
        best = max(best, iters * cfg.num_envs / (time.perf_counter() - t))
    return best


def run_rejax(python: str, seeds: int) -> dict:
    script = HERE / "_rejax_cartpole.py"
    out = subprocess.run([python, str(script), str(seeds)], capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        return {"rejax_error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("dqn_single_task.json"), help="JSON output (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=5, help="seeds (default: %(default)s)")
    default_rejax = str(HERE.parent / ".venv-rejax" / "bin" / "python")
    p.add_argument("--rejax-python", default=default_rejax,
                   help="python with rejax 0.1.3 installed (default: %(default)s; skipped if missing)")
    args = p.parse_args(argv)

    cfg = DQNConfig()
    hp = cfg.hparams()
    train = make_train(cfg)
    t = time.perf_counter()
    compiled = jax.jit(train).lower(jax.random.key(0), hp).compile()
    compile_s = time.perf_counter() - t

    walls, solved_steps, final = [], [], []
    for seed in range(args.seeds):
        t = time.perf_counter()
        _, m = compiled(jax.random.key(seed), hp)
        jax.block_until_ready(m)
        walls.append(time.perf_counter() - t)
        solved_steps.append(int(first_solved_step(m, cfg.solve_threshold)))
        final.append(float(m.eval_return[-1]))
    solved = [s for s in solved_steps if s >= 0]
    to_solve = [w * s / cfg.total_steps for w, s in zip(walls, solved_steps) if s >= 0]

    keys = jax.random.split(jax.random.key(0), args.seeds)
    vm = jax.jit(jax.vmap(train, in_axes=(0, None))).lower(keys, hp).compile()
    t = time.perf_counter()
    _, mv = vm(keys, hp)
    jax.block_until_ready(mv)
    vmapped_wall = time.perf_counter() - t
    vm_solved = np.asarray(first_solved_step(mv, cfg.solve_threshold))

    result = {
        "env_id": cfg.env_id,
        "config": {k: getattr(cfg, k) for k in ("num_envs", "total_steps", "buffer_size", "batch_size",
                                                "updates_per_iteration", "hidden", "lr", "tau", "gamma",
                                                "eps_decay_steps", "lr_decay", "eval_every")},
        "compile_s": round(compile_s, 2),
        "wall_s_per_seed": [round(w, 2) for w in walls],
        "solved_step_per_seed": solved_steps,
        "final_eval_return_per_seed": final,
        "solved_fraction": len(solved) / args.seeds,
        "wall_s_to_solve": round(float(np.median(to_solve)), 2) if to_solve else None,
        "env_steps_per_s": round(cfg.total_steps / float(np.median(walls))),
        "vmapped_seeds_wall_s": round(vmapped_wall, 2),
        "vmapped_solved_fraction": float((vm_solved >= 0).mean()),
        "rollout_limit_env_steps_per_s": round(rollout_limit(cfg)),
        "rejax_wall_s": None,
        "rejax_solved": None,
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "cpus": os.cpu_count(),
    }
    if os.path.exists(args.rejax_python):
        result.update(run_rejax(args.rejax_python, args.seeds))
    rows = [
        ("compile (s)", result["compile_s"]),
        ("100k-step training per seed (s, median)", round(float(np.median(walls)), 2)),
        ("wall to solve (s, median of solved seeds)", result["wall_s_to_solve"]),
        ("solved fraction (greedy ≥ 475 within 100k steps)", result["solved_fraction"]),
        ("training env steps / s", result["env_steps_per_s"]),
        (f"{args.seeds} seeds vmapped, one program (s)", result["vmapped_seeds_wall_s"]),
        ("rollout limit env steps / s (ε-greedy, no learning)", result["rollout_limit_env_steps_per_s"]),
        ("rejax 0.1.3 wall (s)", result.get("rejax_wall_s")),
        ("rejax solved fraction", result.get("rejax_solved")),
    ]
    print("| metric | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    if "rejax_error" in result:
        print(f"\nrejax could not run: {result['rejax_error']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
