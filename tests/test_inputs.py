"""Inputs that used to be accepted silently (or failed with a traceback) are refused with one
clear error: malformed ``--set`` values, duplicate YAML keys, duplicate budgets, binary config
files, bad family names, range bounds beyond float32, tasks of the wrong kind for
``adapt_to_task``; and ``metadqn families`` is a table that starts without jax and survives a
closed pipe. Everything here runs before any compilation (a few seconds in all)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metadqn_jax import ConfigError, FewShotConfig, TaskFamily, cli, deploy, tasks
from metadqn_jax.app import families
from metadqn_jax.runs.yamlio import coerce, load_yaml, parse_overrides

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONWARNINGS="ignore")
    env.pop("METADQN_DEBUG", None)
    return env


def one_error(capsys, argv: list[str]) -> str:
    """Runs ``metadqn ARGV`` in-process; asserts exit status 2, nothing on stdout and exactly
    one ``error:`` line on stderr, and returns that line."""
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    assert rc == 2 and out == "", (rc, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err.strip()


# ----------------------------------------------------------------------------- --set
def test_set_with_malformed_yaml_value_is_refused(capsys):
    """``--set 'meta.hidden=[32,'`` used to become hidden [32]."""
    err = one_error(capsys, ["train", "--quick", "--print-config", "--set", "meta.hidden=[32,"])
    assert err.startswith("error: --set meta.hidden: '[32,' is not a valid YAML value"), err
    with pytest.raises(ConfigError, match="not a valid YAML value"):
        parse_overrides(["meta.x=@y"])
    # the same list as text in a config file: an unclosed bracket is refused, not read as [32]
    with pytest.raises(ConfigError, match=r"meta.hidden must be a list such as \[8, 8\], got '\[32,'"):
        coerce("[32,", tuple[int, ...], "meta.hidden")
    with pytest.raises(ConfigError, match="an empty item"):
        coerce("32,,8", tuple[int, ...], "meta.hidden")
    # well-formed values are read as before
    assert parse_overrides(["meta.hidden=[32, 32]", "hparams.tau=0.9", "meta.family=my-pole"]) == {
        "meta": {"hidden": [32, 32], "family": "my-pole"}, "hparams": {"tau": 0.9}}
    assert coerce("[8, 8]", tuple[int, ...], "x") == coerce("8,8", tuple[int, ...], "x") == (8, 8)
    assert coerce("[32,]", tuple[int, ...], "x") == (32,)


# ------------------------------------------------------------------------ YAML files
def test_duplicate_yaml_keys_are_refused(capsys, tmp_path):
    """PyYAML keeps the last of two equal keys; a config file with one is refused, naming the
    key and both lines."""
    path = tmp_path / "dup.yaml"
    path.write_text("meta:\n  hidden: [8]\n  num_tasks: 4\n  hidden: [16]\n")
    err = one_error(capsys, ["train", "--quick", "--print-config", "--config", str(path)])
    assert err == f"error: config file {str(path)!r}: duplicate key 'hidden' at line 4 (first at line 2)", err
    path.write_text("run: {seed: 1}\nmeta: {hidden: [8]}\nrun: {seed: 2}\n")
    with pytest.raises(ConfigError, match="duplicate key 'run' at line 3 .first at line 1."):
        load_yaml(path)
    # merge keys keep their meaning; the same key in two mappings is not a duplicate
    path.write_text("base: &b {seed: 1}\nrun:\n  <<: *b\n  seed: 2\nother: {seed: 3}\n")
    assert load_yaml(path) == {"base": {"seed": 1}, "run": {"seed": 2}, "other": {"seed": 3}}


def test_binary_or_non_utf8_config_file_error_names_the_file(capsys, tmp_path):
    """A non-UTF-8 file used to give "error: 'utf-8' codec can't decode byte ..." without its name."""
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("meta:\n  family: café\n".encode("latin-1"))
    err = one_error(capsys, ["train", "--quick", "--print-config", "--config", str(latin)])
    assert err == (f"error: config file {str(latin)!r} is not a UTF-8 text file (byte 0xe9 at offset 19); "
                   "a config file is YAML text"), err
    binary = tmp_path / "model.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    err = one_error(capsys, ["train", "--quick", "--print-config", "--config", str(binary)])
    assert err.startswith(f"error: config file {str(binary)!r} is not a UTF-8 text file"), err
    nul = tmp_path / "nul.yaml"  # valid UTF-8, but not YAML text
    nul.write_bytes(b"\x00\x01meta: 1\n")
    err = one_error(capsys, ["train", "--quick", "--print-config", "--config", str(nul)])
    assert err.startswith(f"error: config file {str(nul)!r} is not valid YAML: unacceptable character"), err


# --------------------------------------------------------------------------- budgets
def test_duplicate_budgets_are_refused(capsys):
    """``--budgets 0,10,10`` used to evaluate budget 10 twice."""
    err = one_error(capsys, ["train", "--quick", "--print-config", "--budgets", "0,10,10"])
    assert err == ("error: few_shot.budgets must be a list of distinct env-step counts (10 given more than "
                   "once), got [0, 10, 10]"), err
    with pytest.raises(ConfigError, match=r"distinct env-step counts \(5 given more than once\)"):
        FewShotConfig(budgets=(5, 0, 5))
    assert FewShotConfig(budgets=(10, 0, 5)).budgets == (0, 5, 10)  # order still does not matter


# --------------------------------------------------------------------------- memory
@pytest.mark.parametrize("setting,part", [("meta.hidden=[100000,100000]", "parameters and optimiser 149.04"),
                                          ("meta.buffer_size=1000000000", "replay 96.86")])
def test_a_configuration_that_cannot_fit_is_refused_before_any_compute(capsys, tmp_path, setting, part, monkeypatch):
    """The estimate (meta.step.memory_bytes) against the memory available: one line where
    training would start, nothing written; ``force`` lets it through."""
    from metadqn_jax.app import common

    monkeypatch.setattr(common, "available_memory_bytes", lambda: 8 * 2 ** 30)
    err = one_error(capsys, ["train", "--quick", "--set", setting, "--out", str(tmp_path / "runs")])
    assert err.startswith("error: this configuration needs about ") and part in err, err
    assert "but 8.0 GiB are available; lower meta.num_tasks, meta.buffer_size, meta.hidden" in err
    assert not (tmp_path / "runs").exists()
    from metadqn_jax.meta import MetaConfig

    common.check_memory(MetaConfig(family="pointnav-rotated"), 3, force=False)  # the default run fits
    common.check_memory(MetaConfig(family="pointnav-rotated", hidden=(100000, 100000)), 1, force=True)
    with pytest.raises(ConfigError, match="^this configuration needs about"):
        common.check_memory(MetaConfig(family="pointnav-rotated", hidden=(100000, 100000)), 1, force=False)


# -------------------------------------------------------------------------- families
@pytest.mark.parametrize("name", ["", "   ", 123, None, " my-pole"])
def test_family_name_must_be_a_non_empty_string(name):
    """``TaskFamily('')`` and ``TaskFamily(123, ...)`` used to register."""
    with pytest.raises(ValueError, match="TaskFamily: name must be a non-empty string"):
        TaskFamily(name, "CartPole-v1", ranges={"length": (0.3, 1.2)})
    with pytest.raises(ValueError, match="env_id must be a non-empty environment id string, got 7"):
        TaskFamily("my-pole", 7)


@pytest.mark.parametrize("kwargs", [
    {"ranges": {"length": (0.0, 1e39)}},
    {"ranges": {"gravity": (-1e39, 9.8)}},
    {"choices": {"length": (0.5, 4e38)}},
    {"ranges": {"max_steps_in_episode": (10, 2**40)}},
])
def test_range_bounds_beyond_the_field_dtype_are_refused(kwargs):
    """``ranges={"length": (0, 1e39)}`` used to give tasks with length inf."""
    with pytest.raises(ValueError, match="does not fit the field's (float32|int32)"):
        TaskFamily("overflow", "CartPole-v1", **kwargs)


def test_range_bounds_at_the_float32_limit_are_finite():
    big = float(np.finfo(np.float32).max)
    fam = TaskFamily("wide", "CartPole-v1", ranges={"length": (0.0, big)}, num_train=4, num_val=4, num_test=4)
    assert np.all(np.isfinite(np.asarray(fam.tasks("test").length)))


# ----------------------------------------------------------------------- adapt_to_task
@pytest.fixture(scope="module")
def untrained_policy():
    """A Policy of an untrained context learner on pointnav-goal (no training, no compilation
    of the adaptation program: every call below must fail before it)."""
    from metadqn_jax.meta import MetaConfig

    cfg = MetaConfig(family="pointnav-goal", algorithm="context", hidden=(8,), encoder_hidden=(8,),
                     num_tasks=2, envs_per_task=1, rollout_steps=2, support_size=4, buffer_size=4,
                     query_batch=4)
    learner, obs_shape, num_actions = deploy._learner(cfg)
    params = learner.init(jax.random.key(0))
    fs = FewShotConfig(budgets=(0, 4), num_tasks=1, seeds=1, support_size=4, finetune_batch=4, eval_episodes=1)
    act = lambda p, obs: jnp.argmax(learner.q_values(p, obs), axis=-1).astype(jnp.int32)
    return deploy.Policy(learner.unadapted(params), act, params, params, cfg, fs, learner, cfg.task_family,
                         obs_shape, num_actions, "context", {})


def test_adapt_to_task_checks_its_task(untrained_policy, monkeypatch):
    """Wrong EnvParams, a dict, None, mismatched shapes or a NaN field used to give an
    AttributeError, an IndexError or NaN parameters; now one ValueError naming the expected
    params class, raised before the adaptation program is built."""
    policy = untrained_policy

    def no_compute(*args, **kwargs):
        raise AssertionError("adapt_to_task built its program before checking the task")

    monkeypatch.setattr(deploy, "_adapt_program", no_compute)
    pool = policy.family.tasks("test")
    task = jax.tree.map(lambda x: x[0], pool)
    prefix = ("adapt_to_task: env_params must be a PointNavParams (the PointNav-v0 params of the policy's "
              "family pointnav-goal)")
    cases = [
        (None, ", got None"),
        ({"goal_x": 0.5, "goal_y": 0.0}, ", got dict"),
        (tasks.get_family("cartpole-physics").tasks("test"), ", got gymnax."),
        (task.replace(goal_x=jnp.float32(jnp.nan)), "; env_params.goal_x holds nan"),
        (task.replace(goal_y=np.inf), "; env_params.goal_y holds inf"),
        (task.replace(goal_x=jnp.zeros(3)), "; mismatched leaf shapes"),
        (task.replace(goal_x=jnp.zeros((2, 2))), "; env_params.goal_x has shape (2, 2), not () (one task) or (n,)"),
        (task.replace(goal_x="left"), "; env_params.goal_x is not numeric (got str)"),
        (task.replace(goal_x=None), "; no value for env_params.goal_x"),
        (jax.tree.map(lambda x: x[:0], pool), "; the batch of tasks is empty"),
    ]
    for bad, detail in cases:
        with pytest.raises(ValueError) as e:
            deploy.adapt_to_task(policy, bad, budget=4)
        msg = str(e.value)
        assert msg.startswith(prefix + detail) and "\n" not in msg, msg
    # the checks accept the family's own tasks, single and batched (Python numbers too)
    assert deploy.check_task(policy, task) is False
    assert deploy.check_task(policy, jax.tree.map(lambda x: x[:3], pool)) is True
    assert deploy.check_task(policy, task.replace(goal_x=0.5, goal_y=-0.5)) is False


# -------------------------------------------------------------------- metadqn families
def test_families_table_is_generated_from_the_live_families():
    """``metadqn families`` prints plain data (no jax); it is what the live families give."""
    assert families.TABLE_PATH.read_text() == families.family_table_source(), \
        "metadqn_jax/app/family_table.py is stale: python -m metadqn_jax.app.families --write"
    from metadqn_jax.app.family_table import BUILTIN_FAMILY_ROWS
    from metadqn_jax.tasks.builtin import BUILTIN_FAMILIES

    assert [r["name"] for r in BUILTIN_FAMILY_ROWS] == [f.name for f in BUILTIN_FAMILIES]


def test_families_is_a_table_without_jax():
    """A fresh ``metadqn families`` imports neither jax nor gymnax and prints a table."""
    code = ("import sys\nfrom metadqn_jax import cli\nrc = cli.main(['families'])\n"
            "print(rc, sorted({m.split('.')[0] for m in sys.modules} & {'jax', 'jaxlib', 'gymnax'}), "
            "file=sys.stderr)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), cwd=REPO,
                       check=False, timeout=1800)
    assert p.stderr.strip() == "0 []", p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["FAMILY", "ENVIRONMENT", "WHAT", "VARIES", "GAMMA", "STEPS", "DESCRIPTION"]
    body = [line.split()[:2] for line in lines[1:]]
    assert body == [[f.name, f.env_id] for f in map(tasks.get_family, tasks.list_families())]
    pointnav = next(line for line in lines if line.startswith("pointnav-goal "))
    assert "goal = 0.7*(cos a, sin a), a~U[0, 2pi)" in pointnav and "unobserved goal" in pointnav
    # every column starts where its header does
    starts = [lines[0].index(h) for h in ("ENVIRONMENT", "GAMMA", "DESCRIPTION")]
    assert all(line[s - 2:s] == "  " and line[s] != " " for line in lines[1:] for s in starts)


def test_families_survives_a_closed_pipe():
    """``metadqn families | head -1`` used to end in a BrokenPipeError traceback: with the
    reader gone, the command ends quietly (status 1, as Python's docs on SIGPIPE recommend)."""
    for argv in (["families"], ["families", "--json"]):
        r, w = os.pipe()
        os.close(r)  # the reader has gone before anything is written
        try:
            p = subprocess.run([sys.executable, "-m", "metadqn_jax", *argv], stdout=w, stderr=subprocess.PIPE,
                               text=True, env=_env(), cwd=REPO, check=False, timeout=1800)
        finally:
            os.close(w)
        assert p.stderr == "" and p.returncode == 1, (argv, p.returncode, p.stderr)


def test_families_lists_user_registered_families(capsys, monkeypatch):
    """With the registry loaded, every registered family is listed (the user's too), as a
    table and as JSON; the built-in rows are the plain data's."""
    import metadqn_jax.tasks.registry as registry
    from metadqn_jax.app.family_table import BUILTIN_FAMILY_ROWS

    monkeypatch.setattr(registry, "FAMILIES", dict(registry.FAMILIES))
    tasks.register_family(TaskFamily("my-pole", "CartPole-v1", ranges={"length": (0.3, 1.2)},
                                     description="my own\npole lengths"))
    assert cli.main(["families"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].split()[:2] == ["my-pole", "CartPole-v1"] and lines[-1].endswith("my own pole lengths")
    assert "length~U[0.3, 1.2]" in lines[-1]
    assert cli.main(["families", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[:-1] == BUILTIN_FAMILY_ROWS
    assert rows[-1]["name"] == "my-pole" and rows[-1]["varying_fields"] == ["length"]
    assert rows[-1]["splits"] == {"train": 1024, "val": 128, "test": 128}
