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
   deployed and is the only actor.
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

The modules: :mod:`.config` (:class:`FewShotConfig`, what a learner acts on while exploring,
whether its adaptation is guarded), :mod:`.protocol` (one run, compiled once for any number of
budgets: :func:`make_few_shot`), :mod:`.selection` (the guard's contest), :mod:`.evaluate`
(:func:`evaluate_few_shot` over tasks × seeds, the first-episode curve, the guard's choice on
validation tasks), :mod:`.results` (:class:`FewShotResult`), :mod:`.baselines` (scratch, the
per-task oracle).
"""

from metadqn_jax.fewshot.baselines import (
    default_oracle_cache,
    default_oracle_config,
    oracle_cache_path,
    oracle_returns,
    scratch_params,
)
from metadqn_jax.fewshot.config import (
    EXPLORE_MODES,
    FewShotConfig,
    explore_mode,
    first_episode_explore,
    guards_adaptation,
)
from metadqn_jax.fewshot.evaluate import (
    GuardChoice,
    choose_guard,
    evaluate_few_shot,
    few_shot_tasks,
    first_episode_curve,
)
from metadqn_jax.fewshot.protocol import make_few_shot
from metadqn_jax.fewshot.results import FewShotResult, summarize
from metadqn_jax.fewshot.selection import Selection, init_selection, selection_step

__all__ = ["EXPLORE_MODES", "FewShotConfig", "FewShotResult", "GuardChoice", "Selection", "choose_guard",
           "default_oracle_cache", "default_oracle_config", "oracle_cache_path", "evaluate_few_shot", "explore_mode", "few_shot_tasks", "first_episode_curve",
           "first_episode_explore", "guards_adaptation", "init_selection", "make_few_shot", "oracle_returns",
           "scratch_params", "selection_step", "summarize"]
