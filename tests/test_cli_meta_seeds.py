"""``metadqn train --meta-seeds N`` (issue 16 part 2): N meta-training seeds as one vmapped program,
checkpointed with the seed axis, resumed, exported (the validation-best seed) and re-evaluated
in a fresh process from the run folder with the same numbers; the table's returns carry the
seed axis.

One small run (``--quick``, the context learner and scratch only): interrupted with
``--stop-after``, resumed, evaluated.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from metadqn_jax import cli
from metadqn_jax.checkpoint import Checkpointer

pytestmark = pytest.mark.usefixtures("shared_compile_cache")


def _main(capsys, argv):
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_train_meta_seeds_resume_export_evaluate(capsys, tmp_path):
    base = ["--quick", "--meta-seeds", "2", "--algorithm", "context", "--baselines", "scratch", "--no-progress"]
    rc, out, err = _main(capsys, ["train", *base, "--out", str(tmp_path), "--name", "r", "--stop-after", "10"])
    assert rc == 0, err
    run = tmp_path / "r"
    assert Checkpointer(run / "checkpoints" / "context").steps() == [10]
    # the seed count cannot change on resume (the checkpoint holds two seeds)
    rc, _, err = _main(capsys, ["train", "--resume", str(run), "--set", "run.meta_seeds=3", "--no-progress"])
    assert rc == 2 and "run.meta_seeds" in err and err.count("\n") == 1, err
    rc, out, err = _main(capsys, ["train", "--resume", str(run), "--no-progress"])
    assert rc == 0, err
    assert "resuming from the checkpoint at meta-step 10" in err
    assert "(2 meta-seeds x 2 tasks x 1 adaptation seeds" in out and "over meta-seeds and tasks" in out
    data = json.loads((run / "few_shot.json").read_text())
    assert data["results"]["meta_seeds"] == [0, 1]
    for init in ("context", "scratch"):
        assert np.asarray(data["returns"][init]).shape == (2, 2, 1, 2)  # [meta_seed, task, adapt_seed, budget]
    ctx = np.asarray(data["returns"]["context"])
    assert not np.array_equal(ctx[0], ctx[1])  # two different seeds were trained
    # the exported policy is the seed with the best validation return
    from metadqn_jax.deploy import load_policy

    pol = load_policy(run, "context")
    val = pol.info["val_returns"]
    assert len(val) == 2 and pol.info["meta_seed"] == int(np.argmax(val)) and pol.info["val_return"] == max(val)
    # evaluate in this process from the run folder: both seeds, the same numbers
    rc, out, err = _main(capsys, ["evaluate", str(run), "--tag", "again"])
    assert rc == 0, err
    again = json.loads((run / "again.json").read_text())
    assert again["results"]["context"] == data["results"]["context"]
    assert again["returns"]["context"] == data["returns"]["context"]
