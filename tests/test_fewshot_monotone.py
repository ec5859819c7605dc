"""The few-shot protocol's fine-tuning guard (``FewShotConfig.finetune_select``, issue 16 part 5).

Fine-tuning a good adapted policy as an ordinary DQN can take it far below where it was (the
cartpole-flipped context learner: 452 after 100 steps, 275 after 2,000). The guard deploys the
fine-tuned parameters only when their own episodes, counted in the budget, beat the deployed
ones'. These tests check the rule in isolation, that a good policy is no longer destroyed (a
test the old protocol fails), and that a bad init (scratch) still learns.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metadqn_jax import ConfigError
from metadqn_jax.core.tree import tree_where
from metadqn_jax.fewshot import (
    FewShotConfig,
    Selection,
    choose_guard,
    guards_adaptation,
    init_selection,
    make_few_shot,
    scratch_params,
    selection_step,
)
from metadqn_jax.meta import MetaConfig, make_learner


def _episodes(sel: Selection, returns, candidate) -> Selection:
    """Ends one episode per entry of ``returns`` (its return), the candidate being ``candidate``."""
    for r in returns:
        sel = selection_step(sel, jnp.bool_(True), jnp.float32(r), candidate, 1)
    return sel


def test_selection_alternates_judges_frozen_challengers_and_keeps_the_deployed_evidence():
    adapted = {"w": jnp.zeros(3)}
    cand = lambda v: {"w": jnp.full(3, float(v))}  # the live candidate, changing as it fine-tunes
    sel = init_selection(adapted)
    assert int(sel.turn) == -1  # the episode running at adaptation belongs to no one
    # steps inside an episode change nothing
    same = selection_step(sel, jnp.bool_(False), jnp.float32(99.0), cand(1), 1)
    assert int(same.turn) == -1 and float(same.returns.sum()) == 0.0
    sel = selection_step(sel, jnp.bool_(True), jnp.float32(1000.0), cand(1), 1)  # not counted
    assert int(sel.turn) == 0 and int(sel.episodes.sum()) == 0
    sel = selection_step(sel, jnp.bool_(True), jnp.float32(10.0), cand(2), 1)  # deployed: 10
    assert int(sel.turn) == 1 and np.asarray(sel.episodes).tolist() == [1, 0]
    assert float(sel.challenger["w"][0]) == 2.0  # the challenger: the candidate as its episode starts
    sel = selection_step(sel, jnp.bool_(True), jnp.float32(10.0), cand(3), 1)  # a tie: dropped
    assert float(sel.deployed["w"].sum()) == 0.0
    assert np.asarray(sel.episodes).tolist() == [1, 0] and np.asarray(sel.returns).tolist() == [10.0, 0.0]
    sel = selection_step(sel, jnp.bool_(True), jnp.float32(4.0), cand(4), 1)  # deployed: mean 7 over both
    assert float(sel.challenger["w"][0]) == 4.0 and np.asarray(sel.returns).tolist() == [14.0, 0.0]
    sel = selection_step(sel, jnp.bool_(True), jnp.float32(8.0), cand(5), 1)  # 8 > 7: the challenger wins
    assert float(sel.deployed["w"][0]) == 4.0  # the snapshot that played, not the live candidate (5)
    assert np.asarray(sel.episodes).tolist() == [1, 0] and np.asarray(sel.returns).tolist() == [8.0, 0.0]
    # worse challengers never replace a better deployed policy, however long it runs
    for v in range(6, 16):
        sel = selection_step(sel, jnp.bool_(True), jnp.float32(50.0), cand(v), 1)  # deployed
        sel = selection_step(sel, jnp.bool_(True), jnp.float32(6.0), cand(v), 1)  # challenger: below 8
    assert float(sel.deployed["w"][0]) == 4.0
    # with min_episodes=2 a challenger plays two episodes (one snapshot) before it is judged
    sel = init_selection(adapted)
    for r, v in [(0.0, 1), (1.0, 2), (5.0, 3), (1.0, 4)]:  # uncounted, d, c (snapshot 2), d
        sel = selection_step(sel, jnp.bool_(True), jnp.float32(r), cand(v), 2)
    assert float(sel.deployed["w"].sum()) == 0.0 and float(sel.challenger["w"][0]) == 2.0
    sel = selection_step(sel, jnp.bool_(True), jnp.float32(5.0), cand(5), 2)  # c again: 5 > 1, judged
    assert float(sel.deployed["w"][0]) == 2.0


def test_exploration_episodes_follow_each_contest_pair_and_are_not_counted():
    adapted, candidate = {"w": jnp.zeros(3)}, {"w": jnp.ones(3)}
    sel = init_selection(adapted)
    turns = []
    for r in [1000.0, 10.0, 5.0, 999.0, 10.0, 5.0, 999.0]:  # adaptation's episode, then (d, c, explore) x 2
        sel = selection_step(sel, jnp.bool_(True), jnp.float32(r), candidate, 2, explore=True)
        turns.append(int(sel.turn))
    assert turns == [0, 1, 2, 0, 1, 2, 0]
    # the challenger (2 episodes: 5, 5) lost to the deployed (10, 10) and was dropped
    assert np.asarray(sel.episodes).tolist() == [2, 0] and np.asarray(sel.returns).tolist() == [20.0, 0.0]
    assert float(sel.deployed["w"].sum()) == 0.0  # the 999s of the exploration episodes did not count


def test_select_episodes_is_checked():
    with pytest.raises(ConfigError, match="^select_episodes must be"):
        FewShotConfig(select_episodes=0)
    with pytest.raises(ConfigError, match="^select_epsilon must be"):
        FewShotConfig(select_epsilon=1.5)


# A hand-made good policy on PointNav: greedy on Q(s, a) = d_a . (goal - s), which moves along
# the action direction closest to the goal (d_a: action a's direction under the task's rotation).
CFG = MetaConfig(family="pointnav-rotated", algorithm="maml", hidden=(8, 8), support_size=20, buffer_size=20,
                 num_tasks=2, envs_per_task=1, rollout_steps=5, query_batch=8)
OFFSET = 5.0  # keeps the two ReLU layers in their linear part (|s| <= 1)


def _good_params(rotation: float, goal=(0.7, 0.0)):
    learner = make_learner(CFG, 4, (2,))
    p = jax.tree.map(jnp.zeros_like, learner.init(jax.random.key(0)))
    net = p["net"]["params"]
    angles = np.arange(4) * np.pi / 2 + rotation
    d = np.stack([np.cos(angles), np.sin(angles)])  # [2, 4]
    net["hidden_0"]["kernel"] = net["hidden_0"]["kernel"].at[0, 0].set(1.0).at[1, 1].set(1.0)
    net["hidden_0"]["bias"] = net["hidden_0"]["bias"].at[:2].set(OFFSET)
    net["hidden_1"]["kernel"] = net["hidden_1"]["kernel"].at[0, 0].set(1.0).at[1, 1].set(1.0)
    net["head"]["kernel"] = net["head"]["kernel"].at[:2].set(jnp.asarray(-d, jnp.float32))
    net["head"]["bias"] = jnp.asarray(d.T @ np.asarray(goal) + OFFSET * d.sum(0), jnp.float32)
    # adaptation is the identity: the test is about what fine-tuning does to the adapted policy
    return learner._replace(adapt=lambda params, target, support, hp: learner.unadapted(params)), p


def _returns(fs, learner, params, n_tasks=2):
    run, _ = make_few_shot(CFG, fs, learner)
    tasks = jax.tree.map(lambda x: x[:n_tasks], CFG.task_family.tasks("test"))
    keys = jax.random.split(jax.random.key(1), n_tasks)
    return np.asarray(jax.jit(run)(params, params, tasks, keys, CFG.hparams()))


def test_fine_tuning_does_not_take_a_good_adapted_policy_below_its_return():
    """Ordinary DQN fine-tuning (the protocol's lr, batch, τ) takes the hand-made near-optimal
    policy from -3.6 to about -8 in 280 steps under the old protocol; with the guard the budget
    returns at least the adapted policy's return (PointNav is deterministic, so the kept policy
    returns it exactly)."""
    rotation = float(CFG.task_family.tasks("test").action_rotation[0])
    learner, params = _good_params(rotation)
    kw = {"budgets": (20, 300), "num_tasks": 1, "seeds": 1, "support_size": 20, "finetune_batch": 16, "eval_episodes": 1}
    new = _returns(FewShotConfig(**kw), learner, params, n_tasks=1)[0]
    old = _returns(FewShotConfig(**kw, finetune_select=False), learner, params, n_tasks=1)[0]
    adapted = new[0]
    assert old[0] == adapted and adapted > -4.0  # a good policy (a random one is about -17)
    assert old[1] < adapted - 2.0, old  # the old protocol destroys it
    assert new[1] >= adapted - 1e-4, new  # the guard keeps it


def test_scratch_still_improves_with_budget_under_the_guard():
    """A bad init must still learn: scratch on pointnav-rotated gains with budget."""
    learner, params = scratch_params(CFG, jax.random.key(3))
    fs = FewShotConfig(budgets=(0, 600), num_tasks=2, seeds=1, support_size=20, finetune_batch=32, eval_episodes=1)
    r = _returns(fs, learner, params)
    assert r[:, 1].mean() > r[:, 0].mean() + 4.0, r


def test_guard_adaptation_defaults_to_inits_whose_rule_was_not_meta_learned():
    fs = FewShotConfig()
    assert guards_adaptation(dataclasses.replace(CFG, algorithm="pretrained"), fs)
    assert not guards_adaptation(CFG, fs)  # maml: its adaptation is what meta-training optimised
    assert guards_adaptation(CFG, fs, meta_learned=False)  # a fresh init (scratch)
    assert not guards_adaptation(dataclasses.replace(CFG, algorithm="pretrained"), FewShotConfig(guard_adaptation=False))
    assert guards_adaptation(CFG, FewShotConfig(guard_adaptation=True))
    with pytest.raises(ConfigError, match="^guard_adaptation must be"):
        FewShotConfig(guard_adaptation="yes")


def test_guarded_adaptation_keeps_a_good_init_and_adopts_a_good_adaptation():
    """Step 5 of the protocol. A good unadapted policy whose adaptation rule wrecks it (the
    pretrained baseline on cartpole-physics: 490 unadapted, 192 after its five SGD steps) keeps
    its return at every budget when the adaptation is guarded, and drops without the guard; a
    bad init whose adaptation is good is still replaced by the adapted policy within the budget."""
    rotation = float(CFG.task_family.tasks("test").action_rotation[0])
    learner, good = _good_params(rotation)
    _, bad = _good_params(rotation + np.pi)  # walks away from the goal
    kw = {"budgets": (0, 10, 20, 300), "num_tasks": 1, "seeds": 1, "support_size": 20, "finetune_batch": 16,
          "eval_episodes": 1}
    wrecking = learner._replace(adapt=lambda params, target, support, hp: learner.unadapted(bad))
    guarded = _returns(FewShotConfig(**kw, guard_adaptation=True), wrecking, good, n_tasks=1)[0]
    unguarded = _returns(FewShotConfig(**kw, guard_adaptation=False), wrecking, good, n_tasks=1)[0]
    assert guarded[0] > -4.0 and np.all(guarded >= guarded[0] - 1e-4), guarded
    assert unguarded[2] < guarded[0] - 5.0, unguarded  # the unguarded protocol deploys the wreck
    assert unguarded[1] < guarded[0] - 5.0, unguarded  # (below the support: the rule on what was seen)
    # a helpful adaptation wins its contest; without fine-tuning the challenger is the adapted
    # policy itself, deployed as it is
    helping = learner._replace(adapt=lambda params, target, support, hp: learner.unadapted(good))
    r = _returns(FewShotConfig(**kw, guard_adaptation=True, finetune=False), helping, bad, n_tasks=1)[0]
    assert r[0] < -10.0 and r[2] == r[0], r  # deployed: the bad unadapted policy until the contest
    assert r[3] == guarded[0], (r, guarded)


def test_choose_guard_decides_on_validation_tasks_whether_adapting_helps():
    """``compare`` guards a baseline's adaptation only where adapting did not raise the return
    on validation tasks: a wrecking rule on a good init is guarded, a helping rule on a bad init
    is not (so budgets below the support report the adapted policy, as without a guard)."""
    rotation = float(CFG.task_family.tasks("val").action_rotation[0])  # the first validation task's
    learner, good = _good_params(rotation)
    _, bad = _good_params(rotation + np.pi)
    fs = FewShotConfig(budgets=(0, 20), support_size=20, finetune_batch=16, eval_episodes=1)

    def rule(to):  # adapting on no transition is the identity, as for the real inner SGD steps
        def adapt(params, target, support, hp):
            seen = support[1].sum() > 0
            return tree_where(seen, learner.unadapted(to), learner.unadapted(params))
        return learner._replace(adapt=adapt)

    wreck = choose_guard(CFG, good, good, fs, jax.random.key(2), num_tasks=1, learner=rule(bad))
    assert wreck.guard and wreck.adapted < wreck.unadapted, wreck
    helps = choose_guard(CFG, bad, bad, fs, jax.random.key(2), num_tasks=1, learner=rule(good))
    assert not helps.guard and helps.adapted > helps.unadapted, helps
    assert helps.num_tasks == 1
