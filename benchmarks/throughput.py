"""Meta-training throughput: the compiled meta-step against its references, side by side.

For every configuration (tasks per meta-step × environments per task × inner steps, MAML on
``cartpole-physics``, 64-64 MLP, ``rollout_steps`` 32, support = buffer = envs × steps, query
batch 64, one fresh task per slot every meta-step) a *fresh worker process* measures:

* **meta** — ``jax.jit(meta_train)`` chunks of ``K`` scanned meta-steps (the library's program):
  env-steps/s, meta-steps/s, cold compile time (wall and CPU seconds, ``lower + compile``),
  the process peak RSS, XLA's own state / temp sizes and FLOP count;
* **loop** (reference 1) — the *same* per-task computation (``family.sample`` →
  ``rollout.init_carry`` → ``rollout.rollout`` → ``replay.add/recent`` → ``learner.meta_grad``
  with the query (a rollout of the adapted policy, passed as a function of the adapted
  parameters, or ``replay.sample``))
  jitted once for ONE task and called in a Python loop over tasks, the gradients summed on the
  host (numpy) and applied by a jitted optax update + Polyak target — what a learn2learn-style
  implementation does;
* **torch** (reference 2) — :mod:`torch_maml_dqn` (``torch.func`` + gymnasium), ``vmap`` over
  tasks everywhere, and also a Python ``loop`` over tasks on the rows of ``TORCH_LOOP_ROWS``;
  ratios use the faster one (torch runs 1 intra-op thread by default, see ``--torch-threads``);
* **rollout** (reference 3) — the ε-greedy rollout of the same Q-network with the same
  ``tasks × envs`` environments and no learning (``vmap`` over tasks of ``rollout.rollout``,
  transitions discarded), scanned like the meta-step: the acting-only upper bound.

Measurements are interleaved (meta, loop, rollout, torch, meta, loop, ...) for ``--rounds``
rounds of at least ``--min-time`` seconds each; every ratio is computed within a round and the
median over rounds is reported (the machine is shared, so absolute numbers are noisy); the
same is reported in CPU time (``time.process_time``), which other load affects much less.
Env-steps count every environment step a meta-step simulates: with the library default
``query_source="adapted"`` that is 2 × tasks × envs × rollout_steps (support and query rollouts).

Usage::

    python benchmarks/throughput.py --out throughput.json --png throughput.png   # ~10 min
    python benchmarks/throughput.py --quick --out /tmp/t.json --no-torch          # smoke test
    python benchmarks/throughput.py --sweep gpu --no-torch --out gpu.json         # on a GPU (~4.5 min on an H200)

``--sweep gpu`` (tasks 1 … 4096; :func:`gpu_rows`) is what ``benchmarks/gpu_check.sh`` runs. Every
row also records the backend, the device and the device allocator's peak memory, and ``--out``
is rewritten after each row (``--max-wall`` stops starting new rows; a failed row is recorded
under ``"failed"`` and the sweep goes on).

Optional dependencies of the torch reference: ``pip install torch==2.13.0 gymnasium psutil``
(the CPU wheel); without torch the torch columns are null.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

ROLLOUT_STEPS = 32
QUERY_BATCH = 64
HIDDEN = (64, 64)
DEFAULT = dict(tasks=64, envs_per_task=1, inner_steps=1)  # the "default configuration"
TORCH_LOOP_ROWS = {(64, 1, 1), (64, 8, 1)}  # (tasks, envs, inner) where torch's loop variant is also timed


def full_rows() -> list[dict]:
    """The sweep: tasks 1 … 1024 (1 env / task), 8 envs / task, inner steps, the query source."""
    rows = [dict(tasks=t, envs_per_task=1, inner_steps=1) for t in (1, 4, 16, 64, 256, 1024)]
    rows += [dict(tasks=t, envs_per_task=8, inner_steps=1) for t in (1, 64, 256)]
    rows += [dict(tasks=64, envs_per_task=1, inner_steps=k) for k in (2, 5)]
    rows += [dict(tasks=64, envs_per_task=1, inner_steps=1, query_source="buffer")]
    for r in rows:
        r.update(loop=True, rollout=True, torch=r["tasks"] <= 256 and r["inner_steps"] != 2)
    # task_micro_batch = 8 (per-task meta-gradients 8 tasks at a time): the library alone,
    # to compare with the same row above
    rows += [dict(tasks=t, envs_per_task=e, inner_steps=1, task_micro_batch=8, loop=False, rollout=False,
                  torch=False) for t, e in ((64, 1), (256, 1), (1024, 1), (256, 8))]
    return rows


def gpu_rows() -> list[dict]:
    """The accelerator sweep (``--sweep gpu``): tasks 1 … 4096, most informative rows first.

    The per-task loop is timed at 64 and 1024 tasks only (at 4096 tasks one loop meta-step is
    thousands of host round trips); the torch reference (gymnasium environments and torch on the
    host CPU, as in the CPU sweep) at 64 tasks with 1 and 8 envs, where the CPU sweep times it too.
    """
    order = [(64, 1), (1024, 1), (4096, 1), (256, 1), (16, 1), (1, 1), (64, 8), (512, 8)]
    rows = [dict(tasks=t, envs_per_task=e, inner_steps=1, loop=(e == 1 and t in (64, 1024)), rollout=True,
                 torch=(t == 64)) for t, e in order]
    rows += [dict(tasks=64, envs_per_task=1, inner_steps=5, loop=False, rollout=True, torch=False)]
    return rows


def memory_rows() -> list[dict]:
    """Big replay buffers so the memory formula is checked against a visible RSS delta."""
    return [dict(tasks=t, envs_per_task=1, inner_steps=1, buffer_size=b, kind="memory",
                 loop=False, rollout=False, torch=False)
            for t, b in ((64, 25_000), (256, 25_000), (1024, 10_000))]


def quick_rows() -> list[dict]:
    return [dict(tasks=4, envs_per_task=1, inner_steps=1, rollout_steps=8, loop=True, rollout=True, torch=True)]


# ------------------------------------------------------------------------------ memory
def predicted_memory(cfg, obs_shape, num_params: int, env_state_bytes: int, task_param_bytes: int) -> dict:
    """The memory formula (bytes). State (what the compiled program carries and donates):

    replay   = T × buffer_size × transition,  transition = 2·4·|obs| + 4 (action) + 4 (reward)
               + 2 (terminated, truncated) bytes  (+ T × 8 for insert positions and sizes)
    envs     = T × E × (env state + 4·|obs| + 12)   (EnvCarry: state, obs, 2 returns, count)
    tasks    = T × task-parameter bytes
    params   = 4 × P × 4 bytes (meta-params, meta-target, Adam mu and nu; P parameters)
    scalars  = 40 bytes (Adam count, step, PRNG key, and the 6 traced hyper-parameters — the
               program's other argument)

    Working set of one meta-step (XLA temporaries, not carried; S = support, Q = query batch,
    H = Σ hidden widths, k = inner steps). The per-task activations kept for the second-order
    backward pass dominate; the constants are fitted to XLA's ``memory_analysis()`` of this
    program (jax 0.10.2, CPU; 64-64 MLP; S ∈ {32, 256}, k ∈ {1, 2, 5}):

    temp     ≈ T × 4 × (4.5·S·H + 2.4·Q·H + 2.8·(k − 1)·S·H + 2·P) bytes

    Peak RSS ≈ R0 (python + jax + gymnax after a first ``init``, ≈ 490 MB here) + state + temp
    + compiler heap retained after compiling the program (≈ 280–630 MB here).
    """
    obs = math.prod(obs_shape)
    tr = 2 * 4 * obs + 4 + 4 + 2
    T, E = cfg.num_tasks, cfg.envs_per_task
    S, Q = cfg.support_size, cfg.query_batch
    k = max(cfg.inner_steps, 1)
    state = {
        "replay": T * cfg.buffer_size * tr + T * 8,
        "envs": T * E * (env_state_bytes + 4 * obs + 12),
        "tasks": T * task_param_bytes,
        "params": 4 * num_params * 4,
        "scalars": 4 + 4 + 8 + 6 * 4,
    }
    H = sum(cfg.hidden)
    temp = {
        "learner": int(T * 4 * (4.5 * S * H + 2.4 * Q * H + 2.8 * (k - 1) * S * H + 2 * num_params)),
    }
    return {"transition_bytes": tr, "state_bytes": sum(state.values()), "temp_bytes": sum(temp.values()),
            **{f"state_{k_}_bytes": v for k_, v in state.items()}, **{f"temp_{k_}_bytes": v for k_, v in temp.items()}}


def rss_mb() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:  # /proc fallback
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# ------------------------------------------------------------------------------ worker
def device_peak_mb() -> float | None:
    """Peak bytes the first device's allocator has held, in MiB (GPU/TPU; None where not reported)."""
    import jax

    stats = jax.devices()[0].memory_stats()
    return stats["peak_bytes_in_use"] / 2**20 if stats and "peak_bytes_in_use" in stats else None


def timed(fn, min_time: float, min_calls: int = 1) -> tuple[float, int]:
    """Calls ``fn()`` (which must block) until ``min_time`` s and ``min_calls`` calls."""
    t0 = time.perf_counter()
    n = 0
    while n < min_calls or time.perf_counter() - t0 < min_time:
        fn()
        n += 1
    return time.perf_counter() - t0, n


def make_config(spec: dict):
    from metadqn_jax.meta import MetaConfig

    E = spec["envs_per_task"]
    L = spec.get("rollout_steps", ROLLOUT_STEPS)
    return MetaConfig(
        family="cartpole-physics", algorithm=spec.get("algorithm", "maml"), num_tasks=spec["tasks"],
        envs_per_task=E, rollout_steps=L, support_size=E * L, buffer_size=spec.get("buffer_size", E * L),
        query_batch=QUERY_BATCH, task_lifetime=1, inner_steps=spec["inner_steps"], hidden=HIDDEN,
        chunk_size=spec["chunk"], query_source=spec.get("query_source", "adapted"),
        **({"task_micro_batch": spec["task_micro_batch"]} if spec.get("task_micro_batch") else {}),
    )


def env_steps_per_meta_step(cfg) -> int:
    """Environment steps one meta-step simulates: the support rollout of every task, plus the
    query rollout of the adapted policy when ``query_source == "adapted"``.
    (``MetaConfig.env_steps_per_meta_step`` counts the support rollout only.)"""
    rollouts = 2 if getattr(cfg, "query_source", "buffer") == "adapted" else 1
    return rollouts * cfg.num_tasks * cfg.envs_per_task * cfg.rollout_steps


def make_loop_reference(program, hp):
    """Reference 1: the library's per-task functions jitted for ONE task, a Python loop over
    tasks, host-side gradient averaging, then one jitted optax update (learn2learn style).
    The per-task body is ``make_meta_step``'s, task by task: sample + reset, support rollout,
    buffer write, support / query (the adapted policy's rollout, or buffer samples), meta-grad."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from metadqn_jax.core import policies, replay, rollout
    from metadqn_jax.core.optim import clipped_adam, polyak_update
    from metadqn_jax.core.types import example_transition
    from metadqn_jax.meta import adapted_query, tasks_per_env

    cfg, env, family, learner = program.cfg, program.env, program.family, program.learner
    T, E, L = cfg.num_tasks, cfg.envs_per_task, cfg.rollout_steps

    def task_step(params, target, buffer, key, i, hp):
        key = jax.random.fold_in(key, i)
        k_task, k_reset, k_roll, k_query = jax.random.split(key, 4)
        task = family.sample(k_task, 1, "train")  # EnvParams [1]
        env_params = jax.tree.map(lambda x: x[0], tasks_per_env(task, E))  # [E]
        carry = rollout.init_carry(env, k_reset, env_params)
        act_tp = learner.unadapted(params)
        policy = lambda k, obs: policies.epsilon_greedy(k, learner.q_values(act_tp, obs), hp.epsilon)
        carry, trans = rollout.rollout(env, policy, carry, k_roll, env_params, L)
        trans = jax.tree.map(lambda x: x.reshape((L * E,) + x.shape[2:]), trans)
        buffer = replay.add(replay.clear(buffer), trans)
        support = replay.recent(buffer, cfg.support_size)
        if getattr(cfg, "query_source", "buffer") == "buffer":
            query = (replay.sample(buffer, k_query, cfg.query_batch), jnp.ones((cfg.query_batch,), bool))
        else:  # the adapted policy's rollout on fresh episodes, exactly as make_meta_step builds it
            query = lambda tp: adapted_query(env, learner, cfg, tp, k_query, env_params)
        grads, m = learner.meta_grad(params, target, support, query, hp)
        return grads, m.query_loss, buffer

    def update(params, target, opt_state, grads, key, hp):
        opt = clipped_adam(hp.meta_lr, cfg.max_grad_norm, weight_decay=hp.weight_decay)
        updates, opt_state = opt.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, polyak_update(target, params, hp.tau), opt_state, jax.random.split(key)[0]

    task_fn = jax.jit(task_step, donate_argnums=(2,))
    update_fn = jax.jit(update, donate_argnums=(0, 1, 2))
    state = program.init(jax.random.key(1), hp)
    buffer0 = replay.init(example_transition(program.obs_shape), cfg.buffer_size)
    box = {"params": state.params, "target": jax.tree.map(jnp.copy, state.target_params),
           "opt": state.opt_state, "key": state.key,
           "buffers": [jax.tree.map(jnp.copy, buffer0) for _ in range(T)]}
    treedef = jax.tree.structure(state.params)

    def meta_step():
        acc = None
        for i in range(T):
            g, _, box["buffers"][i] = task_fn(box["params"], box["target"], box["buffers"][i], box["key"], i, hp)
            leaves = [np.asarray(x) for x in jax.tree.leaves(g)]  # to the host
            acc = leaves if acc is None else [a + b for a, b in zip(acc, leaves)]
        grads = jax.tree.unflatten(treedef, [a / T for a in acc])
        box["params"], box["target"], box["opt"], box["key"] = update_fn(
            box["params"], box["target"], box["opt"], grads, box["key"], hp)
        jax.block_until_ready(box["params"])

    return meta_step


def make_rollout_reference(program, hp, num_steps: int):
    """Reference 3: ε-greedy acting of the same Q-network in the same T × E environments, no
    learning, scanned ``num_steps`` times per call (transitions discarded)."""
    import jax

    from metadqn_jax.core import policies, rollout
    from metadqn_jax.meta import tasks_per_env

    cfg, env, learner = program.cfg, program.env, program.learner
    T, E, L = cfg.num_tasks, cfg.envs_per_task, cfg.rollout_steps

    def chunk(params, carry, task_params, key, hp):
        act_tp = learner.unadapted(params)
        policy = lambda k, obs: policies.epsilon_greedy(k, learner.q_values(act_tp, obs), hp.epsilon)
        env_params = tasks_per_env(task_params, E)

        def one(c, k):
            c, _ = jax.vmap(lambda c_, k_, p_: rollout.rollout(env, policy, c_, k_, p_, L))(
                c, jax.random.split(k, T), env_params)
            return c, None

        carry, _ = jax.lax.scan(one, carry, jax.random.split(key, num_steps))
        return carry, jax.random.split(key)[0]

    fn = jax.jit(chunk, donate_argnums=(1,))
    state = program.init(jax.random.key(2), hp)
    box = {"carry": state.carry, "key": state.key}
    params, tasks = state.params, state.tasks

    def run():
        box["carry"], box["key"] = fn(params, box["carry"], tasks, box["key"], hp)
        jax.block_until_ready(box["carry"])

    return run


def worker(spec: dict) -> dict:
    """Measures one configuration (run in a fresh process: clean peak RSS, cold compiles)."""
    t_import = time.perf_counter()  # imports, program construction, two inits
    import jax
    import numpy as np

    from metadqn_jax.meta import make_meta_step, meta_train

    min_time, rounds = spec["min_time"], spec["rounds"]
    cfg = make_config(spec)
    K = cfg.chunk_size
    epm = env_steps_per_meta_step(cfg)
    program = make_meta_step(cfg)
    hp = cfg.hparams()
    # a throw-away init first (compiles its eager ops, starts the runtime), so that the RSS
    # growth of the second init is the state itself (large freed blocks go back to the OS)
    jax.block_until_ready(program.init(jax.random.key(1), hp))
    import gc

    gc.collect()
    rss_base = rss_mb()
    state = program.init(jax.random.key(0), hp)
    jax.block_until_ready(state)
    rss_state = rss_mb()
    row: dict = {k: spec[k] for k in ("tasks", "envs_per_task", "inner_steps")}
    row.update(kind=spec.get("kind", "throughput"), algorithm=cfg.algorithm, family=cfg.family,
               rollout_steps=cfg.rollout_steps, support_size=cfg.support_size, buffer_size=cfg.buffer_size,
               query_batch=cfg.query_batch, query_source=getattr(cfg, "query_source", "buffer"),
               task_micro_batch=getattr(cfg, "task_micro_batch", 0),
               hidden=list(cfg.hidden), chunk=K, env_steps_per_meta_step=epm,
               setup_s=time.perf_counter() - t_import)

    # --- meta: cold compile, then the first (warm-up) call
    run = jax.jit(meta_train, static_argnums=(0, 3), donate_argnums=(1,))
    c0, w0 = time.process_time(), time.perf_counter()
    lowered = run.lower(program.meta_step, state, hp, K)
    compiled = lowered.compile()
    row["compile_s"] = time.perf_counter() - w0
    row["compile_cpu_s"] = time.process_time() - c0
    ma = compiled.memory_analysis()
    row["xla_argument_mb"] = ma.argument_size_in_bytes / 2**20 if ma else None
    row["xla_temp_mb"] = ma.temp_size_in_bytes / 2**20 if ma else None
    flops = (compiled.cost_analysis() or {}).get("flops")
    row["xla_flops_per_meta_step"] = flops / 1.0 if flops else None  # loop bodies counted once
    box = {"state": state}

    def meta_chunk():
        box["state"], m = compiled(box["state"], hp)
        jax.block_until_ready(box["state"])

    meta_chunk()  # warm-up
    leaves = jax.tree.leaves(box["state"].params)
    num_params = int(sum(x.size for x in leaves))
    env_state_bytes = int(sum(x.dtype.itemsize * math.prod(x.shape[2:]) for x in jax.tree.leaves(box["state"].carry.env_state)))
    task_param_bytes = int(sum(x.dtype.itemsize * math.prod(x.shape[1:]) for x in jax.tree.leaves(box["state"].tasks)))
    mem = predicted_memory(cfg, program.obs_shape, num_params, env_state_bytes, task_param_bytes)
    row.update(num_params=num_params, formula_state_mb=mem["state_bytes"] / 2**20,
               formula_temp_mb=mem["temp_bytes"] / 2**20, formula_replay_mb=mem["state_replay_bytes"] / 2**20,
               transition_bytes=mem["transition_bytes"], rss_base_mb=rss_base,
               rss_state_mb=rss_state, rss_after_meta_mb=rss_mb())
    row["peak_rss_mb"] = peak_rss_mb()  # before any reference runs: the meta-training process
    row["device_peak_mb"] = device_peak_mb()  # the accelerator's own memory (None on the CPU backend)

    # --- references (built lazily, warmed up once)
    refs = {}
    if spec.get("loop"):
        t = time.perf_counter()
        loop = make_loop_reference(program, hp)
        loop()
        row["loop_compile_s"] = time.perf_counter() - t
        refs["loop"] = (loop, 1)
    if spec.get("rollout"):
        K_roll = max(K, 2)
        roll = make_rollout_reference(program, hp, K_roll)
        t = time.perf_counter()
        roll()
        row["rollout_compile_s"] = time.perf_counter() - t
        refs["rollout"] = (roll, K_roll * cfg.num_tasks * cfg.envs_per_task * cfg.rollout_steps / epm)
    if spec.get("torch"):
        try:
            import torch

            from torch_maml_dqn import TorchConfig, TorchMAMLDQN
        except ImportError as e:
            row["torch_note"] = f"not installed ({e.name})"
        else:
            torch.set_num_threads(spec["torch_threads"])
            row["torch_threads"] = torch.get_num_threads()
            row["torch_version"] = torch.__version__
            modes = ["vmap"] + (["loop"] if spec.get("torch_loop") else [])
            for mode in modes:
                tc = TorchConfig(num_tasks=cfg.num_tasks, envs_per_task=cfg.envs_per_task,
                                 rollout_steps=cfg.rollout_steps, query_batch=cfg.query_batch,
                                 inner_steps=cfg.inner_steps, hidden=cfg.hidden, inner_lr=float(hp.inner_lr),
                                 meta_lr=float(hp.meta_lr), gamma=float(hp.gamma), epsilon=float(hp.epsilon),
                                 tau=float(hp.tau), max_grad_norm=cfg.max_grad_norm, mode=mode,
                                 query_source=getattr(cfg, "query_source", "buffer"),
                                 query_epsilon=getattr(cfg, "query_epsilon", 0.3))
                agent = TorchMAMLDQN(tc)
                agent.meta_step()  # warm-up
                refs[f"torch_{mode}"] = (agent.meta_step, 1)

    # --- interleaved rounds
    per_round = {name: [] for name in ["meta", *refs]}
    per_round_cpu = {name: [] for name in ["meta", *refs]}

    def measure(name, fn, steps_per_call):
        c0 = time.process_time()
        dt, n = timed(fn, min_time)
        cpu = time.process_time() - c0
        per_round[name].append(n * steps_per_call * epm / dt)
        per_round_cpu[name].append(n * steps_per_call * epm / cpu)

    for _ in range(rounds):
        measure("meta", meta_chunk, K)
        for name, (fn, steps_per_call) in refs.items():
            measure(name, fn, steps_per_call)
    med = lambda xs: float(np.median(xs)) if xs else None
    meta = per_round["meta"]
    row["env_steps_per_s"] = med(meta)
    row["meta_steps_per_s"] = row["env_steps_per_s"] / epm
    row["env_steps_per_s_rounds"] = meta
    row["ms_per_task_per_meta_step"] = 1e3 / row["meta_steps_per_s"] / cfg.num_tasks
    if flops:
        row["achieved_gflops"] = flops * row["meta_steps_per_s"] / 1e9
    for name in refs:
        row[f"{name}_env_steps_per_s"] = med(per_round[name])
    ratio = lambda name: med([m / r for m, r in zip(meta, per_round[name])]) if name in refs else None
    row["speedup_vs_loop"] = ratio("loop")
    torch_modes = [n for n in refs if n.startswith("torch_")]
    if torch_modes:  # against the faster torch variant, round by round
        best = [max(per_round[n][i] for n in torch_modes) for i in range(rounds)]
        row["torch_env_steps_per_s"] = med(best)
        row["speedup_vs_torch"] = med([m / b for m, b in zip(meta, best)])
    else:
        row["torch_env_steps_per_s"] = None
        row["speedup_vs_torch"] = None
    row["fraction_of_rollout_limit"] = ratio("rollout")
    # the same in CPU time (process_time: less sensitive to other load on a shared machine)
    row["env_steps_per_cpu_s"] = med(per_round_cpu["meta"])
    for name in refs:
        row[f"{name}_env_steps_per_cpu_s"] = med(per_round_cpu[name])
    ratio_cpu = lambda name: med([m / r for m, r in zip(per_round_cpu["meta"], per_round_cpu[name])])
    row["speedup_vs_loop_cpu"] = ratio_cpu("loop") if "loop" in refs else None
    row["fraction_of_rollout_limit_cpu"] = ratio_cpu("rollout") if "rollout" in refs else None
    if torch_modes:
        best_cpu = [max(per_round_cpu[n][i] for n in torch_modes) for i in range(rounds)]
        row["speedup_vs_torch_cpu"] = med([m / b for m, b in zip(per_round_cpu["meta"], best_cpu)])
    else:
        row["speedup_vs_torch_cpu"] = None
    row["backend"], row["device"] = jax.default_backend(), jax.devices()[0].device_kind
    row["loadavg_1m"] = os.getloadavg()[0]
    return row


# ------------------------------------------------------------------------------ driver
def chunk_for(spec: dict, quick: bool) -> int:
    epm = spec["tasks"] * spec["envs_per_task"] * spec.get("rollout_steps", ROLLOUT_STEPS)
    if quick:
        return 2
    return int(min(50, max(2, round(65_536 / epm))))  # ~65k env steps per compiled call


def machine_info() -> dict:
    import jax

    info = {"python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "jax": jax.__version__, "jax_backend": jax.default_backend(),
            "jax_devices": [str(d) for d in jax.devices()], "xla_flags": os.environ.get("XLA_FLAGS", "")}
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        info["cpu_model"] = names[0] if names else None
    except OSError:
        pass
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    dev = jax.devices()[0]
    info["device"] = dev.device_kind  # e.g. "NVIDIA H200"; "cpu" on the CPU backend
    info["gpu"] = dev.device_kind if jax.default_backend() == "gpu" else "none (CPU backend)"
    return info


def fmt(x, spec=".3g"):
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    return format(x, spec)


def print_table(rows: list[dict]) -> str:
    head = ("tasks", "envs", "inner", "query", "micro", "env-steps/s", "meta-steps/s", "ms/task", "compile s (cpu s)",
            "peak RSS MB", "vs loop", "vs torch", "of rollout", "loop env-steps/s", "torch env-steps/s",
            "rollout env-steps/s", "device")
    lines = ["Wall-clock (median of interleaved rounds):", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    tput = [r for r in rows if r.get("kind", "throughput") == "throughput"]
    for r in tput:
        lines.append("| " + " | ".join([
            str(r["tasks"]), str(r["envs_per_task"]), str(r["inner_steps"]), r.get("query_source", "?"),
            str(r.get("task_micro_batch") or "-"), fmt(r["env_steps_per_s"], ",.0f"), fmt(r["meta_steps_per_s"], ".3g"),
            fmt(r["ms_per_task_per_meta_step"], ".3f"), f"{r['compile_s']:.1f} ({r['compile_cpu_s']:.1f})",
            fmt(r["peak_rss_mb"], ".0f"), fmt(r["speedup_vs_loop"], ".2f"), fmt(r["speedup_vs_torch"], ".2f"),
            fmt(r["fraction_of_rollout_limit"], ".3f"), fmt(r.get("loop_env_steps_per_s"), ",.0f"),
            fmt(r.get("torch_env_steps_per_s"), ",.0f"), fmt(r.get("rollout_env_steps_per_s"), ",.0f"),
            r.get("device", "?")]) + " |")
    head2 = ("tasks", "envs", "inner", "query", "micro", "env-steps/CPU-s", "loop", "torch vmap", "torch loop", "rollout",
             "vs loop", "vs torch", "of rollout", "XLA GFLOP/meta-step", "GFLOP/s")
    lines += ["", "CPU time (process_time; robust to other load on the machine):", "",
              "| " + " | ".join(head2) + " |", "|" + "---|" * len(head2)]
    for r in tput:
        flops = r.get("xla_flops_per_meta_step")
        lines.append("| " + " | ".join([
            str(r["tasks"]), str(r["envs_per_task"]), str(r["inner_steps"]), r.get("query_source", "?"),
            str(r.get("task_micro_batch") or "-"), fmt(r.get("env_steps_per_cpu_s"), ",.0f"), fmt(r.get("loop_env_steps_per_cpu_s"), ",.0f"),
            fmt(r.get("torch_vmap_env_steps_per_cpu_s"), ",.0f"), fmt(r.get("torch_loop_env_steps_per_cpu_s"), ",.0f"),
            fmt(r.get("rollout_env_steps_per_cpu_s"), ",.0f"), fmt(r.get("speedup_vs_loop_cpu"), ".2f"),
            fmt(r.get("speedup_vs_torch_cpu"), ".2f"), fmt(r.get("fraction_of_rollout_limit_cpu"), ".3f"),
            fmt(flops / 1e9 if flops else None, ".3f"), fmt(r.get("achieved_gflops"), ".1f")]) + " |")
    mem = [r for r in rows if r.get("formula_state_mb") is not None]
    head3 = ("kind", "tasks", "envs", "inner", "buffer", "formula state MB", "XLA args MB", "RSS init − base MB",
             "formula temp MB", "XLA temp MB", "RSS after run − init MB", "peak RSS MB", "device peak MB")
    lines += ["", "Memory (formula vs XLA vs RSS):", "", "| " + " | ".join(head3) + " |", "|" + "---|" * len(head3)]
    for r in mem:
        lines.append("| " + " | ".join([
            r.get("kind", "throughput"), str(r["tasks"]), str(r["envs_per_task"]), str(r["inner_steps"]),
            str(r["buffer_size"]), fmt(r["formula_state_mb"], ".2f"), fmt(r["xla_argument_mb"], ".2f"),
            fmt(r["rss_state_mb"] - r["rss_base_mb"], ".1f"), fmt(r["formula_temp_mb"], ".2f"),
            fmt(r["xla_temp_mb"], ".2f"), fmt(r["rss_after_meta_mb"] - r["rss_state_mb"], ".0f"),
            fmt(r["peak_rss_mb"], ".0f"), fmt(r.get("device_peak_mb"), ".1f")]) + " |")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def run_spec(spec: dict, in_process: bool) -> dict:
    if in_process:
        return worker(spec)
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True)
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"worker failed for {spec}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Meta-training throughput vs per-task loop, PyTorch and rollout limit.")
    ap.add_argument("--out", required=False, help="JSON file for the rows")
    ap.add_argument("--png", help="plot of the cost curve (default: next to --out)")
    ap.add_argument("--md", help="write the markdown tables here too")
    ap.add_argument("--quick", action="store_true", help="one tiny configuration, in-process (smoke test)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-loop", action="store_true")
    ap.add_argument("--no-memory", action="store_true", help="skip the large-buffer memory rows")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.4, help="seconds per timed measurement")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="torch intra-op threads (1: on this shared 2-core box 2 OpenMP threads were ~100x slower)")
    ap.add_argument("--tasks", type=int, nargs="*", help="restrict to these task counts")
    ap.add_argument("--sweep", choices=("cpu", "gpu"), default="cpu",
                    help="cpu: tasks 1 … 1024 with every reference (and the memory rows); gpu: tasks 1 … 4096, "
                         "loop at 64 and 1024 tasks, torch at 64 tasks, no memory rows")
    ap.add_argument("--max-wall", type=float, default=0.0,
                    help="start no new configuration after this many seconds (0: no limit); "
                         "--out is rewritten after every row")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0
    t0 = time.perf_counter()
    if args.quick:
        specs = quick_rows()
    elif args.sweep == "gpu":
        specs = gpu_rows()
    else:
        specs = full_rows() + ([] if args.no_memory else memory_rows())
    if args.tasks:
        specs = [s for s in specs if s["tasks"] in args.tasks]
    rows, failed = [], []
    settings = {"rollout_steps": ROLLOUT_STEPS, "query_batch": QUERY_BATCH, "hidden": list(HIDDEN),
                "rounds": args.rounds, "min_time": args.min_time, "torch_threads": args.torch_threads,
                "sweep": "quick" if args.quick else args.sweep}
    command = " ".join([Path(sys.executable).name, *sys.argv])

    def write(machine) -> None:
        """(Re)writes --out: after every row, so an interrupted sweep keeps what it measured."""
        if args.out:
            result = {"command": command, "machine": machine, "total_wall_s": time.perf_counter() - t0,
                      "default_config": DEFAULT, "settings": settings, "rows": rows, "failed": failed}
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(result, indent=1))
            return result

    for s in specs:
        if args.max_wall and time.perf_counter() - t0 > args.max_wall:
            print(f"[{time.perf_counter() - t0:6.0f}s] --max-wall {args.max_wall:.0f} s reached: skipping "
                  f"T={s['tasks']} E={s['envs_per_task']} k={s['inner_steps']} and the rows after it", flush=True)
            failed.append({**s, "error": "skipped: --max-wall reached"})
            continue
        s = dict(s)
        s["chunk"] = chunk_for(s, args.quick)
        s["rounds"] = 1 if args.quick else args.rounds
        s["min_time"] = 0.02 if args.quick else args.min_time
        s["loop"] = s.get("loop", False) and not args.no_loop
        s["torch"] = s.get("torch", False) and not args.no_torch
        s["torch_loop"] = (s["tasks"], s["envs_per_task"], s["inner_steps"]) in TORCH_LOOP_ROWS or args.quick
        s["torch_threads"] = args.torch_threads
        ts = time.perf_counter()
        try:
            row = run_spec(s, in_process=args.quick)
        except RuntimeError as e:  # one broken configuration (e.g. out of memory) must not lose the others
            print(f"[{time.perf_counter() - t0:6.0f}s] FAILED {e}", flush=True)
            failed.append({**s, "error": str(e)[-2000:]})
            write(None)
            continue
        row["row_wall_s"] = time.perf_counter() - ts
        rows.append(row)
        write(None)
        print(f"[{time.perf_counter() - t0:6.0f}s] T={row['tasks']} E={row['envs_per_task']} k={row['inner_steps']} "
              f"buf={row['buffer_size']}: {row['env_steps_per_s']:,.0f} env-steps/s, compile {row['compile_s']:.1f}s "
              f"(cpu {row['compile_cpu_s']:.1f}s), vs loop {fmt(row['speedup_vs_loop'], '.2f')}, "
              f"vs torch {fmt(row['speedup_vs_torch'], '.2f')}, of rollout {fmt(row['fraction_of_rollout_limit'], '.3f')}, "
              f"peak RSS {row['peak_rss_mb']:.0f} MB, device peak {fmt(row['device_peak_mb'], '.0f')} MB, "
              f"load {row['loadavg_1m']:.1f}", flush=True)
    text = print_table(rows)
    # jax is imported in this (driver) process only now: on a GPU it would otherwise hold the
    # device memory the workers need
    result = write(machine_info())
    if args.out and rows:
        png = args.png or str(Path(args.out).with_suffix(".png"))
        from plot_throughput import plot

        plot(result, png)
        print(f"wrote {args.out} and {png}")
    if args.md:
        Path(args.md).write_text(text + "\n")
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 1 if failed and not rows else 0


if __name__ == "__main__":
    sys.exit(main())
