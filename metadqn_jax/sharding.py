"""Sharding the task axis of meta-training across devices (and hosts) with ``jit`` — no ``pmap``.

The meta-state has two kinds of leaves (see :class:`metadqn_jax.meta.step.MetaState`):

* **per-task** leaves, with a leading task axis ``T``: ``tasks`` (``EnvParams [T]``), ``carry``
  (env states ``[T, E, ...]``) and ``buffers`` (replay data ``[T, capacity, ...]``, insert
  positions and sizes ``[T]``) — placed on ``NamedSharding(mesh, P("tasks"))``, so each
  device holds ``T / num_devices`` tasks;
* **shared** leaves — meta-parameters, meta-target, optimiser state, the step counter and the
  PRNG key — replicated on every device (``P()``).

:func:`jit_meta_train` jits :func:`metadqn_jax.meta.step.meta_train` with these input/output
shardings (plus a sharding constraint on the scan carry of every meta-step). Because the
meta-step is written with ``vmap`` over tasks followed by ``grads.mean(0)``, XLA's SPMD
partitioner runs each device's tasks locally (acting, buffer writes, adaptation, per-task
meta-gradients) and inserts one all-reduce for the task mean of the meta-gradient (plus a few
scalar all-reduces for the metrics); the meta-update then runs replicated. Results equal the
single-device program up to the summation order of that mean (float32 round-off).

Usage (single host; ``num_devices=None`` = every device)::

    mesh = make_mesh()                       # 1-D mesh, axis "tasks"
    state = shard_meta_state(program.init(key, hp), mesh)
    run = jit_meta_train(mesh)               # run(meta_step, state, hp, num_steps)
    state, metrics = run(program.meta_step, state, hp, 100)

or simply ``train.train_meta(cfg, num_devices=8)`` / ``train_meta(cfg, mesh=mesh)``.
On CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (set before importing jax)
gives 8 host devices to test with.

Multi-host: call :func:`initialize_distributed` (a thin wrapper of
``jax.distributed.initialize``) in every process *before anything else touches jax* — in
particular before importing gymnax or any other ``metadqn_jax`` module (importing gymnax
already runs jax code; importing this module does not) — then
build the mesh over all global devices (``make_mesh()``). Every process must build the same
host-side meta-state (same config and key — ``program.init`` is deterministic) and call
:func:`shard_meta_state`, which assembles global arrays from each process's addressable
shards (``jax.make_array_from_callback``); afterwards every process runs the same jitted
program. Replicated leaves (parameters, metrics) are readable in every process; per-task leaves
are only partly addressable (use ``jax.experimental.multihost_utils.process_allgather``).
On CPU the cross-process collectives use gloo (``jax_cpu_collectives_implementation``,
the default in jax 0.10); ``tests/test_sharding.py`` runs two processes on 127.0.0.1.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

# metadqn_jax.meta.step is imported lazily: it imports gymnax, which creates arrays at import
# time and so starts the jax backend — after that jax.distributed.initialize() refuses to run.
# ``from metadqn_jax.sharding import initialize_distributed`` therefore starts nothing.

TASK_AXIS = "tasks"
PER_TASK_FIELDS: tuple[str, ...] = ("tasks", "carry", "buffers")  # leaves with a leading [T]
SHARED_FIELDS: tuple[str, ...] = ("params", "target_params", "opt_state", "step", "key")


# ---------------------------------------------------------------------------------- mesh
def make_mesh(num_devices: int | None = None, devices: Sequence[Any] | None = None) -> Mesh:
    """A 1-D :class:`jax.sharding.Mesh` with the single axis ``"tasks"``.

    Args:
      num_devices: how many devices to use (the first ``num_devices`` of ``devices``);
        ``None`` uses all of them.
      devices: the candidate devices (default ``jax.devices()``: every device of every
        process — on a single host, all local devices).

    Raises:
      ValueError: ``num_devices`` is not a positive integer or exceeds the devices available.
    """
    devices = list(jax.devices() if devices is None else devices)
    if num_devices is None:
        num_devices = len(devices)
    if isinstance(num_devices, bool) or not isinstance(num_devices, (int, np.integer)) or num_devices < 1:
        raise ValueError(f"num_devices must be a positive integer or None, got {num_devices!r}")
    if num_devices > len(devices):
        raise ValueError(
            f"num_devices={num_devices} but only {len(devices)} device(s) are available "
            f"({devices[0].platform if devices else 'none'}); on CPU set "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={num_devices} before importing jax"
        )
    return Mesh(np.asarray(devices[:num_devices]), (TASK_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def num_shards(mesh: Mesh) -> int:
    """Number of devices along the task axis."""
    return int(mesh.shape[TASK_AXIS])


def task_mesh(num_tasks: int, num_devices: int | None = None, task_micro_batch: int = 0) -> Mesh | None:
    """The mesh meta-training uses, validated before any compute.

    ``num_devices=None`` means every device (``jax.devices()``). Returns ``None`` — the plain
    single-device program — when that is one device; otherwise a :func:`make_mesh` mesh.

    Raises:
      ValueError: ``num_devices`` is not positive, exceeds the devices available, or does not
        divide ``num_tasks`` (the message names the valid choices); or ``task_micro_batch``
        is set while the task axis is sharded (:func:`check_micro_batch`).
    """
    if (jax.device_count() if num_devices is None else num_devices) == 1:
        return None
    mesh = make_mesh(num_devices)
    check_num_tasks(num_tasks, mesh)
    check_micro_batch(task_micro_batch, mesh)
    return mesh


def check_micro_batch(task_micro_batch: int, mesh: Mesh) -> None:
    """``MetaConfig.task_micro_batch`` (a ``lax.map`` over the task axis) is a single-device
    option: over a sharded task axis it would scan across devices. Raises a clear ``ValueError``."""
    if task_micro_batch:
        raise ValueError(
            f"task_micro_batch={task_micro_batch} is a single-device (CPU) option: with the task axis "
            f"sharded over {num_shards(mesh)} devices set task_micro_batch=0, or num_devices=1"
        )


def check_num_tasks(num_tasks: int, mesh: Mesh) -> None:
    """Raises a clear ``ValueError`` unless ``num_tasks`` is divisible by the mesh's task axis.

    Padding would need a *masked* task mean of the meta-gradient (padded tasks must not count),
    which the meta-step does not implement, so non-divisible task counts are rejected.
    """
    n = num_shards(mesh)
    if num_tasks % n:
        lower = (num_tasks // n) * n
        upper = lower + n
        divisors = [d for d in range(1, n + 1) if num_tasks % d == 0]
        raise ValueError(
            f"num_tasks={num_tasks} is not divisible by the {n} devices of the '{TASK_AXIS}' mesh "
            f"axis: every device must hold the same number of tasks. Use num_tasks="
            f"{upper if lower == 0 else f'{lower} or {upper}'} (a multiple of {n}), or num_devices "
            f"in {divisors} (a divisor of {num_tasks})."
        )


# ------------------------------------------------------------------------------ shardings
def task_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (task) axis split over ``"tasks"``; every other axis whole."""
    return NamedSharding(mesh, P(TASK_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def state_shardings(mesh: Mesh):
    """A :class:`~metadqn_jax.meta.step.MetaState` of shardings: a *tree prefix* of any
    meta-state (each field's sharding applies to every leaf under it)."""
    from metadqn_jax.meta import MetaState

    task, rep = task_sharding(mesh), replicated(mesh)
    return MetaState(**{f: task if f in PER_TASK_FIELDS else rep for f in MetaState._fields})


def _per_task_leaves(state):
    for field in PER_TASK_FIELDS:
        for path, leaf in jax.tree_util.tree_flatten_with_path(getattr(state, field))[0]:
            yield field + jax.tree_util.keystr(path), leaf


def state_num_tasks(state) -> int:
    """The task-axis size of a meta-state (checks every per-task leaf agrees)."""
    sizes = {name: (np.shape(leaf)[0] if np.ndim(leaf) else None) for name, leaf in _per_task_leaves(state)}
    distinct = set(sizes.values())
    if len(distinct) != 1 or None in distinct:
        raise ValueError(f"per-task leaves of the meta-state disagree on the task axis: {sizes}")
    return distinct.pop()


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _place(x, sharding: NamedSharding):
    """Puts one leaf on ``sharding`` (works with several processes: each process supplies its
    addressable shards from its own, identical, host copy)."""
    if _is_key(x):
        impl = jax.random.key_impl(x)
        return jax.random.wrap_key_data(_place(jax.random.key_data(x), sharding), impl=impl)
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return jax.device_put(x, sharding)  # already global: let jax reshard
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def shard_meta_state(state, mesh: Mesh):
    """Places a meta-state on ``mesh``: per-task leaves on ``P("tasks")``, the rest replicated.

    Raises:
      ValueError: the task count is not divisible by the number of devices.
    """
    from metadqn_jax.meta import MetaState

    check_num_tasks(state_num_tasks(state), mesh)
    shardings = state_shardings(mesh)

    def place_field(field):
        sharding = getattr(shardings, field)
        return jax.tree.map(lambda x: _place(x, sharding), getattr(state, field))

    return MetaState(*(place_field(f) for f in MetaState._fields))


def constrain_state(state, mesh: Mesh):
    """``with_sharding_constraint`` of every leaf to :func:`state_shardings` (inside ``jit``)."""
    from metadqn_jax.meta import MetaState

    shardings = state_shardings(mesh)
    return MetaState(*(
        jax.lax.with_sharding_constraint(getattr(state, f), getattr(shardings, f))
        for f in MetaState._fields
    ))


# ------------------------------------------------------------------------------ programs
@functools.lru_cache(maxsize=64)
def sharded_meta_step(meta_step, mesh: Mesh):
    """``meta_step`` whose input and output states are constrained to the task sharding.

    Cached per ``(meta_step, mesh)`` so the same wrapper (hence the same compiled program) is
    reused by every chunk.
    """

    def step(state, hp):
        state, metrics = meta_step(constrain_state(state, mesh), hp)
        return constrain_state(state, mesh), metrics

    step.__wrapped__ = meta_step
    return step


def _sharded_meta_train(meta_step, state, hp, num_steps, mesh):
    from metadqn_jax.meta import meta_train

    return meta_train(sharded_meta_step(meta_step, mesh), state, hp, num_steps)


@functools.lru_cache(maxsize=16)
def jit_meta_train(mesh: Mesh, *, donate: bool = True):
    """``run(meta_step, state, hp, num_steps) -> (state, metrics)``: :func:`meta_train` jitted
    with the task-axis shardings (the drop-in sharded version of
    ``jax.jit(meta_train, static_argnums=(0, 3), donate_argnums=(1,))``).

    Input ``state`` must already be placed by :func:`shard_meta_state` (jit refuses a
    mismatched sharding rather than silently moving data); ``hp`` is replicated; the returned
    state keeps the same shardings and the metrics are replicated.
    """
    state_sh, rep = state_shardings(mesh), replicated(mesh)
    jitted = jax.jit(
        _sharded_meta_train,
        static_argnums=(0, 3, 4),
        in_shardings=(state_sh, rep),
        out_shardings=(state_sh, rep),
        donate_argnums=(1,) if donate else (),
    )

    def run(meta_step, state, hp, num_steps):
        return jitted(meta_step, state, shard_replicated(hp, mesh), num_steps, mesh)

    run.jitted = jitted
    run.lower = lambda meta_step, state, hp, num_steps: jitted.lower(
        meta_step, state, shard_replicated(hp, mesh), num_steps, mesh)
    return run


def shard_replicated(tree, mesh: Mesh):
    """Replicates every leaf of ``tree`` (e.g. the traced hyper-parameters) on ``mesh``;
    leaves already replicated there are passed through untouched."""
    rep = replicated(mesh)

    def put(x):
        if isinstance(x, jax.Array) and x.sharding == rep:
            return x
        return _place(x, rep)

    return jax.tree.map(put, tree)


# ------------------------------------------------------------------------------ multi-host
def initialize_distributed(
    coordinator: str,
    num_processes: int,
    process_id: int,
    *,
    local_device_ids: int | Sequence[int] | None = None,
    initialization_timeout: int = 300,
) -> None:
    """``jax.distributed.initialize`` for multi-host task sharding (call before other jax use).

    Args:
      coordinator: ``"host:port"`` of process 0 (e.g. ``"127.0.0.1:12355"``).
      num_processes: total number of processes.
      process_id: this process's id in ``[0, num_processes)``.
      local_device_ids: restrict this process to some of its local devices (GPU hosts).

    After it, ``jax.devices()`` lists every process's devices and :func:`make_mesh` spans them.
    On CPU the collectives go through gloo (jax's default CPU collectives implementation).
    """
    if not (isinstance(num_processes, int) and num_processes >= 1):
        raise ValueError(f"num_processes must be a positive integer, got {num_processes!r}")
    if not (isinstance(process_id, int) and 0 <= process_id < num_processes):
        raise ValueError(f"process_id must be in [0, {num_processes}), got {process_id!r}")
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
            local_device_ids=local_device_ids,
            initialization_timeout=initialization_timeout,
        )
    except RuntimeError as e:
        raise RuntimeError(
            f"{e}\nHint: call metadqn_jax.sharding.initialize_distributed() before importing "
            "gymnax or any other metadqn_jax module (importing gymnax already runs jax code)."
        ) from e


def gather_to_host(x):
    """A host numpy copy of a (possibly multi-process, sharded) array."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)
