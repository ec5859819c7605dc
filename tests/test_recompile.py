"""No-recompile guarantees of the compiled meta-step.

* across scanned chunks: ``train_meta`` compiles its ``meta_train`` program once, on the first
  chunk; every later chunk compiles nothing at all (no XLA compilation of any function);
* across traced hyper-parameters: changing any :class:`MetaHParams` value reuses the same
  executable — and really changes the result, so a hyper-parameter baked into the program as a
  Python constant (e.g. ``cfg.inner_lr`` or ``float(hp.inner_lr)`` used inside the step) fails
  here, as does making the hyper-parameters a static (hashed) argument.

Compilations are counted two ways: jax's monitoring event for every backend compilation
(``/jax/core/compile/backend_compile_duration``, one per XLA compile) and the
``jax_log_compiles`` log records ("Compiling <name> ..."), which count jit cache misses even
when a persistent compilation cache would skip the backend compile.
"""

from __future__ import annotations

import contextlib
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metadqn_jax.meta import MetaConfig, MetaHParams, make_meta_step, meta_train
from metadqn_jax.driver import ValidationConfig, train_meta

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"

CFG = MetaConfig(
    family="cartpole-physics", algorithm="maml", num_tasks=4, envs_per_task=2, rollout_steps=4,
    support_size=8, buffer_size=16, query_batch=8, inner_steps=1, hidden=(16, 16),
    chunk_size=2, num_meta_steps=8, task_lifetime=2, query_source="adapted",
    updates_per_step=1,  # not the family's 8: what is compiled, not how much it learns
)
# a value per traced hyper-parameter that must change the state after one chunk
PERTURBED = dict(inner_lr=0.3, meta_lr=3e-3, weight_decay=0.1, gamma=0.9, epsilon=0.9, tau=0.5)


class CompileCounter:
    """Records every XLA compilation (monitoring event) and jit cache miss (log record)."""

    def __init__(self):
        self.backend: list[str] = []  # fun_name of each backend compilation
        self.logged: list[str] = []  # "Compiling <module>" messages

    def _on_event(self, event, duration, **kwargs):
        if event == BACKEND_COMPILE_EVENT:
            self.backend.append(str(kwargs.get("fun_name", "?")))

    def mark(self) -> tuple[int, int]:
        return len(self.backend), len(self.logged)

    def since(self, mark, name: str | None = None) -> list[str]:
        b, g = mark
        names = self.backend[b:] + self.logged[g:]
        return [n for n in names if name is None or name in n]


class _Handler(logging.Handler):
    def __init__(self, counter):
        super().__init__(logging.WARNING)
        self.counter = counter

    def emit(self, record):
        msg = record.getMessage()
        if msg.startswith("Compiling "):
            self.counter.logged.append(msg.split(" ", 2)[1])


@contextlib.contextmanager
def count_compiles():
    counter = CompileCounter()
    handler = _Handler(counter)
    logger = logging.getLogger("jax")
    old_level = logger.level
    jax.monitoring.register_event_duration_secs_listener(counter._on_event)
    logger.addHandler(handler)
    logger.setLevel(min(old_level or logging.WARNING, logging.WARNING))
    try:
        with jax.log_compiles(True):
            yield counter
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        jax.monitoring.unregister_event_duration_listener(counter._on_event)


@pytest.fixture(scope="module")
def program():
    return make_meta_step(CFG)


def unused_hparams(meta_step, state, hp) -> list[str]:
    """Names of the :class:`MetaHParams` leaves the traced meta-step never reads (a Python
    float closure, or a hyper-parameter replaced by a constant, shows up here)."""
    closed = jax.make_jaxpr(meta_step)(state, hp)
    jaxpr = closed.jaxpr
    n_state = len(jax.tree.leaves(state))
    hp_vars = jaxpr.invars[n_state:]
    assert len(hp_vars) == len(MetaHParams._fields)
    used = set()
    for eqn in jaxpr.eqns:
        used.update(v for v in eqn.invars if not isinstance(v, jax.extend.core.Literal))
    used.update(v for v in jaxpr.outvars if not isinstance(v, jax.extend.core.Literal))
    return [name for name, v in zip(MetaHParams._fields, hp_vars) if v not in used]


# ------------------------------------------------------------------------------ tests
def test_counter_sees_compiles():
    """Self-check: the counter catches a recompile caused by a static (hashed) hyper-parameter."""
    f = jax.jit(lambda x, lr: x * lr, static_argnums=(1,))
    x = jnp.ones(3)
    with count_compiles() as c:
        m = c.mark()
        f(x, 0.1).block_until_ready()
        f(x, 0.2).block_until_ready()
    assert len(c.since(m)) >= 2 and len(c.since(m, "lambda")) >= 2


def test_every_hparam_is_traced(program):
    state = program.init(jax.random.key(0), CFG.hparams())
    assert unused_hparams(program.meta_step, state, CFG.hparams()) == []


def test_unused_hparam_detector_catches_float_closure(program):
    """Negative control: a meta-step that bakes ``inner_lr`` in as a Python float is flagged."""
    state = program.init(jax.random.key(0), CFG.hparams())
    baked = float(CFG.hparams().inner_lr)

    def closed_over(s, hp):
        return program.meta_step(s, hp._replace(inner_lr=baked))

    assert unused_hparams(closed_over, state, CFG.hparams()) == ["inner_lr"]


def test_no_recompile_across_chunks(program):
    rows = []
    with count_compiles() as c:
        m0 = c.mark()

        def callback(state, early_stop, row):
            rows.append(c.since(m0))

        result = train_meta(CFG, jax.random.key(0), validation=ValidationConfig(every=0), progress=False,
                            callback=callback, program=program)
    assert int(result.state.step) == CFG.num_meta_steps and len(rows) == CFG.num_meta_steps // CFG.chunk_size
    first, last = rows[0], rows[-1]
    assert len([n for n in first if "meta_train" in n]) <= 2  # at most once per channel
    assert last == first, f"chunks 2..{len(rows)} compiled {last[len(first):]}"


def test_no_recompile_across_traced_hparams(program):
    hp0 = CFG.hparams()
    run = jax.jit(meta_train, static_argnums=(0, 3), donate_argnums=(1,))  # as train_meta does
    fresh = [program.init(jax.random.key(0), hp0) for _ in range(len(PERTURBED) + 2)]
    jax.block_until_ready(fresh)
    base, _ = run(program.meta_step, fresh.pop(), hp0, CFG.chunk_size)  # may compile (or reuse)
    base = jax.device_get((base.params, base.target_params, base.buffers.data))
    # jit wrappers of the same function share one cache, so other tests' programs may be in
    # it: what must not change is its size while only traced hyper-parameters change.
    cache_before = run._cache_size()
    with count_compiles() as c:
        m = c.mark()
        same, _ = run(program.meta_step, fresh.pop(), CFG.hparams(), CFG.chunk_size)
        jax.block_until_ready(same)
        changed = {}
        for name, value in PERTURBED.items():
            hp = CFG.hparams(**{name: value})
            out, _ = run(program.meta_step, fresh.pop(), hp, CFG.chunk_size)
            changed[name] = jax.device_get((out.params, out.target_params, out.buffers.data))
        compiles = c.since(m)
    assert compiles == [], f"changing traced hyper-parameters recompiled: {compiles}"
    assert run._cache_size() == cache_before
    # the same hyper-parameters reproduce the state exactly; each perturbed one changes it
    np.testing.assert_array_equal(jax.tree.leaves(jax.device_get(same.params))[0], jax.tree.leaves(base[0])[0])
    for name, out in changed.items():
        diff = max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
                   for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(base)) if np.asarray(a).dtype != bool)
        assert diff > 0, f"hyper-parameter {name} had no effect: is it baked into the program?"


def test_second_train_meta_with_new_hparams_reuses_program(program):
    """A new ``train_meta`` call with other traced hyper-parameters compiles no new meta-step."""
    cfg = CFG
    train_meta(cfg, jax.random.key(1), validation=ValidationConfig(every=0), progress=False, program=program)
    with count_compiles() as c:
        m = c.mark()
        train_meta(cfg, jax.random.key(2), cfg.hparams(inner_lr=0.05, epsilon=0.2), validation=ValidationConfig(every=0),
                   progress=False, program=program)
        compiled = c.since(m, "meta_train")
    assert compiled == []
