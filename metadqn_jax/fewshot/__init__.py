"""Few-shot evaluation on held-out tasks: return vs. environment steps, with 95 % CIs.

The protocol, identical for every initialisation (meta-learned, pretrained, scratch):

1. On a held-out task, with a fresh replay buffer, act ε-greedily (``support_epsilon``, the
   meta-training ε) for ``support_size`` steps: with the *unadapted* parameters, or — for a
   context learner trained with ``online_context`` (the default) — on the context inferred
   from the transitions seen so far (``FewShotConfig.explore``: the O(1) online encoder, or
   with ``context_refine`` the refined context, recomputed every step).
2. Adapt once with the learner's own rule (MAML-style inner TD steps for the gradient
   learners, pretrained and scratch; context inference for ``context``; context-vector steps
   for ``cavia``) on those transitions — exactly what meta-training optimised.
3. Keep interacting (ε = ``finetune_epsilon``) and fine-tune a copy of the adapted parameters,
   the *candidate*, as an ordinary DQN (Adam, double-DQN, Polyak target that starts at the
   meta-target).
4. Deploy the candidate only when it earns it (``finetune_select``, the default): the adapted
   parameters are *deployed* first; after the episode that was running at adaptation, whole
   *contest* episodes alternate between the deployed parameters and a *challenger* — a
   snapshot of the candidate taken when its contest begins, so that what is judged is what
   played. After ``select_episodes`` episodes the challenger replaces the deployed parameters
   if its mean return is strictly above theirs (over all their contest episodes since they were
   deployed), else it is dropped; the next challenger is a fresh snapshot. Contest episodes are
   acted at ``select_epsilon`` (default 0: greedy, the policy every budget reports); when that
   differs from ``finetune_epsilon``, each pair of contest episodes is followed by one
   *exploration* episode of the live candidate at ``finetune_epsilon`` (not counted), so
   fine-tuning still sees exploratory data.
   These episodes are the interaction itself, so the evidence is counted in the budget. A good
   adapted policy is thus kept unless fine-tuning beats it, and a bad init (scratch) is
   replaced by its fine-tuned copy as soon as that plays better (``docs/design.md``,
   "Evaluation, statistics and DQN"). ``finetune_select=False``: the candidate is always
   deployed and is the only actor (the protocol before 2026-11-29).
5. For an init whose adaptation rule was *not* meta-learned (pretrained, scratch: five inner
   SGD steps that nothing optimised), the one-shot adaptation may have to earn its deployment
   too (``guard_adaptation``): when *guarded*, the *unadapted* parameters are deployed first
   (budgets below ``support_size`` report them as well), and the adapted candidate —
   fine-tuned from there — replaces them by the rule of step 4. With ``None`` (the default)
   :func:`metadqn_jax.compare.compare` decides per init on *validation* tasks
   (:func:`choose_guard`): guarded unless adapting raised the validation return above the
   unadapted one; wherever nothing decides (:func:`make_few_shot` called directly), ``None``
   guards those inits. A meta-learner's adaptation is what meta-training optimised and
   validation selected; it is deployed at once.

At every budget ``b`` the greedy return of the deployed parameters is measured on fresh
episodes of the task (not counted in the budget); for ``b < support_size`` the adaptation
rule runs on the ``b`` transitions seen so far (``b = 0``: the unadapted policy). One
trajectory per (task, seed) serves all budgets, and all tasks × seeds run as one vmapped
program.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metadqn_jax import dqn, envs
from metadqn_jax.core import policies, replay, rollout
from metadqn_jax.core.optim import clipped_adam, polyak_update
from metadqn_jax.core.stats import as_runs, summarize_runs
from metadqn_jax.core.tree import tree_where
from metadqn_jax.core.types import example_transition
from metadqn_jax.core.validate import in_range, positive_int, require
from metadqn_jax.dqn import DQNConfig, DQNHParams
from metadqn_jax.meta import (
    Learner,
    MetaConfig,
    MetaHParams,
    make_learner,
    online_no_data_stats,
    online_step,
)
from metadqn_jax.tasks import TaskFamily


EXPLORE_MODES = ("auto", "online", "adapted", "unadapted")


def explore_mode(meta_cfg: MetaConfig, learner: Learner, explore: str = "auto") -> str:
    """What a learner acts on while it collects a new task's support (``explore`` resolved).

    * ``"unadapted"`` — the unadapted parameters;
    * ``"online"`` — the context of the transitions so far from the encoder's running sums
      (O(1) per step; :class:`~metadqn_jax.meta.learners.base.OnlineContext`). Only ``context`` has
      this form: for every other learner ``"online"`` means ``"unadapted"``, so one setting
      serves a comparison of several algorithms;
    * ``"adapted"`` — ``learner.adapt`` on the transitions so far, recomputed every step
      (O(support) per step; any learner). With ``context_refine`` this is the refined context,
      which the online sums cannot give (``docs/design.md``, "Evaluation and DQN");
    * ``"auto"`` (the default) — infer the task while acting where the learner was trained to:
      a context learner with ``online_context`` gets ``"adapted"`` with ``context_refine > 0``,
      else ``"online"``; everything else ``"unadapted"``.
    """
    require(explore in EXPLORE_MODES, "explore", " or ".join(map(repr, EXPLORE_MODES)), explore)
    if explore in ("auto", "online") and learner.online is None:
        return "unadapted"
    if explore == "auto":
        return _inferring_mode(meta_cfg) if meta_cfg.online_context else "unadapted"
    return explore


def _inferring_mode(meta_cfg: MetaConfig) -> str:
    """How a context learner infers the task while acting: refined z (O(support) per step) when
    it has ``context_refine``, else the O(1) online sums."""
    return "adapted" if meta_cfg.context_refine > 0 else "online"


@dataclasses.dataclass(frozen=True)
class FewShotConfig:
    """Static settings of the few-shot protocol (budgets in environment steps).

    Checked on construction (one ``ConfigError`` naming the field): ``budgets`` is a non-empty
    list of distinct env-step counts >= 0 (stored sorted), the counts are positive integers,
    the ε's are in [0, 1], ``split`` and ``explore`` are known names.
    """

    budgets: tuple[int, ...] = (0, 250, 500, 1000, 2000, 5000)
    num_tasks: int = 20  # held-out tasks
    seeds: int = 5  # adaptation runs per task
    oracle_seeds: int = 1  # oracle DQN runs per task (at most ``seeds``; intervals resample tasks)
    split: str = "test"
    support_size: int = 100  # steps collected before the one-shot adaptation
    support_epsilon: float = 0.5
    finetune: bool = True  # keep fine-tuning after adaptation (ordinary DQN)
    finetune_epsilon: float = 0.1
    finetune_lr: float = 1e-3
    finetune_every: int = 4  # env steps per fine-tuning gradient step (DQN's standard 4)
    finetune_batch: int = 64
    finetune_tau: float = 0.95
    learning_starts: int = 0  # extra steps after adaptation before fine-tuning starts
    # deploy the fine-tuned parameters only when they earn it (module docstring, step 4):
    # after adaptation, whole episodes alternate between the *deployed* parameters (at first
    # the adapted ones) and a *challenger* (a snapshot of the fine-tuned candidate); after
    # ``select_episodes`` episodes the challenger replaces the deployed ones if its mean return
    # beats theirs, else a fresh snapshot challenges. Every budget reports the deployed parameters.
    # Off (False): the candidate is always deployed and always acts.
    finetune_select: bool = True
    select_episodes: int = 1
    # ε of the contest episodes (module docstring, step 4): 0 judges the greedy policies that
    # the budgets report (with ε-greedy contests, many Acrobot runs deployed a candidate whose
    # greedy policy never reached the goal); equal to ``finetune_epsilon``: no exploration
    # episodes, contests at that ε
    select_epsilon: float = 0.0
    # the one-shot adaptation must earn its deployment as fine-tuning does (module docstring,
    # step 5): the unadapted parameters are deployed first, the adapted ones are the first
    # candidate. None: off for the meta-learners; for inits whose adaptation rule was not
    # meta-learned (pretrained, scratch) compare() chooses on validation tasks (choose_guard),
    # and on where nothing chose. A guarded run always selects (as if finetune_select).
    guard_adaptation: bool | None = None
    eval_episodes: int = 4  # greedy episodes per (task, seed, budget)
    # what the agent acts on while it collects the support (see :func:`explore_mode`):
    # "auto", "online", "adapted" or "unadapted"
    explore: str = "auto"

    def __post_init__(self):
        object.__setattr__(self, "budgets", tuple(sorted(int(b) for b in self.budgets)))
        require(len(self.budgets) > 0 and self.budgets[0] >= 0, "budgets",
                "a non-empty list of env-step counts >= 0", self.budgets)
        repeated = sorted({b for b in self.budgets if self.budgets.count(b) > 1})
        require(not repeated, "budgets", f"a list of distinct env-step counts ({', '.join(map(str, repeated))} "
                "given more than once)", list(self.budgets))
        require(self.split in ("train", "val", "test"), "split", "'train', 'val' or 'test'", self.split)
        require(self.explore in EXPLORE_MODES, "explore", " or ".join(map(repr, EXPLORE_MODES)), self.explore)
        for name in ("num_tasks", "seeds", "oracle_seeds", "support_size", "finetune_every", "finetune_batch",
                     "eval_episodes", "select_episodes"):
            positive_int(name, getattr(self, name))
        require(self.guard_adaptation in (None, True, False), "guard_adaptation", "true, false or null (automatic)",
                self.guard_adaptation)
        for name in ("support_epsilon", "finetune_epsilon", "select_epsilon"):
            in_range(name, getattr(self, name), 0.0, 1.0)
        in_range("finetune_lr", self.finetune_lr, 0.0, math.inf, low_open=True)
        in_range("finetune_tau", self.finetune_tau, 0.0, 1.0, high_open=True)

    @property
    def max_budget(self) -> int:
        return self.budgets[-1]


class FewShotResult(NamedTuple):
    """Greedy returns of every run at every budget, and their summary (:mod:`metadqn_jax.core.stats`).

    ``returns`` keeps the named axes ``[meta_seed, task, adapt_seed, budget]``
    (:data:`metadqn_jax.core.stats.AXES`); the intervals resample whole tasks (and meta-training
    seeds), never the adaptation seeds of one task. Results read back from JSON may lack
    ``returns`` and the interval bounds (``None``).
    """

    budgets: tuple[int, ...]
    returns: np.ndarray | None  # [meta_seed, task, adapt_seed, budget] float64
    mean: np.ndarray  # [budget]
    ci95: np.ndarray  # [budget], half-width of [ci_low, ci_high]
    ci_low: np.ndarray | None = None  # [budget], 95 % interval of the mean (bootstrap over tasks)
    ci_high: np.ndarray | None = None
    iqm: np.ndarray | None = None  # [budget], interquartile mean of the per-task means
    iqm_low: np.ndarray | None = None  # [budget], its 95 % interval
    iqm_high: np.ndarray | None = None


def summarize(budgets, returns, axes: str = "mtsb") -> FewShotResult:
    """A :class:`FewShotResult` of ``returns`` (axes named by ``axes``, see
    :func:`metadqn_jax.core.stats.as_runs`; e.g. ``"tsb"`` for ``[task, adapt_seed, budget]``):
    mean, IQM and 95 % intervals per budget from :func:`metadqn_jax.core.stats.summarize_runs`."""
    runs = as_runs(returns, axes)
    if runs.shape[-1] != len(budgets):
        raise ValueError(f"returns have {runs.shape[-1]} budgets, expected {len(budgets)}")
    s = summarize_runs(runs)
    return FewShotResult(tuple(budgets), runs, s.mean, s.ci95, s.ci_low, s.ci_high, s.iqm, s.iqm_low, s.iqm_high)


def _by_task(returns, seeds: int) -> np.ndarray:
    """``[tasks * seeds, B]`` (task-major, as :func:`few_shot_tasks` lays the runs out) ->
    ``[tasks, seeds, B]``."""
    returns = np.asarray(returns)
    return returns.reshape(-1, seeds, returns.shape[-1])


def _explore_step(env, learner: Learner, mode: str, meta_params, meta_target, hp, state, buf, support_size,
                  key, env_params, epsilon):
    """One ε-greedy step before adaptation, acting as :func:`explore_mode` ``mode`` says.

    ``state = (EnvCarry [1], online stats or None)``; ``buf`` is the replay buffer holding the
    transitions so far (read by ``"adapted"``: its ``support_size`` most recent). Returns
    ``(state, Transition [1])``; the caller adds the transition to ``buf`` (which only
    ``"adapted"`` reads, and may be None otherwise)."""
    carry, stats = state
    if mode == "online":
        return online_step(env, learner, meta_params, state, key, env_params, epsilon)
    if mode == "adapted":
        tp = learner.adapt(meta_params, meta_target, replay.recent(buf, support_size), hp)
    else:
        tp = learner.unadapted(meta_params)
    k_act, k_env = jax.random.split(key)
    a = policies.epsilon_greedy(k_act, learner.q_values(tp, carry.obs), epsilon)
    carry, tr = rollout.env_step(env, k_env, carry, a, env_params)
    return (carry, stats), tr


class Selection(NamedTuple):
    """State of the fine-tuning guard (``FewShotConfig.finetune_select``) of one run.

    ``turn`` names the actor of the episode in progress: ``-1`` the episode that was already
    running at adaptation (not counted), ``0`` the deployed parameters, ``1`` the challenger
    (a frozen snapshot of the fine-tuned candidate), ``2`` the live candidate's exploration
    episode (not counted). ``returns`` / ``episodes`` ``[2]`` sum and count the contest
    episodes of the deployed parameters (all of them since they were deployed) and of the
    current challenger."""

    deployed: dict  # the parameters every budget reports (at first the adapted ones)
    challenger: dict  # the candidate as it was when its contest began: what plays and may be deployed
    turn: jax.Array  # int32 scalar
    returns: jax.Array  # [2] float32: summed episode returns (deployed, challenger)
    episodes: jax.Array  # [2] int32: finished episodes (deployed, challenger)


def init_selection(adapted) -> Selection:
    """The guard right after adaptation: ``adapted`` are deployed (the adapted parameters, or the
    unadapted ones when the adaptation is guarded), no challenger and no evidence yet."""
    return Selection(adapted, adapted, jnp.int32(-1), jnp.zeros(2, jnp.float32), jnp.zeros(2, jnp.int32))


def selection_step(sel: Selection, done: jax.Array, episode_return: jax.Array, candidate, min_episodes: int,
                   explore: bool = False) -> Selection:
    """One environment step of the guard (traceable; ``done``, ``episode_return``: scalars).

    When an episode ends (``done``), its return ``episode_return`` is credited to its actor
    (``sel.turn``; the episode running at adaptation and exploration episodes are credited to
    no one), and the next episode goes to the other one (the deployed parameters first); with
    ``explore``, an exploration episode (turn 2) follows each challenger episode. A challenger
    episode is played by a snapshot of ``candidate`` taken when the challenger's first episode
    starts, so the evidence belongs to fixed parameters. When the challenger has
    ``min_episodes`` episodes (and the deployed parameters as many), it is judged: if its mean
    return is strictly above the deployed parameters' mean (over all their episodes since they
    were deployed), it becomes the deployed parameters and its episodes their evidence;
    otherwise it is dropped. Either way the next challenger is a fresh snapshot."""
    counted = done & (sel.turn >= 0)
    one_hot = jnp.arange(2) == sel.turn
    returns = sel.returns + jnp.where(counted & one_hot, episode_return, 0.0)
    episodes = sel.episodes + (counted & one_hot).astype(jnp.int32)
    after = jnp.where(sel.turn == 0, 1, jnp.where(sel.turn == 1, 2 if explore else 0, 0))
    turn = jnp.where(done, after, sel.turn).astype(jnp.int32)
    means = returns / jnp.maximum(episodes, 1)
    judged = done & (sel.turn == 1) & (episodes[1] >= min_episodes) & (episodes[0] >= min_episodes)
    promote = judged & (means[1] > means[0])
    deployed = tree_where(promote, sel.challenger, sel.deployed)
    returns = jnp.where(promote, jnp.stack([returns[1], 0.0]), jnp.where(judged, returns.at[1].set(0.0), returns))
    episodes = jnp.where(promote, jnp.stack([episodes[1], 0]), jnp.where(judged, episodes.at[1].set(0), episodes))
    fresh = done & (turn == 1) & (episodes[1] == 0)  # a new challenger's first episode starts
    challenger = tree_where(fresh, candidate, sel.challenger)
    return Selection(deployed, challenger, turn, returns, episodes)


def guards_adaptation(meta_cfg: MetaConfig, fs: FewShotConfig, meta_learned: bool | None = None) -> bool:
    """Whether the protocol guards the one-shot adaptation (module docstring, step 5):
    ``fs.guard_adaptation``, or when that is ``None``, whether the init's adaptation rule was not
    meta-learned (``meta_learned``; default: ``meta_cfg.algorithm != "pretrained"``)."""
    if fs.guard_adaptation is not None:
        return fs.guard_adaptation
    if meta_learned is None:
        meta_learned = meta_cfg.algorithm != "pretrained"
    return not meta_learned


class GuardChoice(NamedTuple):
    """:func:`choose_guard`'s decision for one init, and the validation returns behind it."""

    guard: bool  # guard the one-shot adaptation (FewShotConfig.guard_adaptation)
    unadapted: float  # mean greedy return of the unadapted parameters on the validation tasks
    adapted: float  # ... after the adaptation rule on support_size transitions (no fine-tuning)
    num_tasks: int  # validation tasks behind the two means (one run each, every meta-seed)

    def to_dict(self) -> dict:
        return {"guard": bool(self.guard), "val_unadapted": round(self.unadapted, 4),
                "val_adapted": round(self.adapted, 4), "val_tasks": self.num_tasks}


def choose_guard(
    meta_cfg: MetaConfig,
    meta_params,
    meta_target,
    fs: FewShotConfig,
    key: jax.Array,
    *,
    num_tasks: int = 32,
    hp: MetaHParams | None = None,
    learner: Learner | None = None,
    meta_seeds: int | None = None,
) -> GuardChoice:
    """Whether to guard an init's one-shot adaptation (module docstring, step 5), decided on
    *validation* tasks: ``num_tasks`` tasks of the ``"val"`` split, one run each, greedy return
    (``fs.eval_episodes`` episodes) of the unadapted parameters and of the adapted ones after
    ``fs.support_size`` transitions collected as the protocol collects them (no fine-tuning).
    Guarded unless adapting raised the mean (over tasks, and over meta-seeds with
    ``meta_seeds=N``: one decision per init). For inits whose adaptation nothing meta-learned:
    where adapting helps (pretrained on pointnav-rotated: about -21 unadapted, -11 adapted) the
    guard would hide that gain below the support size and until a contest is won; where it
    hurts (pretrained on CartPole and Acrobot) the guard keeps the good unadapted policy.
    The test tasks play no part."""
    n = min(num_tasks, meta_cfg.task_family.num_tasks("val"))
    vfs = dataclasses.replace(fs, budgets=(0, fs.support_size), num_tasks=n, seeds=1, split="val", finetune=False,
                              guard_adaptation=False)
    res = evaluate_few_shot(meta_cfg, meta_params, meta_target, vfs, key, hp, learner, meta_seeds=meta_seeds,
                            meta_learned=False)
    unadapted, adapted = (float(x) for x in res.mean)
    return GuardChoice(not adapted > unadapted, unadapted, adapted, n)


def make_few_shot(
    meta_cfg: MetaConfig, fs: FewShotConfig, learner: Learner | None = None, *, return_params: bool = False,
    meta_learned: bool | None = None,
):
    """Builds ``run(meta_params, meta_target, task_params [R], keys [R], hp) -> returns [R, B]``.

    ``R`` independent adaptation runs (one task and one key each) are vmapped. ``learner``
    defaults to the one of ``meta_cfg.algorithm``. ``meta_learned``: whether the init's
    adaptation rule was meta-learned (default: unless ``meta_cfg.algorithm`` is
    ``"pretrained"``; pass ``False`` for a fresh init), which decides
    :func:`guards_adaptation`. With ``return_params=True`` ``run`` returns
    ``(returns [R, B], task_params [R])``: each run's deployed parameters after the largest budget
    (what :func:`metadqn_jax.deploy.adapt_to_task` hands out).

    The program's size does not grow with the number of budgets: support collection and
    fine-tuning are each one scan whose body evaluates the budgets inside it (a ``lax.cond``),
    so one copy of the step, of the adaptation and of the greedy evaluation is compiled per phase
    (an unrolled loop over the budgets held one scan and one evaluation per budget and compiled
    several times longer). The keys are those of that loop (one ``split(key, 3)`` per point).
    """
    family = meta_cfg.task_family
    env, base_params = family.env()
    num_actions = envs.num_actions(env, base_params)
    obs_shape = envs.obs_shape(env, base_params)
    learner = learner or make_learner(meta_cfg, num_actions, obs_shape)
    mode = explore_mode(meta_cfg, learner, fs.explore)
    max_steps = family.episode_length
    S = fs.support_size
    capacity = max(fs.max_budget, S, 1)
    guard = guards_adaptation(meta_cfg, fs, meta_learned)
    ft_hp = DQNHParams(*[jnp.float32(x) for x in (fs.finetune_lr, 0.0, 0.0, 0.0, 1.0, fs.finetune_tau)])

    # segment boundaries: every budget, plus the adaptation point
    points = sorted(set(fs.budgets) | ({S} if S <= fs.max_budget else set()))

    def one_run(meta_params, meta_target, task, key, hp: MetaHParams):
        env_params = rollout.broadcast_params(task, 1)
        eval_params = rollout.broadcast_params(task, fs.eval_episodes)
        k_reset, key = jax.random.split(key)
        carry = rollout.init_carry(env, k_reset, env_params)
        buffer = replay.init(example_transition(obs_shape), capacity)
        tp0 = learner.unadapted(meta_params)
        tp, target = tp0, {"net": meta_target["net"], "ctx": tp0["ctx"]}
        opt_state = clipped_adam(fs.finetune_lr, 10.0).init(tp)
        hp_ft = ft_hp._replace(gamma=hp.gamma)

        def adapt_on(buf, n_valid):
            tr, mask = replay.recent(buf, S)
            return learner.adapt(meta_params, meta_target, (tr, mask), hp)

        def greedy(params, k):
            act = lambda obs: jnp.argmax(learner.q_values(params, obs), axis=-1)
            return rollout.greedy_returns(env, act, k, eval_params, max_steps).mean()

        stats = online_no_data_stats(learner, meta_params, obs_shape, (1,)) if mode == "online" else None

        def collect_step(c, k):
            carry, buf, stats = c
            (carry, stats), tr = _explore_step(env, learner, mode, meta_params, meta_target, hp, (carry, stats), buf,
                                               S, k, env_params, fs.support_epsilon)
            return (carry, replay.add(buf, tr), stats), None

        select = (fs.finetune and fs.finetune_select) or guard
        explore = select and fs.finetune and fs.select_epsilon != fs.finetune_epsilon

        def finetune_step(c, xs):
            carry, buf, tp, target, opt_state, sel = c
            k, t = xs
            k_act, k_env, k_upd = jax.random.split(k, 3)
            q = learner.q_values(tp, carry.obs)
            eps = fs.finetune_epsilon
            if select:  # this episode's actor: the deployed parameters (0), the challenger (1), the candidate (-1, 2)
                q = jnp.where(sel.turn == 0, learner.q_values(sel.deployed, carry.obs),
                              jnp.where(sel.turn == 1, learner.q_values(sel.challenger, carry.obs), q))
                if fs.select_epsilon != fs.finetune_epsilon:  # contest episodes (turns 0, 1) at select_epsilon
                    contest = (sel.turn == 0) | (sel.turn == 1)
                    eps = jnp.where(contest, jnp.float32(fs.select_epsilon), jnp.float32(fs.finetune_epsilon))
            a = policies.epsilon_greedy(k_act, q, eps)
            ep_return = carry.episode_return[0]
            carry, tr = rollout.env_step(env, k_env, carry, a, env_params)
            buf = replay.add(buf, tr)
            if fs.finetune:
                batch = replay.sample(buf, k_upd, fs.finetune_batch)
                new_tp, new_opt, _ = dqn.dqn_update(tp, target, opt_state, batch, hp_ft, learner.q_values)
                do = (t % fs.finetune_every == 0) & (t >= fs.learning_starts)
                tp, opt_state = tree_where(do, new_tp, tp), tree_where(do, new_opt, opt_state)
                target = tree_where(do, polyak_update(target, tp, fs.finetune_tau), target)
            if select:
                done = tr.terminated[0] | tr.truncated[0]
                sel = selection_step(sel, done, ep_return + tr.reward[0], tp, fs.select_episodes, explore)
            return (carry, buf, tp, target, opt_state, sel), None

        # Per-step and evaluation keys, derived exactly as a loop over the segments between
        # consecutive points would: ``(key, k_seg, k_eval) = split(key, 3)`` per point, and the
        # segment's steps take ``split(k_seg, n)``.
        seg_keys, point_keys = [], {}
        done = 0
        for point in points:
            key, k_seg, k_eval = jax.random.split(key, 3)
            if point > done:
                seg_keys.append(jax.random.split(k_seg, point - done))
            point_keys[point] = k_eval
            done = point
        step_keys = jnp.concatenate(seg_keys) if seg_keys else None  # [max_budget] keys
        eval_keys = jnp.stack([point_keys[b] for b in fs.budgets])  # [B] keys
        slot = {b: i for i, b in enumerate(fs.budgets)}
        results = jnp.zeros(len(fs.budgets), jax.eval_shape(greedy, tp0, eval_keys[0]).dtype)

        def phase(step_fn, state, results, start, stop, params_of):
            """Steps ``start .. stop - 1`` of ``step_fn(state, (key, t - S))``; every budget ``b``
            in ``[start, stop)`` is evaluated just before step ``b`` (greedy return of
            ``params_of(state)``). With budgets inside, this is one scan over the segments between
            consecutive points whose body evaluates (a ``lax.cond``) and then runs the segment's
            steps (a loop with traced bounds), so the program holds one step and one evaluation
            whatever the number of budgets; the step loop's body is the step alone."""
            if stop <= start:
                return state, results
            inside = [b for b in fs.budgets if start <= b < stop]
            if not inside:
                state, _ = jax.lax.scan(step_fn, state, (step_keys[start:stop], jnp.arange(start - S, stop - S)))
                return state, results
            edges = [start] + [p for p in points if start < p < stop] + [stop]
            seg = (np.array(edges[:-1], np.int32), np.array(edges[1:], np.int32),
                   np.array([p in slot for p in edges[:-1]]), np.array([slot.get(p, 0) for p in edges[:-1]], np.int32))

            def segment(c, x):
                state, results = c
                lo, hi, f, i = x
                results = jax.lax.cond(
                    f, lambda: results.at[i].set(greedy(params_of(state), eval_keys[i])), lambda: results)
                state = jax.lax.fori_loop(lo, hi, lambda t, st: step_fn(st, (step_keys[t], t - S))[0], state)
                return (state, results), None

            (state, results), _ = jax.lax.scan(segment, (state, results), seg)
            return state, results

        # 1. collect the support (steps 0 .. min(S, max_budget) - 1); a budget below S reports
        #    the adaptation rule on the transitions seen so far
        (carry, buffer, stats), results = phase(
            lambda c, x: collect_step(c, x[0]), (carry, buffer, stats), results, 0, min(S, fs.max_budget),
            (lambda c: tp0) if guard else (lambda c: adapt_on(c[1], None)))
        adapted = S <= fs.max_budget
        sel = None
        if adapted:  # 2. adapt once, then fine-tune (steps S .. max_budget - 1)
            tp = adapt_on(buffer, S)
            target = {"net": meta_target["net"], "ctx": tp["ctx"]}
            opt_state = clipped_adam(fs.finetune_lr, 10.0).init(tp)
            sel = init_selection(tp0 if guard else tp) if select else None
            (carry, buffer, tp, target, opt_state, sel), results = phase(
                finetune_step, (carry, buffer, tp, target, opt_state, sel), results, S, fs.max_budget,
                lambda c: c[5].deployed if select else c[2])
        final = ((sel.deployed if select else tp) if adapted else tp0 if guard else adapt_on(buffer, fs.max_budget))
        returns = results.at[slot[fs.max_budget]].set(greedy(final, eval_keys[slot[fs.max_budget]]))
        if return_params:
            return returns, final
        return returns

    def run(meta_params, meta_target, task_params, keys, hp):
        return jax.vmap(one_run, in_axes=(None, None, 0, 0, None))(meta_params, meta_target, task_params, keys, hp)

    return run, learner


def few_shot_tasks(family: TaskFamily, fs: FewShotConfig, key: jax.Array):
    """The evaluation runs: ``fs.num_tasks`` distinct tasks of ``fs.split``, each repeated
    ``fs.seeds`` times, and one key per run. Returns ``(task_params [R], keys [R])``."""
    n = min(fs.num_tasks, family.num_tasks(fs.split))
    pool = family.tasks(fs.split)
    task_params = jax.tree.map(lambda x: jnp.repeat(x[:n], fs.seeds, axis=0), pool)
    keys = jax.random.split(key, n * fs.seeds)
    return task_params, keys


def evaluate_few_shot(
    meta_cfg: MetaConfig,
    meta_params,
    meta_target,
    fs: FewShotConfig,
    key: jax.Array,
    hp: MetaHParams | None = None,
    learner: Learner | None = None,
    *,
    meta_seeds: int | None = None,
    meta_learned: bool | None = None,
) -> FewShotResult:
    """Few-shot returns of one initialisation on held-out tasks (see the module docstring).

    ``meta_seeds=N``: ``meta_params`` / ``meta_target`` carry a leading axis of ``N`` meta-training
    seeds (:func:`metadqn_jax.driver.train_meta` with a batch of keys); every seed adapts on the
    same tasks with the same keys, in one vmapped program, and the result's returns are
    ``[N, task, adapt_seed, budget]``. ``meta_learned``: as in :func:`make_few_shot` (``False``
    for a fresh init).
    """
    hp = meta_cfg.hparams() if hp is None else hp
    run, _ = make_few_shot(meta_cfg, fs, learner, meta_learned=meta_learned)
    task_params, keys = few_shot_tasks(meta_cfg.task_family, fs, key)
    if meta_seeds is None:
        returns = jax.jit(run)(meta_params, meta_target, task_params, keys, hp)
        return summarize(fs.budgets, _by_task(returns, fs.seeds), axes="tsb")
    returns = jax.jit(jax.vmap(run, in_axes=(0, 0, None, None, None)))(meta_params, meta_target, task_params, keys, hp)
    returns = np.asarray(returns)
    return summarize(fs.budgets, returns.reshape(returns.shape[0], -1, fs.seeds, returns.shape[-1]), axes="mtsb")


def first_episode_explore(meta_cfg: MetaConfig) -> str:
    """:func:`first_episode_curve`'s default ``explore``: infer the task while acting whenever the
    algorithm can — ``"adapted"`` for ``context`` with ``context_refine``, ``"online"`` for any
    other ``context`` (also one trained without ``online_context``), else ``"unadapted"``."""
    return _inferring_mode(meta_cfg) if meta_cfg.algorithm == "context" else "unadapted"


def first_episode_curve(
    meta_cfg: MetaConfig,
    meta_params,
    fs: FewShotConfig,
    key: jax.Array,
    *,
    epsilon: float = 0.0,
    explore: str | None = None,
    meta_target=None,
    hp: MetaHParams | None = None,
    learner: Learner | None = None,
    meta_seeds: int | None = None,
) -> FewShotResult:
    """The zero-shot setting: the return *during the very first episode* on a held-out task.

    Each of the ``fs.num_tasks × fs.seeds`` runs starts one environment from reset with no
    data and acts ε-greedily (``epsilon``, default greedy) for one episode on what
    ``explore`` names (:func:`explore_mode`; default ``None``: :func:`first_episode_explore`,
    i.e. infer the task while acting whenever the algorithm can). ``meta_target`` (default:
    ``meta_params``) and ``hp`` (default: the config's) are what ``"adapted"`` passes to
    ``learner.adapt``. Returns the cumulative return after ``t = 1 … episode_length`` steps as
    a :class:`FewShotResult` whose ``budgets`` are those step counts (rewards after the first
    ``done`` are not counted). ``meta_seeds=N``: the parameters carry a leading seed axis (as in
    :func:`evaluate_few_shot`).
    """
    in_range("epsilon", epsilon, 0.0, 1.0)
    family = meta_cfg.task_family
    env, base_params = family.env()
    obs_shape = envs.obs_shape(env, base_params)
    learner = learner or make_learner(meta_cfg, envs.num_actions(env, base_params), obs_shape)
    mode = explore_mode(meta_cfg, learner, first_episode_explore(meta_cfg) if explore is None else explore)
    meta_target = meta_params if meta_target is None else meta_target
    hp = meta_cfg.hparams() if hp is None else hp
    steps = family.episode_length

    def one_run(meta_params, meta_target, task, key):
        env_params = rollout.broadcast_params(task, 1)
        k_reset, k_roll = jax.random.split(key)
        carry = rollout.init_carry(env, k_reset, env_params)
        stats = online_no_data_stats(learner, meta_params, obs_shape, (1,)) if mode == "online" else None
        # the episode's transitions are kept only where the acting reads them ("adapted")
        buf = replay.init(example_transition(obs_shape), steps) if mode == "adapted" else None

        def step(c, k):
            carry, stats, buf, alive = c
            (carry, stats), tr = _explore_step(env, learner, mode, meta_params, meta_target, hp, (carry, stats), buf,
                                               steps, k, env_params, epsilon)
            reward = jnp.where(alive, tr.reward[0], 0.0)
            alive = alive & ~(tr.terminated[0] | tr.truncated[0])
            return (carry, stats, None if buf is None else replay.add(buf, tr), alive), reward

        _, rewards = jax.lax.scan(step, (carry, stats, buf, jnp.ones((), bool)), jax.random.split(k_roll, steps))
        return jnp.cumsum(rewards)

    task_params, keys = few_shot_tasks(family, fs, key)
    runs = jax.vmap(one_run, in_axes=(None, None, 0, 0))
    budgets = tuple(range(1, steps + 1))
    if meta_seeds is None:
        curves = jax.jit(runs)(meta_params, meta_target, task_params, keys)
        return summarize(budgets, _by_task(curves, fs.seeds), axes="tsb")
    curves = np.asarray(jax.jit(jax.vmap(runs, in_axes=(0, 0, None, None)))(meta_params, meta_target, task_params, keys))
    return summarize(budgets, curves.reshape(curves.shape[0], -1, fs.seeds, steps), axes="mtsb")


def scratch_params(meta_cfg: MetaConfig, key: jax.Array):
    """A fresh initialisation for the ``scratch`` baseline (its own target = itself): the
    network and adaptation rule of the ``pretrained`` learner of ``meta_cfg``, untrained; a batch
    of keys ``[N]`` gives ``N`` initialisations (a leading seed axis)."""
    family = meta_cfg.task_family
    env, base_params = family.env()
    learner = make_learner(meta_cfg.rebuilt(algorithm="pretrained"),
                           envs.num_actions(env, base_params), envs.obs_shape(env, base_params))
    params = learner.init(key) if jnp.ndim(key) == 0 else jax.vmap(learner.init)(key)
    return learner, params


def oracle_returns(
    family: TaskFamily, fs: FewShotConfig, key: jax.Array, dqn_cfg: DQNConfig | None = None
) -> FewShotResult:
    """The oracle: a DQN trained from scratch on each held-out task for a long budget.

    Returns the final greedy evaluation of each (task, seed) run (not the best of the periodic
    ones, which would pick the luckiest evaluation), reported at every budget (a horizontal
    reference line). One run per task and seed up to ``oracle_seeds`` (``fs.oracle_seeds``:
    the intervals resample tasks, and on CartPole each run is a 100k-step DQN); tasks × seeds
    are one vmapped program.
    """
    dqn_cfg = dqn_cfg or default_oracle_config(family)
    env, base = family.env()
    train = dqn.make_train(dqn_cfg, base)
    hp = dqn_cfg.hparams(gamma=family.gamma)
    fs = dataclasses.replace(fs, seeds=min(fs.seeds, fs.oracle_seeds))
    task_params, keys = few_shot_tasks(family, fs, key)
    _, metrics = jax.jit(jax.vmap(train, in_axes=(0, None, 0)))(keys, hp, task_params)
    final = np.asarray(metrics.eval_return)[:, -1]  # the trained DQN's last evaluation, not the best one
    return summarize(fs.budgets, _by_task(np.repeat(final[:, None], len(fs.budgets), axis=1), fs.seeds), axes="tsb")


def default_oracle_config(family: TaskFamily) -> DQNConfig:
    """A single-task DQN long enough to converge on one task of the family."""
    if family.env_id.startswith("PointNav"):
        return DQNConfig(env_id=family.env_id, num_envs=4, total_steps=20_000, buffer_size=20_000,
                         batch_size=64, learning_starts=500, eval_every=2_000, eval_episodes=4,
                         eps_decay_steps=10_000.0, updates_per_iteration=1, solve_threshold=0.0)
    return DQNConfig(env_id=family.env_id, eval_episodes=4)
