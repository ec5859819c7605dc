"""Sharding the task axis (metadqn_jax.sharding), on 8 fake CPU devices and across 2 processes.

Every check runs in a subprocess whose ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` is
set before jax is imported (the parent pytest process keeps its single device).

* one process, 8 devices: the sharded meta-training chunks (``jit`` with ``NamedSharding``
  in/out shardings, no ``pmap``) give the same meta-parameters, buffers and metrics as the
  single-device program (float32 round-off only: the task mean becomes a cross-device
  all-reduce); the per-task state stays split over the devices, the compiled program has an
  all-reduce and no all-gather; ``train_meta()`` (every device by default) agrees with
  ``train_meta(num_devices=1)``, for MAML, the context learner and CAVIA;
  task counts not divisible by the device count raise a clear ``ValueError``;
* two processes on 127.0.0.1 (``jax.distributed.initialize`` through
  ``sharding.initialize_distributed``, gloo CPU collectives), 2 devices each: a 4-device global
  mesh reproduces the single-device parameters too.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

COMMON = textwrap.dedent('''
    import json, os, sys
    import numpy as np
    CFG_KW = dict(family="cartpole-physics", algorithm="maml", num_tasks=16, envs_per_task=2, rollout_steps=4,
                  support_size=8, buffer_size=16, query_batch=8, inner_steps=1, hidden=(16, 16),
                  chunk_size=2, num_meta_steps=4, task_lifetime=2, query_source="adapted",
                  updates_per_step=1)  # not the family's 8: sharding, not learning
    STEPS = 4
    HANG_GUARD_S = 1800  # seconds; a bound on a hang only (a loaded machine never gets near it)

    def leaves(tree):
        import jax
        return [np.asarray(x.addressable_data(0) if hasattr(x, "addressable_data") and x.is_fully_replicated else x,
                           np.float64) for x in jax.tree.leaves(tree)]

    def maxdiff(a, b):
        return max(float(np.max(np.abs(x - y))) if x.size else 0.0 for x, y in zip(leaves(a), leaves(b)))
''')

SINGLE_HOST = COMMON + textwrap.dedent('''
    import jax
    import jax.numpy as jnp
    from metadqn_jax import sharding
    from metadqn_jax.meta import MetaConfig, make_meta_step, meta_train
    from metadqn_jax.driver import ValidationConfig, train_meta
    from metadqn_jax.meta import PER_TASK_FIELDS

    assert jax.device_count() == 8, jax.devices()
    out = {}
    cfg = MetaConfig(**CFG_KW)
    program = make_meta_step(cfg)
    hp = cfg.hparams()

    # single device, jitted exactly as train_meta does (so train_meta below reuses it)
    run1 = jax.jit(meta_train, static_argnums=(0, 3), donate_argnums=(1,))
    s = program.init(jax.random.key(0), hp)
    m1 = []
    for _ in range(STEPS // cfg.chunk_size):
        s, m = run1(program.meta_step, s, hp, cfg.chunk_size)
        m1.append(m)
    single = s
    np.savez(sys.argv[1], *leaves(single.params))
    open(sys.argv[1] + ".done", "w").close()

    # count compilations of the sharded program (jax_log_compiles records)
    import logging
    compiled = []

    class Count(logging.Handler):
        def emit(self, record):
            msg = record.getMessage()
            if msg.startswith("Compiling ") and "_sharded_meta_train" in msg:
                compiled.append(msg[:60])

    logging.getLogger("jax").addHandler(Count(logging.WARNING))
    jax.config.update("jax_log_compiles", True)

    # 8 devices: the task axis sharded, everything else replicated
    mesh = sharding.make_mesh()
    assert sharding.num_shards(mesh) == 8 and mesh.axis_names == ("tasks",)
    s = program.init(jax.random.key(0), hp)
    spec = sharding.task_axis_spec(s, PER_TASK_FIELDS)
    s = sharding.shard_meta_state(s, mesh, spec)
    run8 = sharding.jit_meta_train(meta_train, mesh, spec)
    hlo = run8.lower(program.meta_step, s, hp, cfg.chunk_size).compile().as_text()
    out["all_reduce"] = hlo.count("all-reduce(")
    out["all_gather"] = hlo.count("all-gather(")
    m8 = []
    for _ in range(STEPS // cfg.chunk_size):
        s, m = run8(program.meta_step, s, hp, cfg.chunk_size)
        m8.append(m)
    sharded = s
    out["sharded_compiles"] = len(compiled)
    out["params_maxdiff"] = maxdiff(single.params, sharded.params)
    out["target_maxdiff"] = maxdiff(single.target_params, sharded.target_params)
    out["opt_maxdiff"] = maxdiff(single.opt_state, sharded.opt_state)
    out["buffers_maxdiff"] = maxdiff(single.buffers.data, jax.device_get(sharded.buffers.data))
    out["metrics_maxdiff"] = maxdiff(m1, m8)
    out["params_scale"] = max(float(np.max(np.abs(x))) for x in leaves(single.params))
    obs = sharded.buffers.data.obs
    P = jax.sharding.PartitionSpec
    out["buffer_spec"] = obs.sharding.spec == P("tasks")
    out["buffer_shard_rows"] = sorted({sh.data.shape[0] for sh in obs.addressable_shards})
    out["carry_spec"] = all(x.sharding.spec == P("tasks") for x in jax.tree.leaves(sharded.carry))
    out["tasks_spec"] = all(x.sharding.spec == P("tasks") for x in jax.tree.leaves(sharded.tasks))
    out["params_replicated"] = all(x.sharding.is_fully_replicated for x in jax.tree.leaves(sharded.params))
    out["key_replicated"] = sharded.key.sharding.is_fully_replicated
    out["metrics_replicated"] = all(x.sharding.is_fully_replicated for x in jax.tree.leaves(m8[-1]))

    # train_meta: num_devices=8 vs the single-device driver (same program: no new compile)
    kw = dict(validation=ValidationConfig(every=0), progress=False, program=program)
    r1 = train_meta(cfg, jax.random.key(3), num_devices=1, **kw)
    r8 = train_meta(cfg, jax.random.key(3), **kw)  # default: every device (8 here)
    out["train_meta_maxdiff"] = maxdiff(r1.state.params, r8.state.params)
    out["train_meta_step"] = int(r8.state.step)
    out["train_meta_loss_diff"] = max(abs(a["query_loss"] - b["query_loss"]) for a, b in zip(r1.history, r8.history))
    out["sharded_compiles_after_train_meta"] = len(compiled)

    # the inference-based learners under the same sharding (context acting on its online context)
    for algo in ("context", "cavia"):
        c = MetaConfig(**{**CFG_KW, "algorithm": algo})
        kw = dict(validation=ValidationConfig(every=0), progress=False, program=make_meta_step(c))
        a1 = train_meta(c, jax.random.key(5), num_devices=1, **kw)
        a8 = train_meta(c, jax.random.key(5), num_devices=8, **kw)
        out[algo + "_maxdiff"] = maxdiff(a1.state.params, a8.state.params)
        out[algo + "_moved"] = maxdiff(a1.state.params, make_meta_step(c).init(jax.random.key(5), hp).params)

    # a smaller mesh is fine when it divides the tasks
    s4 = sharding.shard_meta_state(program.init(jax.random.key(0), hp), sharding.make_mesh(4), spec)
    out["mesh4_rows"] = sorted({sh.data.shape[0] for sh in s4.buffers.data.obs.addressable_shards})

    # errors: task counts not divisible by the device count, too many devices
    errors = {}
    bad = MetaConfig(**{**CFG_KW, "num_tasks": 12})
    bad_program = make_meta_step(bad)
    try:
        sharding.shard_meta_state(bad_program.init(jax.random.key(0), bad.hparams()), mesh, spec)
    except ValueError as e:
        errors["shard"] = str(e)
    try:
        train_meta(bad, num_devices=8, validation=ValidationConfig(every=0), progress=False, program=bad_program)
    except ValueError as e:
        errors["train_meta"] = str(e)
    try:
        sharding.make_mesh(9)
    except ValueError as e:
        errors["mesh"] = str(e)
    try:  # the default is every device (8 here): task_micro_batch is single-device only
        micro = MetaConfig(**{**CFG_KW, "task_micro_batch": 2})
        train_meta(micro, validation=ValidationConfig(every=0), progress=False)
    except ValueError as e:
        errors["micro"] = str(e)
    out["errors"] = errors
    print("RESULT " + json.dumps(out))
''')

MULTI_HOST = COMMON + textwrap.dedent('''
    from metadqn_jax.sharding import initialize_distributed  # imports no gymnax: backend not started

    port, pid, ref = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    # HANG_GUARD_S: only a guard against a hang, never a limit a slow (loaded) machine can reach
    initialize_distributed(f"127.0.0.1:{port}", num_processes=2, process_id=pid, initialization_timeout=HANG_GUARD_S)
    import jax
    from metadqn_jax import sharding
    from metadqn_jax.meta import PER_TASK_FIELDS
    from metadqn_jax.meta import MetaConfig, make_meta_step, meta_train

    assert jax.process_count() == 2 and jax.device_count() == 4 and jax.local_device_count() == 2
    cfg = MetaConfig(**CFG_KW)
    program = make_meta_step(cfg)
    hp = cfg.hparams()
    mesh = sharding.make_mesh()  # all 4 global devices
    s = program.init(jax.random.key(0), hp)
    spec = sharding.task_axis_spec(s, PER_TASK_FIELDS)
    s = sharding.shard_meta_state(s, mesh, spec)
    run = sharding.jit_meta_train(meta_train, mesh, spec)
    for _ in range(STEPS // cfg.chunk_size):
        s, m = run(program.meta_step, s, hp, cfg.chunk_size)
    import time
    deadline = time.monotonic() + HANG_GUARD_S
    while not os.path.exists(ref + ".done"):  # written by the 8-device run (".failed": it ended without)
        if os.path.exists(ref + ".failed") or time.monotonic() > deadline:
            print("RESULT " + json.dumps({"pid": pid, "error": "no reference from the 8-device run"}))
            sys.exit(1)
        time.sleep(0.2)
    expected = np.load(ref)
    got = leaves(s.params)
    diff = max(float(np.max(np.abs(expected[f"arr_{i}"] - g))) for i, g in enumerate(got))
    rows = sorted({sh.data.shape[0] for sh in s.buffers.data.obs.addressable_shards})
    full = sharding.gather_to_host(s.buffers.data.obs)
    print("RESULT " + json.dumps({"pid": pid, "params_maxdiff": diff, "local_rows": rows,
                                  "gathered_shape": list(full.shape), "query_loss": float(np.mean(leaves(m.query_loss)[0]))}))
''')


def _env(devices: int) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# A subprocess is waited for by polling, not with a timeout a loaded machine can reach: this bound
# only ends a hung process (the quiet-machine time of the whole module is about 2-3 minutes).
HANG_GUARD_S = 1800


def _wait(procs: list[subprocess.Popen], on_exit=None) -> list[tuple[str, str]]:
    """Waits for every process (reading their pipes as they write, so none blocks on a full
    pipe), at most :data:`HANG_GUARD_S` seconds in all; a process still running then is killed
    (its output then ends with a note). ``on_exit(i, returncode)`` runs as process ``i`` ends.
    Returns ``[(stdout, stderr)]`` in the order of ``procs``."""
    import threading
    import time

    outs: list[list[str]] = [["", ""] for _ in procs]

    def drain(i, j, stream):
        with stream:  # closed once read (no unclosed-pipe ResourceWarning)
            outs[i][j] = stream.read()

    readers = [threading.Thread(target=drain, args=(i, j, stream), daemon=True)
               for i, p in enumerate(procs) for j, stream in enumerate((p.stdout, p.stderr))]
    for t in readers:
        t.start()
    deadline = time.monotonic() + HANG_GUARD_S
    done = [False] * len(procs)
    while not all(done):
        for i, p in enumerate(procs):
            if not done[i] and p.poll() is not None:
                done[i] = True
                if on_exit is not None:
                    on_exit(i, p.returncode)
        if time.monotonic() > deadline:
            for i, p in enumerate(procs):
                if not done[i]:
                    p.kill()
                    p.wait()
                    done[i] = True
                    outs[i][1] += f"\n[killed after the {HANG_GUARD_S} s hang guard]"
            break
        time.sleep(0.5)
    for t in readers:
        t.join()
    return [(o, e) for o, e in outs]


def _result(stdout: str, stderr: str) -> dict:
    for line in stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise AssertionError(f"no result\nstdout:\n{stdout[-3000:]}\nstderr:\n{stderr[-6000:]}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Starts the two multi-host processes, then the 8-device process (they overlap: the
    multi-host ones compile while it runs, and compare with its reference when it is written).
    No timeout that load can reach: the processes are polled (:func:`_wait`). Returns
    ``((stdout, stderr) of the 8-device run, [(stdout, stderr)] of the two multi-host ones)``."""
    ref = tmp_path_factory.mktemp("sharding") / "single_device_params.npz"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    popen = dict(cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs = [subprocess.Popen([sys.executable, "-c", MULTI_HOST, str(port), str(pid), str(ref)], env=_env(2),
                              **popen) for pid in (0, 1)]
    try:
        procs.append(subprocess.Popen([sys.executable, "-c", SINGLE_HOST, str(ref)], env=_env(8), **popen))

        def on_exit(i, returncode):  # the 8-device run ended without its reference: don't wait for it
            if i == 2 and not Path(str(ref) + ".done").exists():
                Path(str(ref) + ".failed").touch()

        *multi, single = _wait(procs, on_exit)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            for stream in (p.stdout, p.stderr):
                if not stream.closed:
                    stream.close()
    return single, multi


@pytest.fixture(scope="module")
def single_host(runs):
    single, _ = runs
    return _result(*single)


def test_sharded_meta_step_matches_single_device(single_host):
    out = single_host
    tol = 1e-5 * max(1.0, out["params_scale"])
    assert out["params_maxdiff"] <= tol, out
    assert out["target_maxdiff"] <= tol and out["opt_maxdiff"] <= 1e-5, out
    assert out["buffers_maxdiff"] <= 1e-5 and out["metrics_maxdiff"] <= 1e-4, out
    assert out["sharded_compiles"] == 1  # lower + compile, then two chunks: one executable


def test_state_is_split_over_the_task_axis(single_host):
    out = single_host
    assert out["buffer_spec"] and out["carry_spec"] and out["tasks_spec"], out
    assert out["buffer_shard_rows"] == [2]  # 16 tasks / 8 devices
    assert out["mesh4_rows"] == [4]
    assert out["params_replicated"] and out["key_replicated"] and out["metrics_replicated"]
    # XLA partitioned the task computations: one cross-device mean, no gathering of task state
    assert out["all_reduce"] >= 1 and out["all_gather"] == 0, out


def test_train_meta_num_devices(single_host):
    out = single_host
    assert out["train_meta_step"] == 4
    assert out["sharded_compiles_after_train_meta"] == 1  # train_meta reused the compiled program
    assert out["train_meta_maxdiff"] <= 1e-5 and out["train_meta_loss_diff"] <= 1e-4, out


def test_context_and_cavia_sharded_equal_single_device(single_host):
    out = single_host
    for algo in ("context", "cavia"):
        assert out[algo + "_moved"] > 1e-4, out  # the comparison is not vacuous
        assert out[algo + "_maxdiff"] <= 1e-5, out


def test_non_divisible_task_count_is_a_clear_error(single_host):
    errors = single_host["errors"]
    for where in ("shard", "train_meta"):
        msg = errors[where]
        assert "num_tasks=12 is not divisible by the 8 devices" in msg and "num_tasks=8 or 16" in msg, msg
        assert "num_devices in [1, 2, 3, 4, 6]" in msg or "[1, 2, 4]" in msg, msg
    assert "only 8 device(s)" in errors["mesh"]
    assert errors["micro"].startswith("task_micro_batch=2 is a single-device (CPU) option"), errors["micro"]
    assert "sharded over 8 devices" in errors["micro"]


def test_two_processes_on_localhost(runs):
    """jax.distributed over 127.0.0.1 (gloo CPU collectives): 2 processes × 2 devices."""
    _, multi = runs
    results = [_result(stdout, stderr) for stdout, stderr in multi]
    for r in results:
        assert "error" not in r, (results, multi)
        assert r["params_maxdiff"] <= 1e-5, results
        assert r["local_rows"] == [4]  # 16 tasks over 4 global devices, 2 of them local
        assert r["gathered_shape"] == [16, 16, 4]
    assert results[0]["query_loss"] == results[1]["query_loss"]
