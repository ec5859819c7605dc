"""Sharding the task axis of meta-training across devices (and hosts) with ``jit`` — no ``pmap``.

A state (e.g. :class:`metadqn_jax.meta.step.MetaState`) has two kinds of leaves, told apart by a
**task-axis spec**: a tree prefix of the state whose leaves are ints — the position of the task
axis, or ``-1`` for none (:func:`task_axis_spec` builds one for a ``NamedTuple`` state from the
names of its per-task fields):

* **per-task** leaves (``0``; ``1`` under a leading meta-training seed axis), with a task axis ``T`` — for meta-training the task
  parameters ``[T]``, env states ``[T, E, ...]`` and replay buffers ``[T, capacity, ...]``
  (:data:`metadqn_jax.meta.step.PER_TASK_FIELDS`) — placed on ``NamedSharding(mesh, P("tasks"))``,
  so each device holds ``T / num_devices`` tasks;
* **shared** leaves (``-1``) — meta-parameters, meta-target, optimiser state, the step
  counter and the PRNG key — replicated on every device (``P()``).

:func:`jit_meta_train` jits a chunk function such as :func:`metadqn_jax.meta.step.meta_train`
with these input/output shardings (plus a sharding constraint on the scan carry of every
meta-step). Because the meta-step is written with ``vmap`` over tasks followed by
``grads.mean(0)``, XLA's SPMD partitioner runs each device's tasks locally (acting, buffer
writes, adaptation, per-task meta-gradients) and inserts one all-reduce for the task mean of the
meta-gradient (plus a few scalar all-reduces for the metrics); the meta-update then runs
replicated. Results equal the single-device program up to the summation order of that mean
(float32 round-off). This module knows nothing of the meta-state's fields: the caller passes
the spec.

Usage (single host; ``num_devices=None`` = every device)::

    mesh = make_mesh()                       # 1-D mesh, axis "tasks"
    state = program.init(key, hp)
    spec = task_axis_spec(state, PER_TASK_FIELDS)   # from metadqn_jax.meta
    state = shard_meta_state(state, mesh, spec)
    run = jit_meta_train(meta_train, mesh, spec)    # run(meta_step, state, hp, num_steps)
    state, metrics = run(program.meta_step, state, hp, 100)

or simply ``driver.train_meta(cfg, num_devices=8)`` / ``train_meta(cfg, mesh=mesh)``.
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
from collections.abc import Collection, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from metadqn_jax.core.compile import jit
from metadqn_jax.core.optim import is_prng_key

# Importing this module starts no jax backend (it imports neither gymnax nor metadqn_jax.meta,
# which create arrays at import time), so ``from metadqn_jax.sharding import
# initialize_distributed`` may come before jax.distributed.initialize().

TASK_AXIS = "tasks"


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
def task_axis_spec(state, per_task: Collection[str], axis: int = 0):
    """The task-axis spec of a ``NamedTuple`` state (or state class): the same ``NamedTuple``
    with ``axis`` (the position of the task axis in every leaf under the field: 0, or 1 when a
    meta-training seed axis leads) for the fields named in ``per_task`` and ``-1`` (no task
    axis) for the others. Hashable, so it can key compiled programs.

    Raises:
      ValueError: a name in ``per_task`` is not a field of the state, or ``axis < 0``.
    """
    cls = state if isinstance(state, type) else type(state)
    unknown = sorted(set(per_task) - set(cls._fields))
    if unknown:
        raise ValueError(f"per-task fields {unknown} are not fields of {cls.__name__} {cls._fields}")
    if isinstance(axis, bool) or not isinstance(axis, int) or axis < 0:
        raise ValueError(f"axis must be an int >= 0, got {axis!r}")
    return cls(**{f: (axis if f in per_task else -1) for f in cls._fields})


def task_sharding(mesh: Mesh, axis: int = 0) -> NamedSharding:
    """Axis ``axis`` split over ``"tasks"``; every other axis whole."""
    return NamedSharding(mesh, P(*([None] * axis), TASK_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def state_shardings(mesh: Mesh, spec):
    """``spec`` with each task-axis position ``k >= 0`` replaced by ``task_sharding(mesh, k)`` and
    each ``-1`` by :func:`replicated`: a *tree prefix* of the state (each sharding applies to every
    leaf under it)."""
    rep = replicated(mesh)
    return jax.tree.map(lambda axis: task_sharding(mesh, axis) if axis >= 0 else rep, spec)


def _per_task_leaves(state, spec):
    """``(name, leaf, task axis)`` of every leaf of ``state`` that ``spec`` marks per-task."""
    marks = jax.tree.map(lambda axis, sub: jax.tree.map(lambda _: axis, sub), spec, state)
    for (path, leaf), axis in zip(jax.tree_util.tree_flatten_with_path(state)[0], jax.tree.leaves(marks)):
        if axis >= 0:
            yield jax.tree_util.keystr(path).lstrip("."), leaf, axis


def state_num_tasks(state, spec) -> int:
    """The task-axis size of ``state`` (checks every per-task leaf of ``spec`` agrees)."""
    sizes = {name: (np.shape(leaf)[axis] if np.ndim(leaf) > axis else None)
             for name, leaf, axis in _per_task_leaves(state, spec)}
    distinct = set(sizes.values())
    if len(distinct) != 1 or None in distinct:
        raise ValueError(f"per-task leaves of the meta-state disagree on the task axis: {sizes}")
    return distinct.pop()


def _place(x, sharding: NamedSharding):
    """Puts one leaf on ``sharding`` (works with several processes: each process supplies its
    addressable shards from its own, identical, host copy)."""
    if is_prng_key(x):
        impl = jax.random.key_impl(x)
        return jax.random.wrap_key_data(_place(jax.random.key_data(x), sharding), impl=impl)
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return jax.device_put(x, sharding)  # already global: let jax reshard
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def shard_meta_state(state, mesh: Mesh, spec):
    """Places ``state`` on ``mesh``: the leaves ``spec`` marks per-task on ``P("tasks")``, the
    rest replicated.

    Raises:
      ValueError: the task count is not divisible by the number of devices.
    """
    check_num_tasks(state_num_tasks(state, spec), mesh)
    place = lambda sharding, sub: jax.tree.map(lambda x: _place(x, sharding), sub)
    return jax.tree.map(place, state_shardings(mesh, spec), state)


def constrain_state(state, mesh: Mesh, spec):
    """``with_sharding_constraint`` of every leaf to :func:`state_shardings` (inside ``jit``)."""
    return jax.tree.map(lambda sharding, sub: jax.lax.with_sharding_constraint(sub, sharding),
                        state_shardings(mesh, spec), state)


# ------------------------------------------------------------------------------ programs
@functools.lru_cache(maxsize=64)
def sharded_meta_step(meta_step, mesh: Mesh, spec):
    """``meta_step`` whose input and output states are constrained to the task sharding.

    Cached per ``(meta_step, mesh, spec)`` so the same wrapper (hence the same compiled program)
    is reused by every chunk.
    """

    def step(state, hp):
        state, metrics = meta_step(constrain_state(state, mesh, spec), hp)
        return constrain_state(state, mesh, spec), metrics

    step.__wrapped__ = meta_step
    return step


def _sharded_meta_train(train, meta_step, state, hp, num_steps, mesh, spec, step_spec):
    return train(sharded_meta_step(meta_step, mesh, step_spec), state, hp, num_steps)


def _unbatched_spec(spec, batch_axes: int):
    """``spec`` as one meta-step sees the state when ``train`` vmaps ``batch_axes`` leading axes
    (e.g. meta-training seeds) away: every task-axis position moves ``batch_axes`` to the left."""
    return jax.tree.map(lambda axis: axis - batch_axes if axis >= 0 else -1, spec)


@functools.lru_cache(maxsize=16)
def jit_meta_train(train, mesh: Mesh, spec, *, donate: bool = True, batch_axes: int = 0):
    """``run(meta_step, state, hp, num_steps) -> (state, metrics)``: ``train`` jitted with the
    task-axis shardings of ``spec`` — the drop-in sharded version of
    ``jax.jit(train, static_argnums=(0, 3), donate_argnums=(1,))``.

    Args:
      train: the chunk function ``train(meta_step, state, hp, num_steps) -> (state, metrics)``,
        e.g. :func:`metadqn_jax.meta.step.meta_train` (``num_steps`` meta-steps in one ``lax.scan``).
      mesh: a :func:`make_mesh` mesh.
      spec: the task-axis spec of the state (:func:`task_axis_spec`).
      donate: donate the input state's buffers.
      batch_axes: leading axes of the state that ``train`` vmaps away before calling
        ``meta_step`` (1 for a seed-batched state, :func:`metadqn_jax.driver.train_meta` with
        several keys); the per-step constraint uses the spec of the unbatched state.

    Input ``state`` must already be placed by :func:`shard_meta_state` (jit refuses a
    mismatched sharding rather than silently moving data); ``hp`` is replicated; the returned
    state keeps the same shardings and the metrics are replicated.
    """
    state_sh, rep = state_shardings(mesh, spec), replicated(mesh)
    jitted = jit(
        _sharded_meta_train,
        static_argnums=(0, 1, 4, 5, 6, 7),
        in_shardings=(state_sh, rep),
        out_shardings=(state_sh, rep),
        donate_argnums=(2,) if donate else (),
    )

    step_spec = _unbatched_spec(spec, batch_axes)

    def run(meta_step, state, hp, num_steps):
        return jitted(train, meta_step, state, shard_replicated(hp, mesh), num_steps, mesh, spec, step_spec)

    run.jitted = jitted
    run.lower = lambda meta_step, state, hp, num_steps: jitted.lower(
        train, meta_step, state, shard_replicated(hp, mesh), num_steps, mesh, spec, step_spec)
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
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)
