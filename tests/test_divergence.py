"""The divergence guard (issue 15, item 1): a non-finite loss, gradient norm or parameter stops
meta-training (``driver.train_meta``), ``metadqn dqn`` and ``metadqn regress`` with the step and
the quantity, unless the caller asks to keep going.

The trigger is the issue's own: learning rates of 1e6 (meta-training: ``--meta-lr 1e6
--inner-lr 1e6`` on a tiny context learner, whose meta-gradient norm is inf at meta-step 2;
``dqn --lr 1e6``; ``regress --meta-lr 1e6``). Every learning rate is a traced hyper-parameter,
so the diverging runs reuse the compiled program of a normal one.
"""

from __future__ import annotations

import math
import pickle
import warnings

import jax
import numpy as np
import pytest

from metadqn_jax import cli
from metadqn_jax.driver import DivergenceError, ValidationConfig, first_divergence, train_meta
from metadqn_jax.meta import MetaConfig, make_meta_step

from conftest import TEST_COMPILE_CACHE as CACHE  # noqa: E402

# the tiny context learner of `metadqn train --quick`, one meta-step per chunk
CFG = MetaConfig(family="pointnav-rotated", algorithm="context", num_tasks=4, envs_per_task=2, rollout_steps=5,
                 support_size=10, buffer_size=10, task_lifetime=1, query_batch=16, hidden=(16, 16), encoder_hidden=(16,),
                 num_meta_steps=3, chunk_size=1)
NO_VAL = ValidationConfig(every=0)


# ------------------------------------------------------------------------- pure parts
def test_first_divergence_finds_the_first_bad_step_and_its_quantity():
    ok = {"query_loss": np.array([1.0, 2.0]), "grad_norm": np.array([0.5, 0.5]),
          "meta_params_finite": np.array([True, True])}
    assert first_divergence(ok, 10) is None
    checks = {"query_loss": np.array([1.0, 2.0, np.nan, np.inf], np.float32),
              "grad_norm": np.array([0.5, np.inf, np.inf, 1.0], np.float32),
              "meta_params_finite": np.array([True, True, False, False])}
    step, quantity, value = first_divergence(checks, 10)  # steps 11..14: the second (12) is the first bad one
    assert (step, quantity, value) == (12, "grad_norm", math.inf)
    # at one step the quantities are reported in the order given
    step, quantity, value = first_divergence({k: v[2:] for k, v in checks.items()}, 0)
    assert (step, quantity) == (1, "query_loss") and math.isnan(value)
    step, quantity, value = first_divergence({"query_loss": np.ones(3), "meta_params_finite": np.array([1, 1, 0], bool)}, 4)
    assert (step, quantity) == (7, "meta_params") and math.isnan(value)


def test_divergence_error_is_one_line_with_step_quantity_and_value():
    e = DivergenceError(40, "query_loss", math.inf)
    assert isinstance(e, RuntimeError)
    assert str(e) == "meta-training diverged at meta-step 40: query_loss is inf (set allow_divergence=True to keep going)"
    assert (e.step, e.quantity, e.value) == (40, "query_loss", math.inf)
    assert e.detail == "meta-training diverged at meta-step 40: query_loss is inf"
    p = DivergenceError(7, "meta_params", math.nan, what="maml meta-training", unit="iteration", hint="")
    assert str(p) == "maml meta-training diverged at iteration 7: meta_params not all finite"
    q = pickle.loads(pickle.dumps(e))
    assert str(q) == str(e) and q.step == 40


# ---------------------------------------------------------------------- meta-training
@pytest.fixture(scope="module")
def program():
    return make_meta_step(CFG)


def _train(program, hp, calls, **kw):
    """``train_meta`` on ``CFG`` with ``hp``; ``calls`` collects ``(meta_step, params finite, row)``
    per callback."""

    def callback(state, early_stop, row):  # the state is donated to the next chunk: read it now
        finite = all(bool(np.isfinite(np.asarray(x)).all()) for x in jax.tree.leaves(state.params))
        calls.append((int(row["meta_step"]), finite, dict(row)))

    return train_meta(CFG, jax.random.key(0), hp, validation=NO_VAL, progress=False, program=program,
                      callback=callback, **kw)


def test_meta_training_stops_at_the_first_diverged_meta_step(program):
    calls = []
    with pytest.raises(DivergenceError) as info:
        _train(program, CFG.hparams(meta_lr=1e6, inner_lr=1e6), calls)
    e = info.value
    assert (e.step, e.quantity, e.value) == (2, "grad_norm", math.inf), str(e)
    assert str(e) == ("meta-training diverged at meta-step 2: grad_norm is inf "
                      "(set allow_divergence=True to keep going)")
    # the callback saw meta-step 1 (finite) and not the diverged chunk: the last state a
    # checkpoint could save is the last good one
    assert [(step, finite) for step, finite, _ in calls] == [(1, True)]


def test_allow_divergence_keeps_going_and_rows_record_it(program):
    hp = CFG.hparams(meta_lr=1e6, inner_lr=1e6)
    with pytest.warns(RuntimeWarning, match="meta-training diverged at meta-step 2: grad_norm is inf") as rec:
        calls = []
        res = _train(program, hp, calls, allow_divergence=True)
    assert len([w for w in rec if issubclass(w.category, RuntimeWarning)]) == 1  # warned once
    assert int(res.state.step) == CFG.num_meta_steps
    assert [c[0] for c in calls] == [1, 2, 3]
    assert [r.get("diverged_step") for r in res.history] == [None, 2, 3]
    assert all("params_finite" not in r for r in res.history)


def test_normal_run_rows_are_unchanged(program):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        calls = []
        res = _train(program, CFG.hparams(), calls)
    assert [c[0] for c in calls] == [1, 2, 3] and all(c[1] for c in calls)
    for row in res.history:  # the flag is not a logged quantity; nothing diverged
        assert "params_finite" not in row and "diverged_step" not in row
        assert list(row)[:5] == ["pre_adapt_loss", "post_adapt_loss", "query_loss", "train_return", "grad_norm"]


# ------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def cli_cache(shared_compile_cache):
    return ["--compile-cache", str(CACHE)]


def _main(capsys, argv):
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_dqn_divergence_is_one_error_line_and_exit_3(capsys, tmp_path, cli_cache):
    rc, out, err = _main(capsys, ["dqn", "--quick", "--lr", "1e6", "--out", str(tmp_path), "--name", "d", *cli_cache])
    assert rc == 3, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert errors[0].startswith("error: DQN diverged at env step "), err
    assert "(seed 0): the TD loss is " in errors[0] and "--keep-going-on-divergence" in errors[0]
    step = int(errors[0].split("env step ")[1].split(" ")[0])
    assert 50 <= step <= 400  # after learning_starts (50), within the run
    assert not [line for line in err.splitlines() if "NaN or Inf" in line]
    assert out == ""  # no results table
    run = tmp_path / "d"
    assert (run / "metrics.csv").is_file()  # the log of what happened
    for f in ("dqn.md", "dqn.json", "returns.png"):
        assert not (run / f).exists(), f


def test_dqn_keep_going_writes_the_results(capsys, tmp_path, cli_cache):
    rc, out, err = _main(capsys, ["dqn", "--quick", "--lr", "1e6", "--out", str(tmp_path), "--name", "k",
                                  "--keep-going-on-divergence", *cli_cache])
    assert rc == 0, err
    assert "warning: DQN diverged at env step " in err and "error:" not in err
    assert "| env steps | eval return |" in out
    assert (tmp_path / "k" / "dqn.md").is_file()


def test_regress_divergence_is_one_error_line_and_exit_3(capsys, tmp_path, cli_cache):
    rc, out, err = _main(capsys, ["regress", "--quick", "--meta-lr", "1e6", "--out", str(tmp_path), "--name", "r",
                                  "--no-progress", *cli_cache])
    assert rc == 3, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and not [line for line in err.splitlines() if "NaN or Inf" in line or "Traceback" in line], err
    assert errors[0].startswith("error: maml meta-training diverged at iteration 2: query_loss is inf"), err
    assert out == ""
    for f in ("regress.md", "regress.json", "regress.png"):
        assert not (tmp_path / "r" / f).exists(), f


def test_regress_keep_going_reports(capsys, tmp_path, cli_cache):
    rc, out, err = _main(capsys, ["regress", "--quick", "--meta-lr", "1e6", "--out", str(tmp_path), "--name", "k",
                                  "--no-progress", "--algorithm", "maml", "--keep-going-on-divergence", *cli_cache])
    assert rc == 0, err
    assert "warning: maml meta-training diverged at iteration 2: query_loss is inf" in err and "error:" not in err
    assert "| maml | 5 |" in out and (tmp_path / "k" / "regress.md").is_file()
