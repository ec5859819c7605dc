"""Updates per meta-step (``MetaConfig.updates_per_step``) and family defaults for any
setting (``TaskFamily.meta_defaults``, applied by :func:`metadqn_jax.meta.config.resolve`)."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from metadqn_jax import tasks
from metadqn_jax.compare import config_for
from metadqn_jax.core.validate import ConfigError
from metadqn_jax.meta import MetaConfig, make_meta_step, meta_train
from metadqn_jax.meta.config import FAMILY_FIELDS, LEARNER_FIELDS, check_recommendations
from metadqn_jax.meta.defaults import STRUCTURAL_FIELDS

from _compile import fast_jit  # tests/_compile.py

TINY = dict(family="pointnav-goal", algorithm="pretrained", num_tasks=4, envs_per_task=2, rollout_steps=5,
            support_size=10, buffer_size=20, task_lifetime=1, query_batch=16, hidden=(16, 16), inner_steps=1,
            encoder_hidden=(64,), encoder_post=(), context_decoder=0.0, context_refine=0,  # the library's
            num_meta_steps=10, chunk_size=10)


def adam_count(opt_state) -> int:
    """The step count of the meta-optimiser's Adam (one per update)."""
    counts = [int(leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(opt_state)[0]
              if getattr(path[-1], "name", None) == "count"]
    assert counts, "no Adam count in the optimiser state"
    return max(counts)


def train(cfg: MetaConfig, steps: int, key: int = 0):
    prog = make_meta_step(cfg)
    hp = cfg.hparams()
    run = fast_jit(meta_train, static_argnums=(0, 3))
    return run(prog.meta_step, prog.init(jax.random.key(key), hp), hp, steps)


def max_abs_diff(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in
               zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the family registry (families registered by a test vanish after it)."""
    monkeypatch.setattr(tasks.registry, "FAMILIES", dict(tasks.registry.FAMILIES))
    return tasks


# ------------------------------------------------------------------ updates per meta-step
@pytest.mark.parametrize("query_source", ["adapted", "buffer"])
def test_updates_per_step_does_that_many_updates(query_source):
    s1, m1 = train(MetaConfig(**TINY, query_source=query_source, updates_per_step=1), 3)
    s2, m2 = train(MetaConfig(**TINY, query_source=query_source, updates_per_step=2), 3)
    assert adam_count(s1.opt_state) == 3 and adam_count(s2.opt_state) == 6
    assert int(s1.step) == int(s2.step) == 3  # meta-steps (acting) counted once
    # the first meta-step acts before any update: same keys, same data
    assert float(m1.train_return[0]) == float(m2.train_return[0])
    assert max_abs_diff(s1.params, s2.params) > 1e-4
    assert max_abs_diff(s2.target_params, s2.params) > 0  # Polyak-averaged, not copied
    # metrics: one value per meta-step (the mean over its updates)
    assert m2.query_loss.shape == (3,) and bool(np.all(m2.params_finite))
    assert np.all(np.isfinite(np.asarray(m2.query_loss))) and np.all(np.asarray(m2.grad_norm) > 0)


def test_updates_per_step_counts_validation_and_comparison():
    cfg = MetaConfig(**TINY, updates_per_step=4)
    acting = 4 * 2 * 5  # num_tasks x envs_per_task x rollout_steps
    assert cfg.gradient_updates == 10 * 4
    assert cfg.env_steps_per_meta_step == acting * (1 + 4)  # + one adapted-policy query rollout per update
    assert dataclasses.replace(cfg, query_source="buffer").env_steps_per_meta_step == acting
    assert cfg.env_steps == 10 * cfg.env_steps_per_meta_step
    assert MetaConfig(**TINY).env_steps_per_meta_step == 2 * acting  # one update: as before
    for bad in (0, -1, 1.5):
        with pytest.raises(ConfigError, match="^updates_per_step must be a positive integer"):
            MetaConfig(**TINY, updates_per_step=bad)
    # one setting of the comparison: every learner, pretrained included, gets the same count
    assert {config_for(cfg, a).updates_per_step for a in ("maml", "context", "cavia", "pretrained")} == {4}


def test_more_updates_per_step_learn_more():
    """Fails if updates_per_step were ignored: on the same data stream (the buffer query of
    long-lived PointNav tasks), 8 updates per meta-step fit the query TD loss far better."""
    cfg = MetaConfig(**{**TINY, "num_tasks": 8, "buffer_size": 100, "support_size": 20, "query_batch": 32,
                        "task_lifetime": 100}, query_source="buffer", updates_per_step=1, tau=0.5, meta_lr=3e-3)
    steps = 25
    _, m1 = train(cfg, steps)
    _, m8 = train(dataclasses.replace(cfg, updates_per_step=8), steps)
    late1, late8 = float(np.mean(m1.query_loss[-5:])), float(np.mean(m8.query_loss[-5:]))
    assert late8 < 0.5 * late1, (late1, late8)


# ------------------------------------------------------------ family defaults for any field
def test_family_meta_fields_are_every_non_structural_field():
    names = {f.name for f in dataclasses.fields(MetaConfig)}
    assert set(FAMILY_FIELDS) == names - set(STRUCTURAL_FIELDS)
    assert set(STRUCTURAL_FIELDS) <= names
    assert set(LEARNER_FIELDS) < set(FAMILY_FIELDS)


def test_family_defaults_fill_unset_fields_and_explicit_values_win(registry):
    defaults = {"updates_per_step": 3, "epsilon": 0.2, "tau": 0.99, "meta_lr": 5e-4, "hidden": [32],
                "num_meta_steps": 70, "task_lifetime": 4}
    registry.register_family(registry.TaskFamily("nav-defaults-test", "PointNav-v0", gamma=0.5,
                                                 ranges={"goal_y": (-0.5, 0.5)}, meta_defaults=defaults))
    c = MetaConfig(family="nav-defaults-test", algorithm="context")
    assert (c.updates_per_step, c.epsilon, c.tau, c.hidden, c.num_meta_steps, c.task_lifetime) == (
        3, 0.2, 0.99, (32,), 70, 4)
    assert c.setting("meta_lr") == 5e-4  # the family's beats the algorithm's (context: 3e-3)
    hp = c.hparams()
    assert float(hp.epsilon) == pytest.approx(0.2) and float(hp.meta_lr) == pytest.approx(5e-4)
    # the family's values, and what the rules derive from them (4-meta-step tasks: a buffer and its queries)
    assert c.family_defaults_used == {"updates_per_step": 3, "epsilon": 0.2, "tau": 0.99, "meta_lr": 5e-4,
                                      "hidden": (32,), "num_meta_steps": 70, "task_lifetime": 4,
                                      "buffer_size": 4 * 4 * 25, "query_source": "buffer"}
    # explicit values win, even when they equal the library's defaults
    e = MetaConfig(family="nav-defaults-test", algorithm="context", updates_per_step=1, epsilon=0.5, tau=0.95,
                   meta_lr=1e-3, hidden=(64, 64))
    assert (e.updates_per_step, e.epsilon, e.tau, e.hidden, e.setting("meta_lr")) == (1, 0.5, 0.95, (64, 64), 1e-3)
    assert set(e.family_defaults_used) == {"num_meta_steps", "task_lifetime", "buffer_size", "query_source"}
    # None means "not given": the family's value
    assert MetaConfig(family="nav-defaults-test", epsilon=None, updates_per_step=None).updates_per_step == 3
    # a family that recommends nothing: the derived values; the settings survive re-targeting
    assert MetaConfig(family="pointnav-rotated").updates_per_step == 1
    assert MetaConfig(family="pointnav-rotated").family_defaults_used == {
        "task_lifetime": 1, "buffer_size": 100, "query_source": "adapted", "updates_per_step": 1, "tau": 0.95,
        "epsilon": 0.5}
    r = config_for(c, "pretrained")
    assert (r.updates_per_step, r.epsilon, r.setting("meta_lr")) == (3, 0.2, 5e-4)
    assert MetaConfig(**c.__dict__) == c  # a copy of a config (every field given) is equal


def test_config_yaml_lists_family_defaults_and_reads_them_back(registry):
    """config.yaml lists the fields the family's meta_defaults filled under defaults_used, and
    reading the file back leaves them unset again (the family's value, recorded as such)."""
    import yaml

    from metadqn_jax.app import presets
    from metadqn_jax.runs import configs as runconfig
    from metadqn_jax.runs import record as runs

    registry.register_family(registry.TaskFamily("nav-yaml-test", "PointNav-v0", gamma=0.5, ranges={"goal_y": (-0.5, 0.5)},
                                                 meta_defaults={"tau": 0.99, "task_lifetime": 4,
                                                                "num_meta_steps": 70}))
    cfg = runconfig.TrainConfig.resolve(presets.DEFAULT_TRAIN, {"meta": {"family": "nav-yaml-test"},
                                                                "hparams": {"epsilon": 0.3}})
    assert cfg.meta.num_meta_steps == 70  # `metadqn train` leaves the run length to the family
    text = runs.config_text(cfg)
    data = yaml.safe_load(text)
    used = data["defaults_used"]
    assert (used["hparams.tau"], used["meta.task_lifetime"], used["meta.num_meta_steps"]) == (0.99, 4, 70)
    assert "hparams.epsilon" not in used  # given explicitly
    assert (data["hparams"]["tau"], data["meta"]["task_lifetime"]) == (0.99, 4)
    layer = runs.config_layer(data)
    assert "task_lifetime" not in layer["meta"] and "tau" not in layer["hparams"]
    layer.pop("family")
    again = runconfig.TrainConfig.resolve(layer)
    assert again.meta.family_defaults_used == cfg.meta.family_defaults_used
    assert runs.config_text(again) == text


def test_a_family_recommends_values_for_one_algorithm(registry):
    """``meta_defaults[algorithm]`` wins over the family-wide value for that algorithm only; a
    value the user gave wins over both; re-targeting (``config_for``) resolves the new
    algorithm's, whichever algorithm the base config was built for."""
    registry.register_family(registry.TaskFamily(
        "nav-per-algo-test", "PointNav-v0", gamma=0.5, ranges={"goal_y": (-0.5, 0.5)},
        meta_defaults={"tau": 0.99, "task_lifetime": 4, "cavia": {"tau": 0.995, "model_loss": 1.0,
                                                                   "random_support": True}}))
    family = tasks.get_family("nav-per-algo-test")
    assert family.meta_defaults_for("cavia") == {"tau": 0.995, "task_lifetime": 4, "model_loss": 1.0,
                                                 "random_support": True}
    assert family.meta_defaults_for("maml") == {"tau": 0.99, "task_lifetime": 4}
    base = MetaConfig(family="nav-per-algo-test")  # built for maml (the default algorithm)
    assert (base.tau, base.model_loss, base.setting("random_support")) == (0.99, 0.0, False)
    cavia = config_for(base, "cavia")
    assert (cavia.tau, cavia.model_loss, cavia.setting("random_support"), cavia.task_lifetime) == (0.995, 1.0, True, 4)
    assert cavia.family_defaults_used == {"tau": 0.995, "task_lifetime": 4, "model_loss": 1.0, "random_support": True,
                                          "buffer_size": 400, "query_source": "buffer", "updates_per_step": 8,
                                          "epsilon": 0.5}
    back = config_for(cavia, "maml")
    assert (back.tau, back.model_loss) == (0.99, 0.0) and back == base
    # a value the user gave wins for every algorithm, also after re-targeting
    given = MetaConfig(family="nav-per-algo-test", tau=0.9)
    assert config_for(given, "cavia").tau == 0.9 and config_for(given, "cavia").model_loss == 1.0
    # dataclasses.replace keeps every value it copies (the documented difference from rebuilt)
    assert dataclasses.replace(base, algorithm="cavia").tau == 0.99


def test_config_yaml_records_per_algorithm_family_values_and_reads_them_back(registry):
    """A family value for one algorithm only: config.yaml holds ``meta.algorithm``'s value, lists
    the values by algorithm under defaults_used, and reading it back resolves each algorithm's
    again (a resumed or evaluated run trains / loads the same configurations)."""
    import yaml

    from metadqn_jax.app import presets
    from metadqn_jax.runs import configs as runconfig
    from metadqn_jax.runs import record as runs

    registry.register_family(registry.TaskFamily("nav-yaml-algo-test", "PointNav-v0",
                                                 ranges={"goal_y": (-0.5, 0.5)},
                                                 meta_defaults={"num_meta_steps": 70,
                                                                "cavia": {"tau": 0.995, "model_loss": 2.0}}))
    cfg = runconfig.TrainConfig.resolve(presets.DEFAULT_TRAIN, {"meta": {"family": "nav-yaml-algo-test"},
                                                                "run": {"algorithms": ["maml", "cavia"]}})
    data = yaml.safe_load(runs.config_text(cfg))
    used = data["defaults_used"]
    assert used["hparams.tau"] == {"maml": 0.95, "cavia": 0.995, "pretrained": 0.95}
    assert used["meta.model_loss"] == {"maml": 0.0, "cavia": 2.0, "pretrained": 0.0}
    assert data["hparams"]["tau"] == 0.95 and data["meta"]["model_loss"] == 0.0  # meta.algorithm = maml
    layer = runs.config_layer(data)
    assert "tau" not in layer["hparams"] and "model_loss" not in layer["meta"]
    layer.pop("family")
    again = runconfig.TrainConfig.resolve(layer)
    for algo in ("maml", "cavia", "pretrained"):
        assert config_for(again.meta, algo) == config_for(cfg.meta, algo)
    assert config_for(again.meta, "cavia").tau == 0.995
    # `metadqn evaluate` / `--resume` / `--oracle` resolve the read config again as a layer: only
    # what it was given (to_dict() would give every field and pin maml's values for cavia)
    layered = runconfig.TrainConfig.resolve(again.as_layer(), {"run": {"baselines": ["pretrained", "oracle"]}})
    assert config_for(layered.meta, "cavia") == config_for(cfg.meta, "cavia")
    assert config_for(runconfig.TrainConfig.resolve(again.to_dict()).meta, "cavia").model_loss == 0.0
    # a value edited in the file (no longer the recorded default) is given again
    data["hparams"]["tau"] = 0.9
    assert runs.config_layer(data)["hparams"]["tau"] == 0.9


def _recommends(registry, name, meta_defaults):
    """A PointNav family ``name`` recommending ``meta_defaults``, registered; the MetaConfig that
    reads it checks the recommendations (the tasks layer checks only their shape)."""
    family = tasks.TaskFamily(name, "PointNav-v0", ranges={"goal_y": (-0.5, 0.5)}, meta_defaults=meta_defaults)
    registry.register_family(family, overwrite=True)
    return family


def test_an_algorithms_own_recommendations_are_checked(registry):
    nav = dict(env_id="PointNav-v0", ranges={"goal_y": (-0.5, 0.5)})
    with pytest.raises(ConfigError, match=r"^family 'bad-test': meta_defaults.cavia.num_tasks cannot be recommended "
                                          r"for one algorithm \(every learner of a comparison shares it"):
        MetaConfig(family=_recommends(registry, "bad-test", {"cavia": {"num_tasks": 8}}).name)
    with pytest.raises(ConfigError, match=r"^family 'bad-test': meta_defaults.maml.taus cannot be recommended "
                                          r"for one algorithm \(not a MetaConfig field"):
        MetaConfig(family=_recommends(registry, "bad-test", {"maml": {"taus": 0.9}}).name)
    with pytest.raises(ConfigError, match=r"^family 'bad-test': meta_defaults.maml \(the maml learner's own "
                                          r"recommendations\) must be a mapping"):
        MetaConfig(family=_recommends(registry, "bad-test", {"maml": 0.9}).name, algorithm="cavia")
    with pytest.raises(ConfigError, match=r"^family 'bad-test': meta_defaults field 'tau' must be a value, got a mapping"):
        check_recommendations(_recommends(registry, "bad-test", {"tau": {"maml": 0.9}}))
    with pytest.raises(ConfigError, match=r"^family 'bad-test': meta_defaults.cavia field 3 is not a name"):
        tasks.TaskFamily("bad-test", meta_defaults={"cavia": {3: 0.9}}, **nav)  # the shape: checked when built
    registry.register_family(tasks.TaskFamily("bad-algo-value-test", meta_defaults={"maml": {"tau": 2.0}}, **nav))
    MetaConfig(family="bad-algo-value-test", algorithm="cavia")  # not maml's: not read
    with pytest.raises(ConfigError, match="tau"):
        MetaConfig(family="bad-algo-value-test", algorithm="maml")


def test_family_defaults_bad_keys_and_values(registry):
    nav = dict(env_id="PointNav-v0", ranges={"goal_y": (-0.5, 0.5)})
    with pytest.raises(ConfigError, match=r"^family 'bad-test': meta_defaults field 'update_per_step' is not a "
                                          r"MetaConfig field a family can set; did you mean 'updates_per_step'"):
        MetaConfig(family=_recommends(registry, "bad-test", {"update_per_step": 2}).name)
    for key in STRUCTURAL_FIELDS:
        with pytest.raises(ConfigError, match=f"^family 'bad-test': meta_defaults field '{key}' cannot be set"):
            MetaConfig(family=_recommends(registry, "bad-test", {key: 0.9}).name)
    with pytest.raises(ConfigError, match=r"^family 'bad-test': meta_defaults must be a mapping"):
        tasks.TaskFamily("bad-test", meta_defaults=[("tau", 0.9)], **nav)  # the shape: checked when built
    registry.register_family(tasks.TaskFamily("bad-value-test", meta_defaults={"updates_per_step": 0}, **nav))
    with pytest.raises(ConfigError, match="^updates_per_step must be a positive integer"):  # like the user's
        MetaConfig(family="bad-value-test")
    assert MetaConfig(family="bad-value-test", updates_per_step=2).updates_per_step == 2  # explicit wins


def test_stagger_tasks_renews_slots_out_of_phase():
    cfg = MetaConfig(**{**TINY, "buffer_size": 40, "task_lifetime": 4}, query_source="buffer", updates_per_step=1)
    per_step = 2 * 5  # envs_per_task x rollout_steps
    s, _ = train(cfg, 2)
    assert np.asarray(s.buffers.size).tolist() == [2 * per_step] * 4  # all slots renewed together
    s, _ = train(dataclasses.replace(cfg, stagger_tasks=True), 2)
    # offsets 0, 1, 2, 3: slot 3 renews at meta-step 1 (emptied, then one step of data)
    assert np.asarray(s.buffers.size).tolist() == [2 * per_step] * 3 + [per_step]
    s, _ = train(dataclasses.replace(cfg, stagger_tasks=True), 4)
    assert np.asarray(s.buffers.size).tolist() == [4 * per_step, per_step, 2 * per_step, 3 * per_step]


def test_activation_setting_reaches_the_q_network():
    """``activation`` is the Q-network's hidden activation: same parameters, other Q-values; an
    unknown name is one ConfigError naming the field."""
    from metadqn_jax.meta import make_learner

    relu, swish = (make_learner(MetaConfig(**TINY, activation=a), 4, (4,)) for a in ("relu", "swish"))
    params = relu.init(jax.random.key(0))
    obs = jax.random.normal(jax.random.key(1), (8, 4))
    q_relu = relu.q_values(relu.unadapted(params), obs)
    q_swish = swish.q_values(swish.unadapted(params), obs)
    assert q_relu.shape == q_swish.shape == (8, 4) and not np.allclose(q_relu, q_swish)
    with pytest.raises(ConfigError, match="activation must be 'relu' or 'swish'"):
        MetaConfig(**TINY, activation="tanh")


@pytest.mark.parametrize("field", ["cavia_first_order", "online_context", "double"])
def test_a_switch_must_be_true_or_false(field):
    """A switch given a string or a number ("no", 1) is one
    ConfigError naming the field, not a truthy surprise."""
    for bad in ("no", 1):
        with pytest.raises(ConfigError, match=fr"^{field} must be a bool \(True or False\), got "):
            MetaConfig(**TINY, **{field: bad})


def test_validation_interval_defaults_to_a_tenth_of_the_run():
    from metadqn_jax.driver import ValidationConfig

    assert [ValidationConfig().interval(n) for n in (1500, 2000, 25, 1)] == [150, 200, 3, 1]
    assert ValidationConfig(every=500).interval(1500) == 500 and ValidationConfig(every=0).interval(1500) == 0
    with pytest.raises(ConfigError, match="validation.every"):
        ValidationConfig(every=-1)
