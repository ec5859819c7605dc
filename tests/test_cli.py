"""The ``metadqn`` CLI end to end on tiny configs.

Subprocesses (``python -m metadqn_jax`` and the ``metadqn`` script) run every command once:
``train --quick`` (the reference run), ``train --resume`` of the same run interrupted with
``--stop-after`` (in-process; its final checkpoints, exported policies, few-shot results, CSV
and TensorBoard scalars must be bit-identical to the reference), ``evaluate``, ``dqn``,
``regress`` and ``families``. In-process ``main(argv)`` calls cover the interrupted run
("logging never triggers a recompile"), the config resolution, the documented error messages
(exit status 2, one ``error:`` line), ``--help`` and the generated ``docs/CLI.md``.

Compiled programs are shared through a persistent XLA cache (``$METADQN_TEST_COMPILE_CACHE``,
default ``<tmp>/metadqn_jax_test_xla``), so only the first run of the suite compiles.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from metadqn_jax import cli
from metadqn_jax.checkpoint import FORMAT_POLICY, Checkpointer
from _tensorboard import read_tb_scalars  # tests/_tensorboard.py
from metadqn_jax.app.logs import read_csv

from conftest import TEST_COMPILE_CACHE as CACHE  # noqa: E402
from conftest import subprocess_env  # noqa: E402

pytestmark = pytest.mark.usefixtures("shared_compile_cache")
METADQN = [sys.executable, "-m", "metadqn_jax"]
SCRIPT = Path(sys.executable).with_name("metadqn")


def _env() -> dict[str, str]:
    return subprocess_env(COLUMNS="100")


class Proc:
    def __init__(self, name: str, argv: list[str]):
        self.name, self.argv = name, argv
        self.t0 = time.perf_counter()
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
        self.rc = self.out = self.err = None

    def wait(self) -> Proc:
        self.out, self.err = self.p.communicate(timeout=1800)
        self.rc, self.wall = self.p.returncode, time.perf_counter() - self.t0
        return self

    def check(self) -> Proc:
        assert self.rc == 0, f"{self.name} failed ({self.rc}):\n{self.err[-3000:]}"
        return self



def _instrumented_main(argv: list[str]) -> tuple[int, dict[int, list[int]]]:
    """``cli.main(argv)`` in-process, counting the tracing / compilation events that happen inside
    each per-chunk callback of train_meta (logging, checkpoints), in the callback's own thread
    (the algorithms train at once, each in its thread): ``{thread: [count per callback]}``."""
    import jax

    import metadqn_jax.compare  # noqa: F401  (imported now, it keeps the real train_meta after the patch)
    import metadqn_jax.driver as train_mod

    events: list[tuple[str, int]] = []

    def listener(name, *args, **kwargs):
        events.append((name, threading.get_ident()))

    per_callback: dict[int, list[int]] = {}
    original = train_mod.train_meta

    def wrapped(*args, callback=None, **kwargs):
        if callback is None:
            return original(*args, **kwargs)

        def cb(*a):
            n, me = len(events), threading.get_ident()
            try:
                callback(*a)
            finally:
                mine = [e for e, t in events[n:] if t == me and ("compile" in e or "trace" in e)]
                per_callback.setdefault(me, []).append(len(mine))

        return original(*args, callback=cb, **kwargs)

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as m, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        m.setattr(train_mod, "train_meta", wrapped)
        jax.monitoring.register_event_duration_secs_listener(listener)
        try:
            rc = cli.main(argv)
        finally:
            jax.monitoring.unregister_event_duration_listener(listener)
    return rc, per_callback, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Every CLI command once; the subprocesses of a phase run concurrently.

    Phase 1: the reference ``train --quick`` run, ``dqn``, ``regress`` and ``families`` as
    subprocesses while the same training, interrupted with ``--stop-after 15``, runs in-process
    (instrumented for recompilations). Phase 2: ``train --resume`` of the interrupted run and
    ``evaluate`` of the reference run, as subprocesses.
    """
    root = tmp_path_factory.getbasetemp() / "cli_runs"
    root.mkdir(exist_ok=True)
    out = ["--out", str(root), "--no-progress"]
    train = ["train", "--quick"]
    script = [str(SCRIPT)] if SCRIPT.exists() else METADQN
    procs = {"full": Proc("train", [*METADQN, *train, "--name", "full", *out]),
             "dqn": Proc("dqn", [*METADQN, "dqn", "--quick", "--seeds", "2", "--out", str(root), "--name", "dqn"]),
             "regress": Proc("regress", [*METADQN, "regress", "--quick", "--name", "regress", *out]),
             "families": Proc("families", [*script, "families"])}
    stop = _instrumented_main([*train, "--name", "split", "--stop-after", "15", "--out", str(root),
                               "--compile-cache", str(CACHE)])  # with the progress bar
    after_stop = {a: Checkpointer(root / "split" / "checkpoints" / a).steps() for a in ("context", "pretrained")}
    for p in procs.values():
        p.wait()
    procs["full"].check()
    procs["resume"] = Proc("resume", [*METADQN, "train", "--resume", str(root / "split"), "--no-progress"])
    procs["evaluate"] = Proc("evaluate", [*script, "evaluate", str(root / "full"), "--tag", "eval",
                                          "--baselines", "scratch"])
    for name in ("resume", "evaluate"):
        procs[name].wait()
    return {"root": root, "procs": procs, "after_stop": after_stop, "stop": stop}


# ----------------------------------------------------------------------------- train
def _csv_rows(run: Path) -> list[dict]:
    return read_csv(run / "metrics.csv")


def test_train_end_to_end(runs):
    p = runs["procs"]["full"]
    run = runs["root"] / "full"
    assert "| init | 0 steps | 10 steps | train time |" in p.out
    for init in ("context", "pretrained", "scratch"):
        assert f"| {init} |" in p.out
    assert "context vs. pretrained, scratch: higher mean return at" in p.out
    assert "meta-train" not in p.out  # progress and notes go to stderr
    # run folder
    for f in ("config.yaml", "metrics.csv", "few_shot.md", "few_shot.png", "few_shot.json"):
        assert (run / f).is_file(), f
    assert (run / "few_shot.png").read_bytes()[:4] == b"\x89PNG"
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["command"] == "train" and cfg["meta"]["num_meta_steps"] == 20 and cfg["meta"]["hidden"] == [16, 16]
    assert set(cfg) == {"command", "meta", "hparams", "few_shot", "validation", "run", "defaults_used", "family"}
    assert "inner_lr" in cfg["hparams"] and "inner_lr" not in cfg["meta"]  # static apart from traced
    # the values used, not null, and which were defaults (per algorithm where they differ)
    from metadqn_jax import tasks

    gamma = tasks.get_family("pointnav-rotated").gamma
    assert cfg["hparams"]["gamma"] == gamma and cfg["hparams"]["inner_lr"] == 0.1
    assert cfg["defaults_used"] == {"meta.random_support": {"context": True, "pretrained": False},
                                    "hparams.inner_lr": 0.1,
                                    "hparams.meta_lr": {"context": 0.003, "pretrained": 0.001},
                                    "hparams.gamma": gamma,
                                    # derived from the family (meta/derive.py); the quick preset gives the lifetime
                                    "meta.query_source": "adapted", "meta.updates_per_step": 1,
                                    "hparams.tau": 0.95, "hparams.epsilon": 0.5}
    assert cfg["hparams"]["meta_lr"] is None and cfg["meta"]["random_support"] is None
    data = json.loads((run / "few_shot.json").read_text())
    assert data["results"]["budgets"] == [0, 10] and set(data["returns"]) == {"context", "pretrained", "scratch"}
    assert (run / "few_shot.md").read_text().startswith("**pointnav-rotated")
    assert set(data["guard_adaptation"]) == {"pretrained", "scratch"}  # chosen on validation tasks
    assert "Adaptation guard, chosen on" in p.out
    # checkpoints (every 10 meta-steps, keep 2) and exported policies
    for algo in ("context", "pretrained"):
        assert Checkpointer(run / "checkpoints" / algo).steps() == [10, 20]
        assert Checkpointer(run / "policy" / algo, kind=FORMAT_POLICY).steps() == [20]
    # metrics.csv: one row per chunk (5 meta-steps) and algorithm, validation every 10
    rows = _csv_rows(run)
    assert list(rows[0]) == ["algorithm", "meta_step", "env_steps", "query_loss", "pre_adapt_loss",
                             "post_adapt_loss", "train_return", "grad_norm", "val_return", "wall_s"]
    for algo in ("context", "pretrained"):
        mine = [r for r in rows if r["algorithm"] == algo]
        assert [int(r["meta_step"]) for r in mine] == [5, 10, 15, 20]
        assert [bool(r["val_return"]) for r in mine] == [False, True, False, True]
        assert all(np.isfinite(float(r["query_loss"])) for r in mine)
        # blank, not misleading: no training episode ends within the quick run's 5-step rollouts
        # (the meta-step reports 0.0 then), and the context learner has no inner loss
        assert [r["train_return"] for r in mine] == [""] * 4
        assert all((r["pre_adapt_loss"] == "") == (algo == "context") for r in mine)
    # TensorBoard: the same scalars, against environment steps (the meta-step is a scalar)
    tb = read_tb_scalars(run / "tb")
    ctx = [r for r in rows if r["algorithm"] == "context"]
    env_steps = [int(r["env_steps"]) for r in ctx]
    assert env_steps == [env_steps[0] * k for k in (1, 2, 3, 4)] and env_steps[0] > 5
    assert [s for s, _ in tb["context/train/query_loss"]] == env_steps
    assert tb["context/progress/meta_step"] == [(e, float(m)) for e, m in zip(env_steps, (5, 10, 15, 20))]
    np.testing.assert_allclose([v for _, v in tb["context/train/query_loss"]],
                               [float(r["query_loss"]) for r in ctx], rtol=1e-6)
    assert [s for s, _ in tb["context/validation/return"]] == [env_steps[1], env_steps[3]]
    assert {"pretrained/train/grad_norm", "pretrained/progress/env_steps", "pretrained/train/pre_adapt_loss"} <= set(tb)
    assert not {"context/train/pre_adapt_loss", "context/train/train_return"} & set(tb)
    # the resolved settings and config.yaml, logged once per algorithm (a text summary)
    events = b"".join(f.read_bytes() for f in (run / "tb" / "context").glob("events.out.tfevents.*"))
    assert b"context: resolved settings" in events and b"hparams.gamma" in events and b"defaults_used" in events
    assert [s for s, _ in tb["few_shot/few_shot/context"]] == [0, 10]
    np.testing.assert_allclose([v for _, v in tb["few_shot/few_shot/scratch"]], data["results"]["scratch"]["mean"],
                               rtol=1e-6)


def test_resume_is_bit_identical(runs):
    """20 meta-steps uninterrupted == 15, stop, --resume (parameters, optimiser state, replay
    buffers, env states, key, early stopping of both trained algorithms; then the exported
    policies, the few-shot results, metrics.csv and the TensorBoard scalars)."""
    full, split = runs["root"] / "full", runs["root"] / "split"
    resume = runs["procs"]["resume"]
    rc, _, out, err = runs["stop"]
    assert rc == 0 and out == "" and "| init |" not in out  # no evaluation after a stop
    assert ("stopped at meta-step 15 (--stop-after); checkpoints saved: context at meta-step 15, pretrained at "
            "meta-step 15. ") in err
    assert f"Continue with: metadqn train --resume {split}" in err
    assert "meta-train context" in err and "/20 " in err  # the tqdm bar (stderr)
    # checkpoints: every 10 meta-steps, and where --stop-after stopped (15): both algorithms train at
    # once and each stops there
    assert runs["after_stop"] == {"context": [10, 15], "pretrained": [10, 15]}
    resume.check()
    assert "context: resuming from the checkpoint at meta-step 15" in resume.err
    assert "pretrained: resuming from the checkpoint at meta-step 15" in resume.err
    for algo in ("context", "pretrained"):
        a = Checkpointer(full / "checkpoints" / algo).read_arrays(20)
        b = Checkpointer(split / "checkpoints" / algo).read_arrays(20)
        assert a.keys() == b.keys() and len(a) > 40
        differing = [k for k in a if not (a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]))]
        assert differing == [], algo
        pa = Checkpointer(full / "policy" / algo, kind=FORMAT_POLICY).read_arrays()
        pb = Checkpointer(split / "policy" / algo, kind=FORMAT_POLICY).read_arrays()
        assert all(np.array_equal(pa[k], pb[k]) for k in pa)
    ja, jb = (json.loads((r / "few_shot.json").read_text()) for r in (full, split))
    assert ja["results"] == jb["results"] and ja["returns"] == jb["returns"]
    # the same rows (the algorithms append theirs as their chunks end, in whatever order)
    drop = lambda rows: sorted(({k: v for k, v in r.items() if k != "wall_s"} for r in rows),  # noqa: E731
                               key=lambda r: (r["algorithm"], int(r["meta_step"])))
    assert drop(_csv_rows(full)) == drop(_csv_rows(split))
    ta, tb = read_tb_scalars(full / "tb"), read_tb_scalars(split / "tb")
    assert ta["context/train/query_loss"] == tb["context/train/query_loss"]
    assert ta["pretrained/validation/return"] == tb["pretrained/validation/return"]


# ------------------------------------------------------------------- other commands
def test_evaluate_command(runs):
    p = runs["procs"]["evaluate"].check()
    run = runs["root"] / "full"
    assert "| context |" in p.out and "| scratch |" in p.out and "| pretrained |" not in p.out
    for f in ("eval.md", "eval.png", "eval.json"):
        assert (run / f).is_file()
    # the same protocol and keys as at the end of training: the same numbers
    a = json.loads((run / "few_shot.json").read_text())["results"]
    b = json.loads((run / "eval.json").read_text())["results"]
    assert {k for k, v in b.items() if isinstance(v, dict)} == {"context", "scratch"}  # the inits
    assert all(b[k] == a[k] for k in b)


def _as_old_format(run: Path) -> None:
    """Rewrites ``run``'s config.yaml as written before ``defaults_used`` existed (nulls)."""
    from metadqn_jax.runs.configs import TrainConfig

    from metadqn_jax.runs.configs import field_defaults

    data = yaml.safe_load((run / "config.yaml").read_text())
    for key in data.pop("defaults_used"):
        section, field = key.split(".")
        if key not in field_defaults():  # a None default; the others were written as values
            data[section][field] = None
    (run / "config.yaml").write_text(TrainConfig.resolve(data).to_yaml())
    assert "defaults_used" not in (run / "config.yaml").read_text()


def test_evaluate_falls_back_to_checkpoints(runs, capsys, tmp_path):
    run = _copy_run(runs, tmp_path)
    _as_old_format(run)  # a run folder written before config.yaml recorded its defaults
    shutil.rmtree(run / "policy")  # e.g. a run stopped before its end
    rc, out, err = run_main(capsys, ["evaluate", str(run), "--tag", "ck", "--baselines", "pretrained"])  # no scratch
    assert rc == 0, err
    assert "note: no exported policy for context (unfinished run?); evaluating the best parameters of its " \
           "latest checkpoint (meta-step 20)" in err
    a = json.loads((runs["root"] / "full" / "few_shot.json").read_text())["results"]
    b = json.loads((run / "ck.json").read_text())["results"]
    assert {k for k, v in b.items() if isinstance(v, dict)} == {"context", "pretrained"}  # the inits
    assert b["context"] == a["context"] and b["pretrained"] == a["pretrained"]
    # without --tag, what train wrote stays: the evaluation goes to evaluate.*
    before = (run / "few_shot.md").read_bytes(), (run / "few_shot.json").read_bytes()
    rc, out, err = run_main(capsys, ["evaluate", str(run), "--baselines", "pretrained"])
    assert rc == 0, err
    assert ((run / "few_shot.md").read_bytes(), (run / "few_shot.json").read_bytes()) == before
    assert f"wrote {run / 'evaluate.md'}" in out and json.loads((run / "evaluate.json").read_text())["results"] == \
        json.loads((run / "ck.json").read_text())["results"]
    rc, _, err = run_main(capsys, ["evaluate", str(run), "--budgets", "0,5", "--set", "meta.hidden=[8]"])
    assert rc == 2 and err.startswith("error: evaluate: meta.hidden is [16, 16] in the run's config.yaml and "
                                      "cannot change")


def test_dqn_command(runs):
    p = runs["procs"]["dqn"].check()
    run = runs["root"] / "dqn"
    assert "DQN on CartPole-v1" in p.out and "| env steps | eval return |" in p.out
    for f in ("config.yaml", "metrics.csv", "dqn.md", "dqn.json", "returns.png"):
        assert (run / f).is_file(), f
    rows = _csv_rows(run)
    assert [(int(r["seed"]), int(r["env_steps"])) for r in rows] == [(0, 200), (0, 400), (1, 200), (1, 400)]
    tb = read_tb_scalars(run / "tb")
    assert [s for s, _ in tb["seed_1/eval/return"]] == [200, 400]
    assert [v for _, v in tb["seed_1/eval/return"]] == [float(r["eval_return"]) for r in rows[2:]]
    assert yaml.safe_load((run / "config.yaml").read_text())["dqn"]["total_steps"] == 400


def test_regress_command(runs):
    p = runs["procs"]["regress"].check()
    run = runs["root"] / "regress"
    assert "| maml | 5 |" in p.out and "| pretrained | 5 |" in p.out
    for f in ("config.yaml", "metrics.csv", "regress.md", "regress.json", "regress.png"):
        assert (run / f).is_file(), f
    rows = _csv_rows(run)
    assert [(r["algorithm"], int(r["iteration"])) for r in rows] == [
        ("maml", 10), ("maml", 20), ("pretrained", 10), ("pretrained", 20)]
    assert set(read_tb_scalars(run / "tb")) >= {"maml/train/query_loss", "pretrained/train/pre_adapt_loss"}


def test_families_command(runs):
    from metadqn_jax import tasks

    p = runs["procs"]["families"].check()
    lines = p.out.strip().splitlines()
    names = [line.split()[0].rstrip(":") for line in lines if line.strip()]
    assert all(n in names for n in tasks.list_families()), names  # one line per family (a table or not)
    assert any(line.startswith("pointnav-goal") and "PointNav-v0" in line for line in lines)
    assert cli.main(["families", "--json"]) == 0


# ---------------------------------------------------------------- in-process: config
def run_main(capsys, argv):
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_print_config_precedence(capsys, tmp_path):
    rc, out, err = run_main(capsys, ["train", "--print-config"])
    assert rc == 0 and err == ""
    default = yaml.safe_load(out)
    assert default["meta"]["family"] == "pointnav-rotated" and default["run"]["algorithms"] == ["context"]
    assert default["few_shot"]["budgets"] == [0, 25, 50, 100, 250, 500]
    # file < flags < --set; derived few_shot.support_size follows meta.support_size
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("meta:\n  num_meta_steps: 7\n  support_size: 50\nhparams:\n  inner_lr: 0.2\n")
    rc, out, _ = run_main(capsys, ["train", "--config", str(cfg_file), "--inner-lr", "0.3", "--set",
                                   "hparams.meta_lr=0.01", "--set", "tau=0.9", "--algorithm", "maml,context",
                                   "--algorithm", "cavia", "--baselines", "none", "--oracle", "--print-config"])
    c = yaml.safe_load(out)
    assert rc == 0 and c["meta"]["num_meta_steps"] == 7 and c["hparams"]["inner_lr"] == 0.3
    assert c["hparams"]["meta_lr"] == 0.01 and c["hparams"]["tau"] == 0.9
    assert c["few_shot"]["support_size"] == 50 and c["run"]["algorithms"] == ["maml", "context", "cavia"]
    assert c["run"]["baselines"] == ["oracle"]
    # the printed config is itself a valid --config file (round trip)
    cfg_file.write_text(out)
    rc, out2, _ = run_main(capsys, ["train", "--config", str(cfg_file), "--print-config"])
    assert rc == 0 and out2 == out
    rc, out, _ = run_main(capsys, ["dqn", "--family", "pointnav-goal", "--task", "3", "--print-config"])
    assert rc == 0 and yaml.safe_load(out)["dqn"]["env_id"] == "PointNav-v0"
    assert yaml.safe_load(out)["hparams"]["gamma"] == 0.5  # the family's discount (was DQNConfig's 0.99)
    rc, out, _ = run_main(capsys, ["dqn", "--family", "pointnav-goal", "--set", "hparams.gamma=0.7", "--print-config"])
    assert rc == 0 and yaml.safe_load(out)["hparams"]["gamma"] == 0.7  # a discount the user sets wins
    rc, out, _ = run_main(capsys, ["regress", "--quick", "--eval-shots", "5,10", "--print-config"])
    assert rc == 0 and yaml.safe_load(out)["eval"]["shots"] == [5, 10]


BAD_VALUES = [
    (["train", "--num-tasks", "0"], "error: meta.num_tasks must be a positive integer, got 0"),
    (["train", "--meta-steps", "-5"], "error: meta.num_meta_steps must be a positive integer, got -5"),
    (["train", "--inner-lr", "-1"], "error: hparams.inner_lr must be in (0.0, inf), got -1.0"),
    (["train", "--gamma", "1.5"], "error: hparams.gamma must be in [0.0, 1.0], got 1.5"),
    (["train", "--family", "nope"], "error: meta.family: unknown task family 'nope'; known families: "),
    (["train", "--algorithm", "dqn"], "error: run.algorithms must be a non-empty list of ("),
    (["train", "--baselines", "random"], "error: run.baselines must be a list of ('pretrained', 'scratch', 'oracle')"),
    (["train", "--budgets=-1,5"], "error: few_shot.budgets must be a non-empty list of env-step counts >= 0"),
    (["train", "--set", "meta.hidden=[0]"], "error: meta.hidden must be a non-empty list of positive layer widths"),
    (["train", "--set", "meta.hidden=abc"], "error: meta.hidden must be an integer, got 'abc'"),
    (["train", "--set", "meta.nope=1"], "error: meta.nope: unknown field"),
    (["train", "--set", "metaa.hidden=[8]"], "error: metaa: unknown section for 'metadqn train'; did you mean 'meta'?"),
    (["train", "--set", "support_size=5"], "error: --set support_size: qualify the field as section.support_size"),
    (["train", "--set", "novalue"], "error: --set expects section.field=value, got 'novalue'"),
    (["train", "--set", "meta.buffer_size=5"], "error: meta.buffer_size must be >= envs_per_task * rollout_steps"),
    (["train", "--val-every", "-1"], "error: validation.every must be an integer >= 0, got -1"),
    (["train", "--keep", "0"], "error: run.keep must be a positive integer, got 0"),
    (["train", "--num-devices", "0"], "error: run.num_devices must be a positive integer, got 0"),
    (["train", "--meta-steps", "abc"], "error: argument --meta-steps: invalid int value: 'abc' (see 'metadqn train --help')"),
    (["train", "--bogus"], "error: unrecognized arguments: --bogus"),
    (["dqn", "--steps", "0"], "error: dqn.total_steps must be a positive integer, got 0"),
    (["dqn", "--set", "dqn.env_id=Nope-v0"], "error: dqn.env_id: unknown environment 'Nope-v0'; known environments: "),
    (["dqn", "--lr", "0"], "error: hparams.lr must be in (0.0, inf), got 0.0"),
    (["dqn", "--family", "pointnav-goal", "--task", "100000"], "error: run.task must be < 128"),
    (["regress", "--iterations", "0"], "error: regression.num_iterations must be a positive int"),
    (["regress", "--algorithm", "cavia"], "error: run.algorithms must be a non-empty list of ("),
    (["regress", "--eval-tasks", "1"], "error: eval.num_tasks must be an integer >= 2, got 1"),
]


@pytest.mark.parametrize("argv,message", BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_bad_config_values(capsys, argv, message):
    rc, out, err = run_main(capsys, [*argv, "--print-config"] if "--bogus" not in argv else argv)
    assert rc == 2 and out == ""
    assert err.startswith(message), err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_config_files(capsys, tmp_path):
    rc, _, err = run_main(capsys, ["train", "--config", str(tmp_path / "missing.yaml"), "--print-config"])
    assert rc == 2 and err.startswith("error: config file ") and "missing.yaml' does not exist" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("meta: [unclosed\n")
    rc, _, err = run_main(capsys, ["train", "--config", str(bad), "--print-config"])
    assert rc == 2 and "is not valid YAML" in err and err.count("\n") == 1
    bad.write_text("meta:\n  num_tasks: many\n")
    rc, _, err = run_main(capsys, ["train", "--config", str(bad), "--print-config"])
    assert rc == 2 and err == "error: meta.num_tasks must be an integer, got 'many'\n"
    bad.write_text("command: dqn\ndqn:\n  total_steps: 10\n")
    rc, _, err = run_main(capsys, ["train", "--config", str(bad), "--print-config"])
    assert rc == 2 and err == "error: command: this configuration is for 'metadqn dqn', not 'metadqn train'\n"


# ------------------------------------------------------- in-process: bad run folders
def _copy_run(runs, tmp_path, name="copy") -> Path:
    dst = tmp_path / name
    shutil.copytree(runs["root"] / "full", dst)
    return dst


def test_bad_run_folders_and_checkpoints(runs, capsys, tmp_path):
    rc, _, err = run_main(capsys, ["evaluate", str(tmp_path / "nope")])
    assert rc == 2 and err == f"error: run directory '{tmp_path / 'nope'}' does not exist\n"
    (tmp_path / "plain").mkdir()
    rc, _, err = run_main(capsys, ["train", "--resume", str(tmp_path / "plain")])
    assert rc == 2 and err == f"error: '{tmp_path / 'plain'}' is not a metadqn run directory (no config.yaml)\n"
    rc, _, err = run_main(capsys, ["evaluate", str(runs["root"] / "dqn")])
    assert rc == 2 and "is a 'metadqn dqn' run, not a 'metadqn train' run" in err
    # an existing run is never silently reused
    rc, _, err = run_main(capsys, ["train", "--quick", "--out", str(runs["root"]), "--name", "full"])
    assert rc == 2 and "already exists; continue it with 'metadqn train --resume" in err
    # --resume keeps the run's training settings
    run = _copy_run(runs, tmp_path)
    rc, _, err = run_main(capsys, ["train", "--resume", str(run), "--num-tasks", "8"])
    assert rc == 2 and err.startswith("error: --resume: meta.num_tasks is 4 in the run's config.yaml and cannot "
                                      "change (requested 8); only meta.num_meta_steps, few_shot.*")
    rc, _, err = run_main(capsys, ["train", "--resume", str(run), "--quick"])
    assert rc == 2 and err == "error: --quick cannot be combined with --resume (the run's config.yaml is used)\n"


def test_resume_of_a_finished_run_changes_no_byte(runs, capsys, tmp_path):
    """``--resume`` of a finished, evaluated run says so, prints its results and leaves every
    file as it was (no re-evaluation, no new events)."""
    run = _copy_run(runs, tmp_path, "finished")
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    rc, out, err = run_main(capsys, ["train", "--resume", str(run), "--no-progress"])
    assert rc == 0, err
    assert "is finished (every algorithm trained its 20 meta-steps or stopped early) and evaluated; nothing to do" in err
    assert out == (run / "few_shot.md").read_text()
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def _resume(capsys, run: Path):
    return run_main(capsys, ["train", "--resume", str(run), "--no-progress", "--meta-steps", "30"])


def test_corrupt_foreign_and_mismatched_checkpoints(runs, capsys, tmp_path):
    # corrupt: garbage array data in every context checkpoint (with one intact step left, resume
    # falls back to it: test_broken_latest_step_resumes)
    run = _copy_run(runs, tmp_path, "corrupt")
    for step in ("10", "20"):
        for f in (run / "checkpoints" / "context" / step / "state").rglob("*"):
            if f.is_file() and f.name != "commit_success.txt":
                f.write_bytes(b"\x00garbage")
    rc, _, err = _resume(capsys, run)
    assert rc == 2 and err.startswith(f"error: checkpoint {run.absolute()}/checkpoints/context/20 is corrupt or "
                                      "unreadable"), err
    assert err.count("\n") == 1 and "1 other step(s) cannot be read either" in err
    assert sorted(p.name for p in (run / "checkpoints" / "context").iterdir()) == ["10", "20"]  # nothing moved
    # foreign: somebody else's files where the checkpoints should be
    run = _copy_run(runs, tmp_path, "foreign")
    shutil.rmtree(run / "checkpoints" / "context")
    (run / "checkpoints" / "context" / "model").mkdir(parents=True)
    (run / "checkpoints" / "context" / "model" / "weights.h5").write_bytes(b"HDF")
    rc, _, err = _resume(capsys, run)
    assert rc == 2 and err == (f"error: {run.absolute()}/checkpoints/context is not a metadqn_jax checkpoint "
                               "directory (no <step>/meta and <step>/state checkpoints in it)\n")
    # the config does not match the checkpoint (edited config.yaml: other layer widths)
    run = _copy_run(runs, tmp_path, "mismatch")
    text = (run / "config.yaml").read_text().replace("hidden: [16, 16]", "hidden: [32, 32]")
    (run / "config.yaml").write_text(text)
    rc, _, err = _resume(capsys, run)
    assert rc == 2 and err == (f"error: checkpoint {run.absolute()}/checkpoints/context/20 does not match the "
                               "config: meta.hidden is [16, 16] in the checkpoint but [32, 32] in the config\n")


def test_broken_latest_step_resumes(runs, capsys, tmp_path):
    """The latest step's state/ deleted: resume falls back to the newest intact step, moves the
    broken folder aside (one line), re-trains and saves that step number again, bit-identical
    to the uninterrupted run. The folder's config.yaml predates ``defaults_used``: old run
    folders resume as before."""
    run = _copy_run(runs, tmp_path, "broken")
    _as_old_format(run)
    ck_dir = run / "checkpoints" / "context"
    shutil.rmtree(ck_dir / "20" / "state")
    rc, _, err = run_main(capsys, ["train", "--resume", str(run), "--no-progress", "--baselines", "none"])
    assert rc == 0, err
    assert ("context: checkpoint step 20 is broken (incomplete: its meta/ or state/ folder is missing); moved "
            "aside to 20.broken-1") in err
    assert "context: resuming from the checkpoint at meta-step 10" in err
    assert sorted(p.name for p in ck_dir.iterdir()) == ["10", "20", "20.broken-1"]
    a = Checkpointer(runs["root"] / "full" / "checkpoints" / "context").read_arrays(20)
    b = Checkpointer(ck_dir).read_arrays(20)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    rows = [r for r in _csv_rows(run) if r["algorithm"] == "context"]
    assert [int(r["meta_step"]) for r in rows] == [5, 10, 15, 20]


def test_broken_step_does_not_touch_the_folder_when_resume_fails(runs, capsys, tmp_path):
    """A resume refused after finding a broken step leaves config.yaml, metrics.csv and the
    checkpoints as they were."""
    run = _copy_run(runs, tmp_path, "broken_refused")
    shutil.rmtree(run / "checkpoints" / "context" / "20" / "state")
    before = {f: (run / f).read_bytes() for f in ("config.yaml", "metrics.csv")}
    rc, _, err = run_main(capsys, ["train", "--resume", str(run), "--meta-steps", "5"])
    assert rc == 2 and err.startswith("error: --resume: meta.num_meta_steps is 5 but the context checkpoint "
                                      "(meta-step 10) is past it"), err
    assert {f: (run / f).read_bytes() for f in before} == before
    assert sorted(p.name for p in (run / "checkpoints" / "context").iterdir()) == ["10", "20"]


def test_resume_refuses_edited_config_and_fewer_steps(runs, capsys, tmp_path):
    """An edit of a fixed setting in config.yaml is refused like the same change by flag, and
    so is --meta-steps below a checkpoint's step; neither rewrites anything."""
    run = _copy_run(runs, tmp_path, "edited")
    text = (run / "config.yaml").read_text()
    assert "  seed: 0\n" in text
    (run / "config.yaml").write_text(text.replace("  seed: 0\n", "  seed: 3\n"))
    metrics = (run / "metrics.csv").read_bytes()
    rc, _, err = run_main(capsys, ["train", "--resume", str(run), "--no-progress"])
    assert rc == 2 and err == ("error: --resume: run.seed is 0 in the context checkpoint (meta-step 20) but 3 in "
                               "the run's config.yaml, and it cannot change; only meta.num_meta_steps, few_shot.*, "
                               "run.baselines, run.checkpoint_every, run.keep may\n"), err
    (run / "config.yaml").write_text(text)
    rc, _, err = run_main(capsys, ["train", "--resume", str(run), "--seed", "3"])  # the same by flag
    assert rc == 2 and err.startswith("error: --resume: run.seed is 0 in the run's config.yaml and cannot change "
                                      "(requested 3)"), err
    rc, _, err = run_main(capsys, ["train", "--resume", str(run), "--meta-steps", "15"])
    assert rc == 2 and err == ("error: --resume: meta.num_meta_steps is 15 but the context checkpoint (meta-step 20) "
                               "is past it; it can only grow (--meta-steps 20 or more)\n"), err
    assert (run / "config.yaml").read_text() == text and (run / "metrics.csv").read_bytes() == metrics


# ------------------------------------------------------------------ in-process: misc
def test_logging_never_recompiles(runs, capsys):
    """Nothing the per-chunk callback does (CSV, TensorBoard, checkpoints) traces or compiles
    anything after the first chunk (in-process run of the fixture: chunks at 5, 10, 15)."""
    per_thread = runs["stop"][1]
    assert sum(len(c) for c in per_thread.values()) >= 3, per_thread
    assert all(c[1:] == [0] * (len(c) - 1) for c in per_thread.values()), per_thread


def test_help_is_complete(capsys):
    parser = cli.build_parser(width=100)
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert set(sub.choices) == {"train", "evaluate", "dqn", "regress", "families", "sweep"}
    for name, p in sub.choices.items():
        for action in p._actions:
            if action.dest == "help" or not action.option_strings:
                continue
            assert "[default:" in (action.help or ""), (name, action.option_strings)
    # numeric options name their unit
    train_help = sub.choices["train"].format_help().split("options:", 1)[1]
    for flag in ("--meta-steps", "--budgets", "--checkpoint-every", "--test-tasks", "--inner-steps"):
        block = train_help.split(flag, 1)[1].split("\n  --", 1)[0]
        assert "unit:" in block, flag
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--help"])
    assert e.value.code == 0
    assert "usage: metadqn train" in capsys.readouterr().out
    assert cli.main([]) == 2


def test_docs_cli_md_is_in_sync():
    path = Path(__file__).resolve().parents[1] / "docs" / "CLI.md"
    assert path.is_file(), "docs/CLI.md is missing: python -m metadqn_jax.cli --write-docs"
    assert path.read_text() == cli.render_cli_docs(), "docs/CLI.md is stale: python -m metadqn_jax.cli --write-docs"


def test_command_defaults_are_current():
    """The defaults the help shows (metadqn_jax/app/command_defaults.py, generated) are the
    resolved defaults of every command."""
    path = Path(cli.DEFAULTS_PATH)
    assert path.read_text() == cli.render_command_defaults(), \
        "metadqn_jax/app/command_defaults.py is stale: python -m metadqn_jax.cli --write-docs"


def test_help_imports_no_jax():
    """``metadqn --help`` and every command's ``--help`` import neither jax nor gymnax."""
    code = ("import contextlib, io, sys\n"
            "from metadqn_jax import cli\n"
            "for argv in ([], ['train'], ['evaluate'], ['dqn'], ['regress'], ['families']):\n"
            "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "        cli.main([*argv, '--help'])\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'jax', 'jaxlib', 'gymnax'}))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


def test_num_devices_checked_before_any_work(capsys, tmp_path):
    """Asking for more devices than exist is one clear error, raised before a run folder or
    any program exists (this machine and CI have a single CPU device)."""
    import jax

    n = jax.device_count() + 1
    rc, out, err = run_main(capsys, ["train", "--quick", "--num-devices", str(n), "--out", str(tmp_path),
                                     "--name", "devices", "--no-progress"])
    assert rc == 2 and out == ""
    assert err.startswith(f"error: num_devices={n} but only {n - 1} device(s) are available"), err
    assert err.count("\n") == 1
    assert not (tmp_path / "devices").exists()
