"""A user's task family is first-class: defined in YAML (``--family-file``, a ``family:`` block)
or in a Python module (``--family-module``), stored in the run folder's ``config.yaml``, read
back in a fresh process (``metadqn evaluate RUN`` with no flags), and its budgets are the
default ones.

One small training (PointNav, 1 test task, budgets 0 and 5) runs in-process; the fresh-process
``evaluate`` is a subprocess sharing the suite's persistent XLA cache. Everything else (the
definition round trip, the module import, the errors, the stored-definition rule) compiles
nothing.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import subprocess
import sys

import jax
import pytest
import yaml

from metadqn_jax import cli, tasks
from metadqn_jax.runs import families as userfamily
from metadqn_jax.runs.configs import TrainConfig
from metadqn_jax.runs.record import read_run_config
from metadqn_jax.tasks import TaskFamily, default_budgets, registry

from conftest import subprocess_env  # noqa: E402

NAV_YAML = """\
family:
  name: nav-goal-y-test
  env_id: PointNav-v0
  description: goal moves along y
  ranges: {goal_y: [-0.5, 0.5]}
  base_params: {goal_x: 0.5}
  gamma: 0.5
  budgets: [0, 5]
  num_train: 16
  num_val: 4
  num_test: 4
"""

MODULE = """\
import jax
import jax.numpy as jnp
from metadqn_jax.tasks import TaskFamily, register_family


def goal_on_line(key, n):
    y = jax.random.uniform(key, (n,), jnp.float32, -0.5, 0.5)
    return {"goal_x": 0.5 * jnp.ones_like(y), "goal_y": y}


register_family(TaskFamily("nav-module-test", "PointNav-v0", sample_fn=goal_on_line, gamma=0.5,
                           sample_desc="goal (0.5, U[-0.5, 0.5])", num_train=16, num_val=4, num_test=4))
"""


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch):
    """Each test starts from the built-in families only (as a fresh process does)."""
    monkeypatch.setattr(registry, "FAMILIES", {f.name: f for f in tasks.builtin.BUILTIN_FAMILIES})
    monkeypatch.setattr(registry, "FAMILY_MODULES", {})
    yield
    for name in [n for n, m in sys.modules.items() if n.startswith("userfam_")]:
        del sys.modules[name]


def _main(capsys, argv):
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _env() -> dict[str, str]:
    return subprocess_env()


# ------------------------------------------------------------------- definitions
def test_definition_round_trip_of_every_builtin_and_a_user_family():
    for family in registry.FAMILIES.values():
        spec = family.to_spec()
        assert yaml.safe_load(yaml.safe_dump(spec)) == spec  # plain data
        again = TaskFamily.from_spec(spec, sample_fn=family.sample_fn, derive=family.derive)
        assert again.to_spec() == spec
        for split in ("train", "test"):  # the same tasks
            a, b = family.tasks(split), again.tasks(split)
            assert all((x == y).all() for x, y in zip(jax_leaves(a), jax_leaves(b)))
    goal = registry.FAMILIES["pointnav-goal"].to_spec()
    assert goal["code"] == ["sample_fn"] and goal["module"] == "metadqn_jax.tasks.builtin"
    with pytest.raises(ValueError, match=r"its sample_fn is Python code.*\(metadqn_jax.tasks.builtin\)"):
        TaskFamily.from_spec(goal)
    spec = yaml.safe_load(NAV_YAML)["family"]
    fam = TaskFamily.from_spec(spec)
    assert float(fam.base_params.goal_x) == 0.5 and fam.few_shot_budgets == (0, 5)
    assert fam.to_spec()["base_params"] == {"goal_x": 0.5} and fam.to_spec()["ranges"] == {"goal_y": [-0.5, 0.5]}
    assert TaskFamily.from_spec({**spec, "description": None, "choices": None}).to_spec() == {
        **fam.to_spec(), "description": ""}  # null (an empty YAML value): the default
    with pytest.raises(ValueError, match="unknown field 'rangez'; did you mean 'ranges'"):
        TaskFamily.from_spec({**spec, "rangez": {}})
    with pytest.raises(ValueError, match="base_params field 'goal_z' is not a field of PointNav-v0"):
        TaskFamily.from_spec({**spec, "base_params": {"goal_z": 1.0}})


def jax_leaves(tree):
    import jax

    return jax.tree.leaves(tree)


# ------------------------------------------------------------------------ budgets
def test_budgets_default_to_the_familys(capsys, tmp_path):
    assert default_budgets(500) == (0, 25, 100, 250, 500, 1000, 2000)
    assert default_budgets(200) == (0, 10, 40, 100, 200, 400, 800)
    assert default_budgets(10) == (0, 1, 2, 5, 10, 20, 40)
    cart = TaskFamily("cart-b-test", "CartPole-v1", ranges={"length": (0.3, 1.0)})
    assert cart.budgets is None and cart.few_shot_budgets == default_budgets(cart.episode_length)
    assert dataclasses.replace(cart, budgets=[100, 0]).few_shot_budgets == (0, 100)
    for bad in ([], [0, 0], [-1], (0.5,), "0,5"):
        with pytest.raises(ValueError, match="budgets must be"):
            dataclasses.replace(cart, budgets=bad)
    # metadqn train: the family's budgets unless --budgets (or a preset) says otherwise
    path = tmp_path / "nav.yaml"
    path.write_text(NAV_YAML)
    rc, out, _ = _main(capsys, ["train", "--family-file", str(path), "--print-config"])
    assert rc == 0
    printed = yaml.safe_load(out)
    assert printed["few_shot"]["budgets"] == [0, 5] and printed["meta"]["family"] == "nav-goal-y-test"
    assert printed["family"]["budgets"] == [0, 5]
    rc, out, _ = _main(capsys, ["train", "--family", "cartpole-physics", "--print-config"])
    assert yaml.safe_load(out)["few_shot"]["budgets"] == list(registry.FAMILIES["cartpole-physics"].few_shot_budgets)
    rc, out, _ = _main(capsys, ["train", "--family-file", str(path), "--budgets", "0,7", "--print-config"])
    assert yaml.safe_load(out)["few_shot"]["budgets"] == [0, 7]


# ------------------------------------------------------------------------- errors
def test_a_bad_definition_is_one_error_line_naming_the_file_and_field(capsys, tmp_path):
    good = yaml.safe_load(NAV_YAML)["family"]
    cases = {
        "typo.yaml": ({**good, "ranges": {"goal_yy": [0, 1]}},
                      "error: {path}: family 'nav-goal-y-test': ranges field 'goal_yy' is not a field of "
                      "PointNav-v0's PointNavParams"),
        "key.yaml": ({**good, "rangez": {}}, "error: {path}: family 'nav-goal-y-test': unknown field 'rangez'; "
                                             "did you mean 'ranges'?"),
        "order.yaml": ({**good, "ranges": {"goal_y": [1, 0]}},
                       "error: {path}: family 'nav-goal-y-test': ranges['goal_y'] has low 1.0 > high 0.0"),
        "env.yaml": ({**good, "env_id": "NoSuchEnv-v0"}, "error: {path}: "),
        "gamma.yaml": ({**good, "gamma": 2}, "error: {path}: family 'nav-goal-y-test': gamma must be in (0, 1]"),
    }
    for name, (spec, expected) in cases.items():
        path = tmp_path / name
        path.write_text(yaml.safe_dump({"family": spec}))
        rc, out, err = _main(capsys, ["train", "--family-file", str(path), "--print-config"])
        assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1, (name, err)
        assert err.startswith(expected.format(path=path)), (name, err)
    (tmp_path / "none.yaml").write_text("meta: {num_tasks: 4}\n")
    rc, _, err = _main(capsys, ["train", "--family-file", str(tmp_path / "none.yaml"), "--print-config"])
    assert rc == 2 and "needs a 'family:' block" in err
    # in a --config file: the same message, naming that file
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"family": {**good, "num_test": 0}, "meta": {"num_tasks": 4}}))
    rc, _, err = _main(capsys, ["train", "--config", str(path), "--print-config"])
    assert rc == 2 and err.strip() == f"error: {path}: family 'nav-goal-y-test': num_test must be an int > 0, got 0"
    # a module: its error, naming it; one that cannot be imported
    bad = tmp_path / "userfam_bad.py"
    bad.write_text(MODULE.replace("goal_on_line, gamma=0.5", "goal_on_line, gamma=1.5"))
    rc, _, err = _main(capsys, ["train", "--family-module", str(bad), "--print-config"])
    assert rc == 2 and err.strip() == f"error: --family-module {bad}: family 'nav-module-test': gamma must be in " \
                                      "(0, 1], got 1.5"
    rc, _, err = _main(capsys, ["train", "--family-module", "userfam_no_such_module", "--print-config"])
    assert rc == 2 and err.startswith("error: --family-module: cannot import 'userfam_no_such_module'")


# ------------------------------------------------------------------------- module
def test_module_family_is_recorded_and_imported_again_in_a_fresh_registry(capsys, tmp_path, monkeypatch):
    mod = tmp_path / "userfam_nav.py"
    mod.write_text(MODULE)
    rc, out, _ = _main(capsys, ["families", "--family-module", str(mod)])
    assert rc == 0 and "nav-module-test" in out and "goal (0.5, U[-0.5, 0.5])" in out
    rc, out, _ = _main(capsys, ["train", "--family-module", str(mod), "--print-config"])
    assert rc == 0
    printed = yaml.safe_load(out)
    assert printed["meta"]["family"] == "nav-module-test"
    assert printed["family"]["code"] == ["sample_fn"] and printed["family"]["module"] == str(mod.resolve())
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(out)
    # a fresh process: no family registered, the module not imported
    monkeypatch.setattr(registry, "FAMILIES", {f.name: f for f in tasks.builtin.BUILTIN_FAMILIES})
    monkeypatch.setattr(registry, "FAMILY_MODULES", {})
    del sys.modules["userfam_nav"]
    cfg = read_run_config(run, TrainConfig)
    assert cfg.meta.family == "nav-module-test" and registry.FAMILIES["nav-module-test"].sample_fn is not None
    assert registry.family_spec("nav-module-test") == printed["family"]
    # the module gone: one line saying which module to make importable
    monkeypatch.setattr(registry, "FAMILIES", {f.name: f for f in tasks.builtin.BUILTIN_FAMILIES})
    del sys.modules["userfam_nav"]
    mod.rename(tmp_path / "moved.py")
    rc, _, err = _main(capsys, ["evaluate", str(run)])
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: {run / 'config.yaml'}: family 'nav-module-test' needs module '{mod.resolve()}'")


def test_a_stored_definition_wins_over_a_registered_one_with_a_note(tmp_path):
    spec = tasks.get_family("cartpole-physics").to_spec()
    notes: list[str] = []
    assert userfamily.install_definition(spec, "same.yaml", note=notes.append) is tasks.get_family("cartpole-physics")
    assert notes == []  # identical: the registered object is kept
    changed = {**spec, "budgets": [0, 50], "ranges": {**spec["ranges"], "length": [0.3, 0.9]}}
    fam = userfamily.install_definition(changed, "run/config.yaml", note=notes.append)
    assert tasks.get_family("cartpole-physics") is fam and fam.few_shot_budgets == (0, 50)
    assert notes == ["note: family 'cartpole-physics': using the definition in run/config.yaml, which differs from "
                     "the registered one in ranges, budgets"]


# ------------------------------------------------------- train, then a fresh process
@pytest.mark.usefixtures("shared_compile_cache")
def test_yaml_family_trains_and_evaluates_in_a_fresh_process(capsys, tmp_path):
    path = tmp_path / "nav.yaml"
    path.write_text(NAV_YAML)
    rc, out, err = _main(capsys, ["train", "--quick", "--family-file", str(path), "--algorithm", "pretrained",
                                  "--baselines", "none", "--val-every", "0", "--test-tasks", "1", "--budgets", "0,5",
                                  "--out", str(tmp_path), "--name", "run", "--no-progress"])
    assert rc == 0, err
    run = tmp_path / "run"
    stored = yaml.safe_load((run / "config.yaml").read_text())
    assert stored["family"] == TaskFamily.from_spec(yaml.safe_load(NAV_YAML)["family"]).to_spec()
    trained = json.loads((run / "few_shot.json").read_text())
    # a new process, no flags: the family comes from config.yaml
    p = subprocess.run([sys.executable, "-m", "metadqn_jax", "evaluate", str(run), "--tag", "again"],
                       capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "nav-goal-y-test" in p.stdout and "note:" not in p.stderr
    again = json.loads((run / "again.json").read_text())
    assert again["results"]["budgets"] == [0, 5]
    assert again["results"]["pretrained"]["mean"] == trained["results"]["pretrained"]["mean"]  # same tasks, keys


def test_family_meta_defaults_reach_meta_training_and_the_test_time_protocol(capsys, tmp_path):
    """A family's meta_defaults fill what the config does not set - in meta-training and in the
    few-shot protocol's support size / ε, which follow meta.support_size / hparams.epsilon."""
    path = tmp_path / "nav.yaml"
    path.write_text("family:\n  name: nav-md-test\n  env_id: PointNav-v0\n  ranges: {action_rotation: [0.0, 6.28]}\n"
                    "  gamma: 0.5\n  meta_defaults: {epsilon: 0.3, support_size: 50, updates_per_step: 3}\n")
    rc, out, _ = _main(capsys, ["train", "--family-file", str(path), "--print-config"])
    printed = yaml.safe_load(out)
    assert rc == 0 and printed["meta"]["updates_per_step"] == 3 and printed["meta"]["support_size"] == 50
    assert printed["hparams"]["epsilon"] == 0.3
    assert printed["few_shot"]["support_size"] == 50 and printed["few_shot"]["support_epsilon"] == 0.3
    rc, out, _ = _main(capsys, ["train", "--family-file", str(path), "--set", "hparams.epsilon=0.2",
                                "--set", "meta.support_size=40", "--print-config"])
    printed = yaml.safe_load(out)  # what the user sets wins, at test time too
    assert printed["few_shot"]["support_size"] == 40 and printed["few_shot"]["support_epsilon"] == 0.2


def test_readme_family_is_the_shipped_example_and_loads():
    """README's Acrobot block is ``examples/acrobot.yaml`` verbatim, and it installs with the
    meta_defaults a MetaConfig then takes (no training)."""
    from pathlib import Path

    from metadqn_jax.meta import MetaConfig

    root = Path(__file__).resolve().parents[1]
    text = (root / "examples" / "acrobot.yaml").read_text()
    assert "```yaml\n" + text + "```" in (root / "README.md").read_text()
    family = userfamily.load_family_file(root / "examples" / "acrobot.yaml")
    cfg = MetaConfig(family=family.name, algorithm="context")
    assert (cfg.activation, cfg.updates_per_step, cfg.num_meta_steps, cfg.setting("meta_lr")) == ("swish", 8, 1500, 1e-3)
    assert family.few_shot_budgets == (0, 25, 100, 250, 500, 1000, 2000)  # Acrobot's 500-step episodes


ZOO = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "zoo"


@pytest.mark.parametrize("path", sorted(ZOO.glob("*.yaml")), ids=lambda p: p.stem)
def test_the_development_families_files_build(path, monkeypatch):
    """Every YAML family of benchmarks/zoo/ builds (its pools fit its distinct tasks, its
    recommendations are known settings) and samples its test split."""
    monkeypatch.setattr(registry, "FAMILIES", dict(registry.FAMILIES))  # registered for this test only
    family = userfamily.load_family_file(str(path))
    assert family.name == path.stem
    tasks = family.sample(jax.random.PRNGKey(0), 4, "test")
    assert jax.tree_util.tree_leaves(tasks)[0].shape[0] == 4


def test_the_development_families_module_builds():
    """benchmarks/zoo/gridgoal.py registers its environment and both families (in a fresh process:
    the registries of this one stay as the other tests expect them)."""
    code = ("from metadqn_jax.runs.families import import_family_module; "
            f"print(import_family_module({str(ZOO / 'gridgoal.py')!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(),
                         check=True).stdout
    assert out.strip() == "['gridgoal-goal', 'gridgoal-turned']"
