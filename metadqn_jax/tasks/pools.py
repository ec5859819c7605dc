"""Pure pool building: the fixed, disjoint train / val / test task pools of a task family.

Everything here is a function of a :class:`TaskSpace` (what a validated
:class:`~metadqn_jax.tasks.family.TaskFamily` describes), the pool sizes and a seed; nothing
holds state. The promises:

* Determinism: the pools depend only on ``(space, sizes, split_seed)``, in any process.
* Disjointness: no task (row of field values, ``-0.0 == 0.0``) appears twice in or across
  splits. A split whose draws repeat a task draws again (up to :data:`MAX_ROUNDS` rounds).
* Stability: each split has its own random stream, ``fold_in(key(split_seed), SPLIT_STREAM[split])``,
  and the splits are filled in :data:`FILL_ORDER` (test, val, train), so the test pool depends
  only on ``num_test`` and the val pool on ``num_test, num_val``, never on ``num_train``.
* Layout: every pool is an ``EnvParams`` with numpy leaves ``[num_tasks(split), ...]`` of the
  canonical dtypes (float32, int32, bool); fixed fields repeat the base value.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

EnvParams = Any  # a gymnax EnvParams (flax struct dataclass); batched: every leaf [n, ...]
SampleFn = Callable[[jax.Array, int], Mapping[str, jax.Array]]

SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
SPLIT_STREAM = {"train": 0, "val": 1, "test": 2}  # fold_in ids of the per-split random streams
FILL_ORDER = ("test", "val", "train")  # test tasks never depend on the train / val sizes
MAX_ROUNDS = 64  # redraw rounds when a split's draws contain duplicate tasks
CHUNK = 256  # uniform draws come in fixed-size chunks: one compiled program for every pool


class TaskSpace(NamedTuple):
    """What pool building reads from a (validated) task family."""

    # the family's base task (not derived); its class is the env's params class
    base_params: EnvParams
    # the numeric pytree fields of the params class, in declaration order
    fields: tuple[str, ...]
    # field -> canonical dtype (float32 / int32 / bool)
    dtypes: Mapping[str, np.dtype]
    # field -> (low, high) floats: uniform (integers in [low, high] for int fields)
    ranges: Mapping[str, tuple[float, float]]
    # field -> values: uniform choice
    choices: Mapping[str, tuple[Any, ...]]
    # optional fn(key, n) -> {field: [n]} for the remaining varying fields
    sample_fn: SampleFn | None
    # the environment's derived-field hook (envs.derived_fields), elementwise on numpy
    env_derive: Callable[[EnvParams], EnvParams] | None
    # the family's own derive hook on one task (vmapped over a batch)
    derive: Callable[[EnvParams], EnvParams] | None


def canonical_split(split: str) -> str:
    """``"train"``, ``"val"`` (also ``"valid"``, ``"validation"``) or ``"test"``.

    Raises:
      ValueError: an unknown split name.
    """
    if split not in SPLIT_ALIASES:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    return SPLIT_ALIASES[split]


def canonical_dtype(value: Any) -> np.dtype | None:
    """float32 / int32 / bool for numeric leaves; ``None`` for anything else."""
    kind = np.asarray(value).dtype.kind
    if kind == "f":
        return np.dtype(np.float32)
    if kind in "iu":
        return np.dtype(np.int32)
    if kind == "b":
        return np.dtype(np.bool_)
    return None


# --------------------------------------------------------------------- random streams
@jax.jit
def _uniform_chunk(key: jax.Array, stream: jax.Array, chunk: jax.Array) -> jax.Array:
    """``U[0, 1)`` float32 ``[CHUNK]`` from ``fold_in(fold_in(key, stream), chunk)``."""
    k = jax.random.fold_in(jax.random.fold_in(key, stream), chunk)
    return jax.random.uniform(k, (CHUNK,), jnp.float32)


def uniform01(key: jax.Array, stream: int, m: int) -> np.ndarray:
    """``U[0, 1)`` float32 numpy ``[m]``, deterministic in ``(key, stream)``; the first ``m``
    draws of the stream, so a larger ``m`` extends a smaller one."""
    n_chunks = -(-m // CHUNK)
    parts = [
        np.asarray(_uniform_chunk(key, np.uint32(stream), np.uint32(c)))
        for c in range(n_chunks)
    ]
    return np.concatenate(parts)[:m]


def stream_id(name: str) -> int:
    """A stable (process-independent) fold_in id for a field's random stream."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


# ------------------------------------------------------------------------ candidates
def draw_fields(space: TaskSpace, key: jax.Array, m: int) -> dict[str, np.ndarray]:
    """Raw draws of the varying fields, each numpy ``[m]`` in its canonical dtype.

    ``ranges`` / ``choices`` use one shared jitted uniform stream per field (keyed by the
    field's name), so building a pool compiles almost nothing; ``sample_fn`` runs eagerly on
    ``fold_in(key, stream_id("<sample_fn>"))``.
    """
    out: dict[str, np.ndarray] = {}
    for field, (low, high) in space.ranges.items():
        u = uniform01(key, stream_id(field), m).astype(np.float64)
        if space.dtypes[field].kind == "i":
            span = int(high) - int(low)
            offset = np.minimum(np.floor(u * (span + 1)), span)
            out[field] = (int(low) + offset).astype(np.int32)
        else:
            out[field] = np.clip(low + u * (high - low), low, high).astype(np.float32)
    for field, values in space.choices.items():
        u = uniform01(key, stream_id(field), m).astype(np.float64)
        idx = np.minimum(np.floor(u * len(values)), len(values) - 1).astype(np.int64)
        out[field] = np.asarray(values, dtype=space.dtypes[field])[idx]
    if space.sample_fn is not None:
        drawn = space.sample_fn(jax.random.fold_in(key, stream_id("<sample_fn>")), m)
        out.update({f: np.asarray(v).astype(space.dtypes[f]) for f, v in drawn.items()})
    return out


def derive_task(space: TaskSpace, params: EnvParams) -> EnvParams:
    """One task with its derived fields recomputed: the env's hook, then the family's."""
    if space.env_derive is not None:
        params = space.env_derive(params)
    if space.derive is not None:
        params = space.derive(params)
    return params


def candidates(space: TaskSpace, key: jax.Array, m: int) -> dict[str, np.ndarray]:
    """``m`` full tasks (derived fields recomputed) as ``field -> numpy [m, ...]``."""
    drawn = draw_fields(space, key, m)
    values: dict[str, np.ndarray] = {}
    for f in space.fields:
        if f in drawn:
            values[f] = drawn[f]
        else:
            base = np.asarray(getattr(space.base_params, f), dtype=space.dtypes[f])
            values[f] = np.broadcast_to(base, (m, *base.shape)).copy()
    batched = space.base_params.replace(**values)
    if space.env_derive is not None:  # elementwise: numpy float32 arithmetic, exactly as on device
        batched = space.env_derive(batched)
    if space.derive is not None:
        batched = jax.vmap(space.derive)(jax.tree.map(jnp.asarray, batched))
    return {f: np.asarray(getattr(batched, f)).astype(space.dtypes[f]) for f in space.fields}


def row_keys(values: Mapping[str, np.ndarray], m: int) -> list[bytes]:
    """One hashable key per task (``-0.0`` and ``0.0`` compare equal)."""
    cols = [
        np.ascontiguousarray(np.where(v == 0, np.zeros_like(v), v).reshape(m, -1))
        for v in values.values()
    ]
    return [b"".join(c[i].tobytes() for c in cols) for i in range(m)]


# ---------------------------------------------------------------------------- pools
def build_pools(
    space: TaskSpace, sizes: Mapping[str, int], split_seed: int, name: str
) -> dict[str, EnvParams]:
    """The disjoint pools of every split (see the module docstring for the guarantees).

    Args:
      space: the family's task space.
      sizes: ``{split: number of distinct tasks}`` for every split in :data:`SPLITS` (> 0).
      split_seed: seed of the pools.
      name: the family's name, for the error message.

    Returns:
      ``{split: EnvParams}`` in :data:`SPLITS` order, numpy leaves ``[sizes[split], ...]``.

    Raises:
      ValueError: fewer distinct tasks than ``sum(sizes.values())`` after :data:`MAX_ROUNDS`
        redraw rounds of a split.
    """
    root = jax.random.key(int(split_seed))
    seen: set[bytes] = set()
    pools: dict[str, EnvParams] = {}
    for split in FILL_ORDER:
        need = sizes[split]
        stream = jax.random.fold_in(root, SPLIT_STREAM[split])
        chunks: list[dict[str, np.ndarray]] = []
        have = 0
        for round_ in range(MAX_ROUNDS):
            m = need if round_ == 0 else max(2 * (need - have), 64)
            cand = candidates(space, jax.random.fold_in(stream, round_), m)
            rows = row_keys(cand, m)
            keep = []
            for i, row in enumerate(rows):
                if row not in seen:
                    seen.add(row)
                    keep.append(i)
                    if have + len(keep) == need:
                        break
            chunks.append({f: v[np.asarray(keep, dtype=np.int64)] for f, v in cand.items()})
            have += len(keep)
            if have == need:
                break
        else:
            raise ValueError(
                f"family {name!r}: could only draw {len(seen)} distinct tasks for "
                f"splits needing {sum(sizes.values())}; lower num_train/num_val/num_test"
            )
        merged = {f: np.concatenate([c[f] for c in chunks]) for f in space.fields}
        pools[split] = space.base_params.replace(**merged)
    return {s: pools[s] for s in SPLITS}
