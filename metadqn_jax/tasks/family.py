"""Task families: distributions over gymnax ``EnvParams`` with disjoint train / val / test splits.

A *task* is one environment's ``EnvParams`` (a flax struct dataclass). A :class:`TaskFamily`
describes how tasks vary: some fields drawn uniformly from ``ranges``, some from discrete
``choices``, optionally some from a custom ``sample_fn``; every other field keeps its value in
``base_params``. Derived fields are recomputed by a ``derive`` hook (CartPole's ``total_mass``
and ``polemass_length`` are recomputed automatically for every CartPole-based environment).

Splits. From ``split_seed`` the family deterministically draws a finite pool of *distinct*
tasks per split (``num_train`` / ``num_val`` / ``num_test``); no task appears twice, so the
splits are disjoint. Each split has its own random stream and the pools are filled in the
order test, val, train, so the test tasks depend only on ``(split_seed, num_test)`` (plus the
family definition), not on how many training tasks you ask for.

Batched tasks. ``family.tasks(split)`` returns the whole pool and ``family.sample(key, n,
split)`` a random batch of it; in both every leaf carries a leading task axis (fixed fields are
broadcast), floats are float32 and ints int32, so a batch of tasks is one ``jax.vmap``::

    import jax
    from metadqn_jax.tasks.family import TaskFamily, get_family

    family = TaskFamily("my-pole", "CartPole-v1", ranges={"length": (0.3, 1.2)})
    env, base_params = family.env()
    params = family.sample(jax.random.key(0), 8)           # EnvParams, leaves [8]
    keys = jax.random.split(jax.random.key(1), 8)
    obs, state = jax.vmap(env.reset)(keys, params)          # obs [8, 4]
    actions = jax.numpy.zeros(8, jax.numpy.int32)
    obs, state, reward, terminated, truncated, info = jax.vmap(env.step)(
        keys, state, actions, params)
    print(family.describe())
    print(get_family("pointnav-rotated").describe())

``sample`` is pure JAX (an on-device random index into a constant pool), so it can be called
inside ``jax.jit`` with static ``n`` and ``split``. Built-in families: see :data:`FAMILIES`
(``list_families()``, ``get_family(name)``); add your own with :func:`register_family`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments.classic_control import cartpole

from metadqn_jax import envs

EnvParams = Any  # a gymnax EnvParams (flax struct dataclass); batched: every leaf [n, ...]
SampleFn = Callable[[jax.Array, int], Mapping[str, jax.Array]]

SPLITS: tuple[str, ...] = ("train", "val", "test")
_SPLIT_ALIASES = {
    "train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"
}
_SPLIT_STREAM = {"train": 0, "val": 1, "test": 2}  # fold_in ids of the per-split random streams
_FILL_ORDER = ("test", "val", "train")  # test tasks never depend on the train / val sizes
_MAX_ROUNDS = 64  # redraw rounds when a split's draws contain duplicate tasks

# Derived fields per params class: name -> formula (listed in error messages).
_CARTPOLE_DERIVED: dict[str, str] = {
    "total_mass": "masscart + masspole",
    "polemass_length": "masspole * length",
}


# --------------------------------------------------------------------------- helpers
def derive_cartpole(params: EnvParams) -> EnvParams:
    """Recomputes CartPole's derived fields: ``total_mass``, ``polemass_length``.

    Works on single (scalar leaves) and batched (leaves ``[n]``) CartPole params alike.
    """
    return params.replace(
        total_mass=params.masscart + params.masspole,
        polemass_length=params.masspole * params.length,
    )


def stack_params(params: Sequence[EnvParams]) -> EnvParams:
    """Stacks single tasks into one batched task: ``n x (leaves [...]) -> leaves [n, ...]``."""
    if len(params) == 0:
        raise ValueError("stack_params needs at least one EnvParams")
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *params)


def index_params(batched: EnvParams, i: int | jax.Array) -> EnvParams:
    """Task ``i`` of a batch: ``leaves [n, ...] -> leaves [...]`` (``i`` an int, or an index
    array ``[m]`` giving ``leaves [m, ...]``)."""
    return jax.tree.map(lambda x: x[i], batched)


def broadcast_params(params: EnvParams, n: int) -> EnvParams:
    """Repeats one task ``n`` times: ``leaves [...] -> leaves [n, ...]``."""
    return jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(x), (n, *jnp.shape(x))), params)


def goal_circle_sampler(radius: float) -> SampleFn:
    """A ``sample_fn`` putting PointNav's goal uniformly on a circle of ``radius``.

    Returns ``fn(key, n) -> {"goal_x": [n], "goal_y": [n]}`` with angle ``U[0, 2 pi)``.
    """

    def sample_goal(key: jax.Array, n: int) -> dict[str, jax.Array]:
        angle = jax.random.uniform(key, (n,), jnp.float32, 0.0, 2.0 * jnp.pi)
        return {"goal_x": radius * jnp.cos(angle), "goal_y": radius * jnp.sin(angle)}

    return sample_goal


_CHUNK = 256  # uniform draws come in fixed-size chunks: one compiled program for every pool


@jax.jit
def _uniform_chunk(key: jax.Array, stream: jax.Array, chunk: jax.Array) -> jax.Array:
    """``U[0, 1)`` float32 ``[_CHUNK]`` from ``fold_in(fold_in(key, stream), chunk)``."""
    k = jax.random.fold_in(jax.random.fold_in(key, stream), chunk)
    return jax.random.uniform(k, (_CHUNK,), jnp.float32)


def _uniform01(key: jax.Array, stream: int, m: int) -> np.ndarray:
    """``U[0, 1)`` float32 numpy ``[m]``, deterministic in ``(key, stream)``; the first ``m``
    draws of the stream, so a larger ``m`` extends a smaller one."""
    n_chunks = -(-m // _CHUNK)
    parts = [
        np.asarray(_uniform_chunk(key, np.uint32(stream), np.uint32(c)))
        for c in range(n_chunks)
    ]
    return np.concatenate(parts)[:m]


def _stream_id(name: str) -> int:
    """A stable (process-independent) fold_in id for a field's random stream."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def _canonical_dtype(value: Any) -> np.dtype | None:
    """float32 / int32 / bool for numeric leaves; ``None`` for anything else."""
    kind = np.asarray(value).dtype.kind
    if kind == "f":
        return np.dtype(np.float32)
    if kind in "iu":
        return np.dtype(np.int32)
    if kind == "b":
        return np.dtype(np.bool_)
    return None


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


# ----------------------------------------------------------------------- TaskFamily
@dataclasses.dataclass(frozen=True, eq=False)
class TaskFamily:
    """A distribution over one environment's ``EnvParams``, with disjoint fixed splits.

    Attributes:
      name: family name (registry key), e.g. ``"cartpole-physics"``.
      env_id: any id :func:`metadqn_jax.envs.registry.make_env` accepts.
      ranges: ``field -> (low, high)``: the field is drawn uniformly from ``[low, high]``
        (an int field, e.g. ``max_steps_in_episode``, uniformly from the integers in it).
      choices: ``field -> (v1, v2, ...)``: the field is drawn uniformly from these values.
      sample_fn: optional ``fn(key, n) -> {field: array [n]}`` for tasks that need a custom
        (e.g. joint) distribution; its fields must not also be in ``ranges`` / ``choices``.
      base_params: the values of every non-varying field (default: the env's defaults).
      derive: optional ``fn(EnvParams) -> EnvParams`` on one task recomputing derived fields,
        applied after sampling (after the automatic CartPole derivation, for CartPole envs).
      description: free text shown by :meth:`describe`.
      gamma: recommended DQN discount for this family.
      meta_defaults: recommended meta-training settings, ``{field: value}`` for the
        :class:`~metadqn_jax.meta.step.MetaConfig` fields in :data:`FAMILY_META_FIELDS`; a
        ``MetaConfig`` that leaves such a field at ``None`` takes the family's value (else the
        library's default). E.g. CartPole's long episodes want long-lived tasks and queries
        from the task's buffer (BENCHMARKS.md §1).
      split_seed: seed of the deterministic task pools.
      num_train, num_val, num_test: pool sizes (distinct tasks per split, all > 0).
      sample_desc: how ``sample_fn`` varies tasks, for :meth:`describe`.

    Equality and hashing are by identity (a family can be a static ``jit`` argument);
    use ``dataclasses.replace(family, split_seed=1)`` for a variant.
    """

    name: str
    env_id: str
    ranges: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    _: dataclasses.KW_ONLY
    choices: Mapping[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)
    sample_fn: SampleFn | None = None
    base_params: EnvParams | None = None
    derive: Callable[[EnvParams], EnvParams] | None = None
    description: str = ""
    gamma: float = 0.99
    meta_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    split_seed: int = 0
    num_train: int = 1024
    num_val: int = 128
    num_test: int = 128
    sample_desc: str = ""

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        env, default = envs.make_env(self.env_id)  # ValueError naming the unknown id
        set_ = functools.partial(object.__setattr__, self)
        if not isinstance(self.meta_defaults, Mapping):
            raise ValueError(f"family {self.name!r}: meta_defaults must be a mapping field -> value")
        bad = [k for k in self.meta_defaults if k not in FAMILY_META_FIELDS]
        if bad:
            raise ValueError(f"family {self.name!r}: meta_defaults field(s) {bad} cannot be set by a family; "
                             f"allowed: {', '.join(FAMILY_META_FIELDS)}")
        set_("meta_defaults", dict(self.meta_defaults))
        set_("_env", env)
        base = default if self.base_params is None else self.base_params
        if not isinstance(base, type(default)):
            raise ValueError(
                f"family {self.name!r}: base_params is a {type(base).__name__}, but "
                f"{self.env_id} needs a {type(default).__name__}"
            )
        set_("base_params", base)

        fields = [
            f.name for f in dataclasses.fields(default) if f.metadata.get("pytree_node", True)
        ]
        dtypes: dict[str, np.dtype] = {}
        for f in fields:
            dt = _canonical_dtype(getattr(default, f))
            if dt is None:
                raise ValueError(
                    f"family {self.name!r}: field {f!r} of {self.env_id} is not numeric; "
                    "TaskFamily can only batch numeric EnvParams"
                )
            dtypes[f] = dt
        set_("_fields", tuple(fields))
        set_("_dtypes", dtypes)
        derived = _CARTPOLE_DERIVED if isinstance(default, cartpole.EnvParams) else {}
        set_("_derived", derived)

        def check_field(field: str, where: str) -> None:
            if not isinstance(field, str) or field not in dtypes:
                raise ValueError(
                    f"family {self.name!r}: {where} field {field!r} is not a field of "
                    f"{self.env_id}'s {type(default).__name__}; valid fields: {', '.join(fields)}"
                )
            if field in derived:
                raise ValueError(
                    f"family {self.name!r}: {where} field {field!r} is derived "
                    f"({field} = {derived[field]}) and recomputed automatically; vary its "
                    "inputs instead"
                )
            if np.ndim(getattr(base, field)) != 0:
                raise ValueError(
                    f"family {self.name!r}: {where} field {field!r} is not a scalar; only "
                    "scalar fields can vary"
                )

        # ranges
        if not isinstance(self.ranges, Mapping):
            raise ValueError(f"family {self.name!r}: ranges must be a mapping field -> (low, high)")
        ranges: dict[str, tuple[float, float]] = {}
        for field, bounds in self.ranges.items():
            check_field(field, "ranges")
            if (
                not isinstance(bounds, Sequence)
                or len(bounds) != 2
                or not all(_is_number(b) for b in bounds)
            ):
                raise ValueError(
                    f"family {self.name!r}: ranges[{field!r}] must be a pair (low, high) of "
                    f"numbers, got {bounds!r}"
                )
            low, high = float(bounds[0]), float(bounds[1])
            if not (math.isfinite(low) and math.isfinite(high)):
                raise ValueError(
                    f"family {self.name!r}: ranges[{field!r}] = ({low}, {high}) is not finite"
                )
            if low > high:
                raise ValueError(
                    f"family {self.name!r}: ranges[{field!r}] has low {low} > high {high}"
                )
            if dtypes[field].kind == "b":
                raise ValueError(
                    f"family {self.name!r}: field {field!r} is boolean; vary it with choices"
                )
            if dtypes[field].kind == "i" and not (low.is_integer() and high.is_integer()):
                raise ValueError(
                    f"family {self.name!r}: field {field!r} is an integer field; "
                    f"ranges[{field!r}] = ({low}, {high}) needs integer bounds"
                )
            ranges[field] = (low, high)
        set_("ranges", types.MappingProxyType(ranges))

        # choices
        if not isinstance(self.choices, Mapping):
            raise ValueError(f"family {self.name!r}: choices must be a mapping field -> values")
        choices: dict[str, tuple[float, ...]] = {}
        for field, values in self.choices.items():
            check_field(field, "choices")
            if field in ranges:
                raise ValueError(
                    f"family {self.name!r}: field {field!r} is in both ranges and choices"
                )
            if not isinstance(values, Sequence) or isinstance(values, str):
                raise ValueError(
                    f"family {self.name!r}: choices[{field!r}] must be a sequence of values"
                )
            if len(values) == 0:
                raise ValueError(f"family {self.name!r}: choices[{field!r}] is empty")
            if not all(_is_number(v) or isinstance(v, bool) for v in values):
                raise ValueError(
                    f"family {self.name!r}: choices[{field!r}] must hold numbers, got {values!r}"
                )
            if not all(math.isfinite(float(v)) for v in values):
                raise ValueError(
                    f"family {self.name!r}: choices[{field!r}] = {tuple(values)!r} is not finite"
                )
            if dtypes[field].kind == "i" and not all(float(v).is_integer() for v in values):
                raise ValueError(
                    f"family {self.name!r}: field {field!r} is an integer field; "
                    f"choices[{field!r}] = {tuple(values)!r} must be integers"
                )
            choices[field] = tuple(values)
        set_("choices", types.MappingProxyType(choices))

        # sizes, seed, gamma
        for attr in ("num_train", "num_val", "num_test"):
            value = getattr(self, attr)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"family {self.name!r}: {attr} must be an int > 0, got {value!r}")
        if not isinstance(self.split_seed, (int, np.integer)) or isinstance(self.split_seed, bool):
            raise ValueError(
                f"family {self.name!r}: split_seed must be an int, got {self.split_seed!r}"
            )
        if not (_is_number(self.gamma) and 0.0 < float(self.gamma) <= 1.0):
            raise ValueError(f"family {self.name!r}: gamma must be in (0, 1], got {self.gamma!r}")
        if self.derive is not None and not callable(self.derive):
            raise ValueError(f"family {self.name!r}: derive must be callable")

        # sample_fn: its output fields, checked on abstract values (no compute)
        sample_fields: tuple[str, ...] = ()
        if self.sample_fn is not None:
            if not callable(self.sample_fn):
                raise ValueError(f"family {self.name!r}: sample_fn must be callable")
            out = jax.eval_shape(lambda: self.sample_fn(jax.random.key(0), 3))
            if not isinstance(out, Mapping) or not out:
                raise ValueError(
                    f"family {self.name!r}: sample_fn(key, n) must return a non-empty dict "
                    "field -> array [n]"
                )
            for field, value in out.items():
                check_field(field, "sample_fn")
                if field in ranges or field in choices:
                    raise ValueError(
                        f"family {self.name!r}: field {field!r} is produced by sample_fn and "
                        "also listed in ranges/choices"
                    )
                if getattr(value, "shape", None) != (3,):
                    raise ValueError(
                        f"family {self.name!r}: sample_fn(key, n)[{field!r}] must have shape "
                        f"[n], got {getattr(value, 'shape', None)}"
                    )
            sample_fields = tuple(out)
        set_("_sample_fields", sample_fields)

        # enough distinct tasks? (known statically when every varying field is discrete)
        if self.sample_fn is None and all(dtypes[f].kind != "f" for f in ranges):
            support = math.prod(int(hi - lo) + 1 for lo, hi in ranges.values()) * math.prod(
                len({float(v) for v in vals}) for vals in choices.values()
            )
            if support < self.total_tasks:
                raise ValueError(
                    f"family {self.name!r} has only {support} distinct tasks but its disjoint "
                    f"splits need num_train + num_val + num_test = {self.total_tasks}; lower "
                    "the pool sizes or add a continuous range"
                )

    # -------------------------------------------------------------------- accessors
    @property
    def varying_fields(self) -> tuple[str, ...]:
        """Fields that vary across tasks (ranges, choices, then sample_fn outputs)."""
        return (*self.ranges, *self.choices, *self._sample_fields)

    @property
    def total_tasks(self) -> int:
        """``num_train + num_val + num_test``."""
        return int(self.num_train + self.num_val + self.num_test)

    @property
    def episode_length(self) -> int:
        """``base_params.max_steps_in_episode``."""
        return int(self.base_params.max_steps_in_episode)

    def num_tasks(self, split: str = "train") -> int:
        """Pool size of ``split`` (``"train"``, ``"val"``/``"validation"``, ``"test"``)."""
        return int(getattr(self, {"train": "num_train", "val": "num_val", "test": "num_test"}[
            _canonical_split(split)
        ]))

    def env(self) -> tuple[Any, EnvParams]:
        """``(env, base_params)``: the (cached) environment and the family's base task with
        derived fields recomputed. The same env object is returned every call, so jitted
        ``env.step`` / ``env.reset`` are compiled once."""
        return self._env, self._derive_one(self.base_params)

    def describe(self) -> str:
        """One line: name, environment, varying fields and their distributions."""
        parts = [f"{f}~U[{_fmt(lo)}, {_fmt(hi)}]" for f, (lo, hi) in self.ranges.items()]
        parts += [
            f"{f} in {{{', '.join(_fmt(float(v)) for v in vals)}}}"
            for f, vals in self.choices.items()
        ]
        if self._sample_fields:
            parts.append(self.sample_desc or f"{', '.join(self._sample_fields)} ~ sample_fn")
        varying = ", ".join(parts) if parts else "no varying fields"
        line = (
            f"{self.name}: {self.env_id}; {varying}; gamma {self.gamma:g}, "
            f"{self.episode_length} steps, splits {self.num_train}/{self.num_val}/{self.num_test}"
        )
        if self.meta_defaults:
            line += "; meta " + ", ".join(f"{k}={v}" for k, v in self.meta_defaults.items())
        if self.description:
            line += f" - {self.description}"
        return " ".join(line.split())  # one line, whatever the description holds

    # --------------------------------------------------------------------- sampling
    def tasks(self, split: str = "train") -> EnvParams:
        """The whole pool of ``split``: EnvParams with every leaf ``[num_tasks(split), ...]``."""
        pool = self._pools[_canonical_split(split)]
        return jax.tree.map(jnp.asarray, pool)

    def sample(
        self, key: jax.Array, n: int, split: str = "train", *, replace: bool = True
    ) -> EnvParams:
        """``n`` tasks drawn uniformly from the pool of ``split``.

        Pure JAX (a random index into a constant pool): callable inside ``jit`` / ``vmap``
        with static ``n``, ``split`` and ``replace``.

        Args:
          key: PRNG key.
          n: number of tasks (> 0; ``<= num_tasks(split)`` when ``replace=False``).
          split: ``"train"``, ``"val"`` (or ``"validation"``) or ``"test"``.
          replace: draw with replacement (default) or ``n`` distinct tasks.

        Returns:
          EnvParams with every leaf ``[n, ...]`` (floats float32, ints int32).
        """
        split = _canonical_split(split)
        size = self.num_tasks(split)
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n <= 0:
            raise ValueError(f"sample: n must be a static int > 0, got {n!r}")
        if replace:
            idx = jax.random.randint(key, (n,), 0, size)
        else:
            if n > size:
                raise ValueError(
                    f"sample: cannot draw {n} distinct tasks from the {size} {split} tasks "
                    f"of {self.name!r}"
                )
            idx = jax.random.choice(key, size, (n,), replace=False)
        return jax.tree.map(lambda x: jnp.asarray(x)[idx], self._pools[split])

    # ---------------------------------------------------------------- pool building
    def _derive_one(self, params: EnvParams) -> EnvParams:
        if self._derived:
            params = derive_cartpole(params)
        if self.derive is not None:
            params = self.derive(params)
        return params

    def _draw(self, key: jax.Array, m: int) -> dict[str, np.ndarray]:
        """Raw draws of the varying fields, each ``[m]`` (numpy, canonical dtypes).

        ``ranges`` / ``choices`` use one shared jitted uniform stream per field (keyed by the
        field's name), so building a pool compiles almost nothing; ``sample_fn`` runs eagerly.
        """
        out: dict[str, np.ndarray] = {}
        for field, (low, high) in self.ranges.items():
            u = _uniform01(key, _stream_id(field), m).astype(np.float64)
            if self._dtypes[field].kind == "i":
                span = int(high) - int(low)
                offset = np.minimum(np.floor(u * (span + 1)), span)
                out[field] = (int(low) + offset).astype(np.int32)
            else:
                out[field] = np.clip(low + u * (high - low), low, high).astype(np.float32)
        for field, values in self.choices.items():
            u = _uniform01(key, _stream_id(field), m).astype(np.float64)
            idx = np.minimum(np.floor(u * len(values)), len(values) - 1).astype(np.int64)
            out[field] = np.asarray(values, dtype=self._dtypes[field])[idx]
        if self.sample_fn is not None:
            drawn = self.sample_fn(jax.random.fold_in(key, _stream_id("<sample_fn>")), m)
            out.update({f: np.asarray(v).astype(self._dtypes[f]) for f, v in drawn.items()})
        return out

    def _candidates(self, key: jax.Array, m: int) -> dict[str, np.ndarray]:
        """``m`` full tasks (derived fields recomputed) as ``field -> numpy [m, ...]``."""
        drawn = self._draw(key, m)
        values: dict[str, np.ndarray] = {}
        for f in self._fields:
            if f in drawn:
                values[f] = drawn[f]
            else:
                base = np.asarray(getattr(self.base_params, f), dtype=self._dtypes[f])
                values[f] = np.broadcast_to(base, (m, *base.shape)).copy()
        batched = self.base_params.replace(**values)
        if self._derived:  # elementwise: numpy float32 arithmetic, exactly as on device
            batched = derive_cartpole(batched)
        if self.derive is not None:
            batched = jax.vmap(self.derive)(jax.tree.map(jnp.asarray, batched))
        return {f: np.asarray(getattr(batched, f)).astype(self._dtypes[f]) for f in self._fields}

    @functools.cached_property
    def _pools(self) -> dict[str, EnvParams]:
        """Per split, the pool of distinct tasks (numpy leaves ``[num_tasks(split), ...]``)."""
        with jax.ensure_compile_time_eval():  # concrete even if first used inside jit
            return self._build_pools()

    def _build_pools(self) -> dict[str, EnvParams]:
        root = jax.random.key(int(self.split_seed))
        seen: set[bytes] = set()
        pools: dict[str, EnvParams] = {}
        for split in _FILL_ORDER:
            need = self.num_tasks(split)
            stream = jax.random.fold_in(root, _SPLIT_STREAM[split])
            chunks: list[dict[str, np.ndarray]] = []
            have = 0
            for round_ in range(_MAX_ROUNDS):
                m = need if round_ == 0 else max(2 * (need - have), 64)
                cand = self._candidates(jax.random.fold_in(stream, round_), m)
                rows = _row_keys(cand, m)
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
                    f"family {self.name!r}: could only draw {len(seen)} distinct tasks for "
                    f"splits needing {self.total_tasks}; lower num_train/num_val/num_test"
                )
            merged = {f: np.concatenate([c[f] for c in chunks]) for f in self._fields}
            pools[split] = self.base_params.replace(**merged)
        return {s: pools[s] for s in SPLITS}


def _row_keys(values: Mapping[str, np.ndarray], m: int) -> list[bytes]:
    """One hashable key per task (``-0.0`` and ``0.0`` compare equal)."""
    cols = [
        np.ascontiguousarray(np.where(v == 0, np.zeros_like(v), v).reshape(m, -1))
        for v in values.values()
    ]
    return [b"".join(c[i].tobytes() for c in cols) for i in range(m)]


def _canonical_split(split: str) -> str:
    if split not in _SPLIT_ALIASES:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    return _SPLIT_ALIASES[split]


# ------------------------------------------------------------------------- registry
# MetaConfig fields (default None) a family may recommend values for (TaskFamily.meta_defaults)
FAMILY_META_FIELDS = ("task_lifetime", "query_source", "buffer_size")
FAMILIES: dict[str, TaskFamily] = {}


def register_family(family: TaskFamily, *, overwrite: bool = False) -> TaskFamily:
    """Adds ``family`` to :data:`FAMILIES` under ``family.name`` (returns it)."""
    if not overwrite and family.name in FAMILIES:
        raise ValueError(f"a task family named {family.name!r} is already registered")
    FAMILIES[family.name] = family
    return family


def list_families() -> list[str]:
    """Names of the registered task families."""
    return list(FAMILIES)


def get_family(name: str) -> TaskFamily:
    """The registered family ``name`` (ValueError listing the known names otherwise)."""
    if name not in FAMILIES:
        raise ValueError(f"unknown task family {name!r}; known families: {', '.join(FAMILIES)}")
    return FAMILIES[name]


POINTNAV_GOAL_RADIUS = 0.7
# CartPole: episodes of up to 500 steps. Task slots live 20 meta-steps (their environments run
# 500 steps instead of 25-step fragments) and the query comes from each task's 2,000-transition
# buffer; measured on cartpole-flipped: context 412 / 452 after 25 / 100 steps against 100 / 92
# with the PointNav settings (BENCHMARKS.md §1).
CARTPOLE_META_DEFAULTS = {"task_lifetime": 20, "query_source": "buffer", "buffer_size": 2000}

register_family(
    TaskFamily(
        "cartpole-physics",
        "CartPole-v1",
        ranges={
            "length": (0.25, 1.0),
            "masspole": (0.05, 0.5),
            "gravity": (7.0, 12.0),
            "force_mag": (5.0, 15.0),
        },
        gamma=0.99,
        meta_defaults=CARTPOLE_META_DEFAULTS,
        description="CartPole with varied physics (one policy can serve all tasks)",
    )
)
register_family(
    TaskFamily(
        "pointnav-rotated",
        "PointNav-v0",
        ranges={"action_rotation": (0.0, 2.0 * math.pi)},
        base_params=envs.PointNavParams(goal_x=POINTNAV_GOAL_RADIUS, goal_y=0.0),
        gamma=0.5,
        description="conflicting: fixed goal (0.7, 0), the meaning of the actions rotates per task",
    )
)
register_family(
    TaskFamily(
        "pointnav-goal",
        "PointNav-v0",
        sample_fn=goal_circle_sampler(POINTNAV_GOAL_RADIUS),
        sample_desc=f"goal = {POINTNAV_GOAL_RADIUS:g}*(cos a, sin a), a~U[0, 2pi)",
        gamma=0.5,
        description="unobserved goal on a circle of radius 0.7",
    )
)
register_family(
    TaskFamily(
        "cartpole-flipped",
        "CartPoleSigned-v0",
        ranges={"length": (0.4, 0.6)},
        choices={"force_sign": (-1.0, 1.0)},
        gamma=0.99,
        meta_defaults=CARTPOLE_META_DEFAULTS,
        description="conflicting: the action meaning is flipped on half the tasks",
    )
)
