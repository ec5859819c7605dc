"""``metadqn sweep`` / :mod:`metadqn_jax.sweep`: the grid's parsing and its one-line errors, a
tiny sweep end to end (one row per combination and seed, the best chosen by validation, ONE
compiled meta-training program), and the hyper-parameter axis being real (a vmapped row equals
that combination trained alone, and differs from the other combination)."""

from __future__ import annotations

import contextlib
import json
import logging

import jax
import numpy as np
import pytest

from metadqn_jax import cli
from metadqn_jax.core.validate import ConfigError
from metadqn_jax.driver import ValidationConfig, hparam_rows, train_meta
from metadqn_jax.meta import MetaConfig
from metadqn_jax.sweep import Grid, parse_grid, select_best, sweep_hparams, sweep_keys

pytestmark = pytest.mark.usefixtures("shared_compile_cache")

# the smallest settings that still meta-learn something (a few seconds to compile)
TINY = ["--set", "meta.num_tasks=2", "--set", "meta.envs_per_task=1", "--set", "meta.rollout_steps=4",
        "--set", "meta.support_size=4", "--set", "meta.buffer_size=8", "--set", "meta.query_batch=8",
        "--set", "meta.hidden=[8]", "--set", "meta.inner_steps=1", "--meta-steps", "4", "--chunk-size", "2",
        "--val-every", "2", "--val-tasks", "2", "--family", "pointnav-goal", "--algorithm", "fomaml"]
CFG = MetaConfig(family="pointnav-goal", algorithm="fomaml", num_meta_steps=4, chunk_size=2, num_tasks=2,
                 envs_per_task=1, rollout_steps=4, support_size=4, buffer_size=8, query_batch=8, hidden=(8,),
                 inner_steps=1)


def run_main(capsys, argv):
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@contextlib.contextmanager
def compiled_names():
    """The names of the functions jit compiles inside the block (jax's "Compiling <name>" log
    records: one per jit cache miss, also when a persistent cache skips the XLA compile)."""
    names: list[str] = []

    class Handler(logging.Handler):
        def emit(self, record):
            msg = record.getMessage()
            if msg.startswith("Compiling "):  # "Compiling jit(name) with ..."
                name = msg.split(" ", 2)[1]
                names.append(name[4:-1] if name.startswith("jit(") else name)

    handler, logger = Handler(logging.WARNING), logging.getLogger("jax")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(min(old or logging.WARNING, logging.WARNING))
    try:
        with jax.log_compiles(True):
            yield names
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


# ------------------------------------------------------------------------------- the grid
def test_grid_parses_into_combinations():
    g = parse_grid(["hparams.tau=0.9,0.99", "meta_lr=1e-3, 3e-3,0.01"])
    assert g == Grid(("tau", "meta_lr"), ((0.9, 0.99), (0.001, 0.003, 0.01)))
    assert g.items == ("hparams.tau=0.9,0.99", "hparams.meta_lr=0.001,0.003,0.01")
    assert parse_grid(g.items) == g  # canonical items read back
    combos = g.combinations
    assert len(combos) == 6 and combos[0] == {"tau": 0.9, "meta_lr": 0.001} and combos[3] == {"tau": 0.99,
                                                                                               "meta_lr": 0.001}
    hp = sweep_hparams(CFG, g, seeds=2)  # row c * N + i: combination c, seed i
    assert hparam_rows(hp) == 12
    np.testing.assert_allclose(np.asarray(hp.tau), np.repeat([0.9] * 3 + [0.99] * 3, 2), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(hp.meta_lr), np.tile(np.repeat([1e-3, 3e-3, 1e-2], 2), 2), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(hp.gamma), float(CFG.hparams().gamma))  # untouched: the config's
    keys = jax.random.key_data(sweep_keys(5, 2, 3))  # seed i of every combination: compare(seed=5 + i)'s key
    for c in range(3):
        for i in range(2):
            np.testing.assert_array_equal(keys[c * 2 + i],
                                          jax.random.key_data(jax.random.split(jax.random.key(5 + i), 4)[0]))


@pytest.mark.parametrize("grid, message", [
    (["hparams.bogus=1,2"], "unknown field 'hparams.bogus'"),
    (["taux=0.9"], "did you mean 'hparams.tau'"),
    (["num_tasks=4,8"], "meta.num_tasks is a static setting"),
    (["tau=0.9,high"], "'high' is not a number"),
    (["tau=0.9,1.0"], "hparams.tau must be in [0.0, 1.0)"),
    (["meta_lr=0,0.001"], "hparams.meta_lr must be in (0.0, inf)"),
    (["tau=0.9", "hparams.tau=0.99"], "hparams.tau is given twice"),
    (["tau=0.9,0.9"], "the value 0.9 is given twice"),
    (["tau"], "expected FIELD=V1,V2"),
    (["tau="], "no values for hparams.tau"),
    ([], "a sweep needs at least one --grid"),
])
def test_bad_grid_is_one_error_line_before_compute(capsys, tmp_path, grid, message):
    argv = ["sweep", "--quick", "--out", str(tmp_path), "--name", "bad", "--no-progress"]
    for item in grid:
        argv += ["--grid", item]
    with compiled_names() as names:
        rc, _, err = run_main(capsys, argv)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: --grid") and message in lines[0], err
    # nothing created, nothing compiled: no program (a scalar dtype conversion of a validated
    # hyper-parameter is compiled again when an earlier module's fixture cleared jax's caches)
    assert not (tmp_path / "bad").exists() and [n for n in names if n != "convert_element_type"] == []
    if grid:
        with pytest.raises(ConfigError, match="--grid"):
            parse_grid(grid)


def test_sweep_refuses_no_validation(capsys, tmp_path):
    rc, _, err = run_main(capsys, ["sweep", "--quick", "--grid", "tau=0.9", "--val-every", "0", "--out",
                                   str(tmp_path)])
    assert rc == 2 and err.startswith("error: validation.every must be > 0 for a sweep"), err


def test_select_best_is_the_argmax_of_the_validation_mean():
    runs = np.zeros((3, 2, 4, 1))  # [combination, seed, task, budget]
    runs[0] += 1.0
    runs[1] += np.array([3.0, -0.5])[:, None, None]  # mean 1.25: the best
    runs[2] += 5.0
    runs[2, 1, 0, 0] = np.nan  # a run without a finite validation return is never chosen
    assert select_best(runs) == 1
    assert select_best(np.full((2, 1, 1, 1), np.nan)) == -1
    assert select_best(np.ones((2, 1, 1, 1))) == 0  # a tie: the first


# ------------------------------------------------------------------------- end to end
def test_sweep_command_writes_rows_and_chooses_on_validation(capsys, tmp_path):
    argv = ["sweep", *TINY, "--grid", "hparams.meta_lr=0.001,0.03", "--seeds", "2", "--out", str(tmp_path),
            "--name", "sw", "--no-progress", "--no-compile-cache"]
    with compiled_names() as names:
        rc, out, err = run_main(capsys, argv)
    assert rc == 0, err
    run = tmp_path / "sw"
    data = json.loads((run / "sweep.json").read_text())
    assert {(r["combination"], r["seed"]) for r in data["rows"]} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert data["num_runs"] == 4 and data["meta_seeds"] == [0, 1] and data["grid"] == {"meta_lr": [0.001, 0.03]}
    assert all(r["meta_steps"] == 4 and r["hparams"]["meta_lr"] == r["grid"]["meta_lr"] for r in data["rows"])
    assert data["validation"]["split"] == "val" and "test split is never evaluated" in data["selection"]
    # best = argmax over combinations of the mean validation return over seeds (and tasks)
    means = [np.mean([r["val_return"] for r in data["rows"] if r["combination"] == c]) for c in (0, 1)]
    assert data["best"]["combination"] == int(np.argmax(means))
    np.testing.assert_allclose([c["val_return"] for c in data["combinations"]], means, rtol=1e-9)
    assert all(c["ci_low"] <= c["val_return"] <= c["ci_high"] for c in data["combinations"])
    best = data["best"]["combination"]
    best_row = [line for line in (run / "sweep.md").read_text().splitlines() if line.startswith(f"| {best} |")]
    assert len(best_row) == 1 and "**" in best_row[0] and out.startswith("**pointnav-goal, fomaml")
    assert (run / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert "command: sweep" in (run / "config.yaml").read_text()
    # every combination x seed is ONE compiled meta-training program
    assert names.count("meta_train_hparam_rows") == 1, names
    assert not [n for n in names if n in ("meta_train", "meta_train_seeds")], names


def test_vmapped_row_equals_the_combination_trained_alone():
    """Row 1 of a two-combination sweep (hp rows [2]) is the run of combination 1 alone with the
    same key; row 0 (another meta_lr and epsilon, same key) is a different run."""
    grid = parse_grid(["meta_lr=0.001,0.01", "epsilon=0.2,0.9"])
    hp = jax.tree.map(lambda x: x[np.array([0, 3])], sweep_hparams(CFG, grid, seeds=1))  # (1e-3, .2), (1e-2, .9)
    keys = sweep_keys(7, 1, 2)
    val = ValidationConfig(every=0)
    both = train_meta(CFG, keys, hp, validation=val, progress=False)
    assert both.state.step.shape == (2,)
    alone = train_meta(CFG, keys[1], jax.tree.map(lambda x: x[1], hp), validation=val, progress=False)
    rows = [jax.tree.map(lambda x, i=i: np.asarray(x[i]), both.state.params) for i in range(2)]
    for a, b in zip(jax.tree.leaves(alone.state.params), jax.tree.leaves(rows[1])):
        np.testing.assert_allclose(np.asarray(a), b, rtol=2e-4, atol=2e-5)
    flat = [np.concatenate([x.ravel() for x in jax.tree.leaves(r)]) for r in rows]
    assert not np.allclose(flat[0], flat[1], rtol=1e-3, atol=1e-4)  # the hyper-parameter axis is real
    with pytest.raises(ValueError, match="2 hyper-parameter rows but the runs have 3 seeds"):
        train_meta(CFG, sweep_keys(0, 3, 1), hp, validation=val, progress=False)
