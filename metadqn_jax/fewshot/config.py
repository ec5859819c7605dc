"""The static settings of the few-shot protocol (:class:`FewShotConfig`), and the two choices a
run makes from them: what a learner acts on while it collects a new task's support
(:func:`explore_mode`), and whether its one-shot adaptation must earn its deployment
(:func:`guards_adaptation`). The protocol itself: :mod:`metadqn_jax.fewshot`.
"""

from __future__ import annotations

import dataclasses
import math

from metadqn_jax.core.validate import in_range, positive_int, require
from metadqn_jax.meta import Learner, MetaConfig

__all__ = ["EXPLORE_MODES", "FewShotConfig", "explore_mode", "first_episode_explore", "guards_adaptation"]


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


def guards_adaptation(meta_cfg: MetaConfig, fs: FewShotConfig, meta_learned: bool | None = None) -> bool:
    """Whether the protocol guards the one-shot adaptation (module docstring, step 5):
    ``fs.guard_adaptation``, or when that is ``None``, whether the init's adaptation rule was not
    meta-learned (``meta_learned``; default: ``meta_cfg.algorithm != "pretrained"``)."""
    if fs.guard_adaptation is not None:
        return fs.guard_adaptation
    if meta_learned is None:
        meta_learned = meta_cfg.algorithm != "pretrained"
    return not meta_learned


def first_episode_explore(meta_cfg: MetaConfig) -> str:
    """:func:`first_episode_curve`'s default ``explore``: infer the task while acting whenever the
    algorithm can — ``"adapted"`` for ``context`` with ``context_refine``, ``"online"`` for any
    other ``context`` (also one trained without ``online_context``), else ``"unadapted"``."""
    return _inferring_mode(meta_cfg) if meta_cfg.algorithm == "context" else "unadapted"
