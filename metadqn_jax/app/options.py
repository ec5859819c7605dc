"""The options of the ``metadqn`` commands: one table per command (:class:`Opt` rows, each
setting one config field ``section.field`` or a runtime switch) and the argparse helpers that
add them, with every option's default in its help.

The defaults shown come from the generated resolved default configuration of each command
(:mod:`metadqn_jax.app.command_defaults`) and the per-algorithm defaults
(:mod:`metadqn_jax.meta.defaults`): plain data, so building the parser imports no JAX.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from metadqn_jax.meta.defaults import ALGORITHM_DEFAULTS, ALGORITHMS, LIBRARY_DEFAULTS

__all__ = ["Opt", "TRAIN_OPTS", "EVALUATE_OPTS", "DQN_OPTS", "REGRESS_OPTS", "SWEEP_OPTS", "add_opts", "flag_layer",
           "add_common", "add_family_arguments", "positive_int_arg", "default_text"]


class Opt(NamedTuple):
    """A command-line option that sets the config field ``key`` ("section.field") or, with
    ``key=None``, a runtime setting with an explicit ``default`` text."""

    flags: tuple[str, ...]
    key: str | None
    help: str
    unit: str | None = None
    type: Callable | None = str
    metavar: str | None = None
    action: str | None = None
    default: str | None = None  # help text of the default for runtime options


def default_text(value: Any) -> str:
    """A default as the help shows it: ``null``, ``on``/``off``, a comma list (``none`` if empty)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) if value else "none"
    return str(value)


def _by_algorithm(field: str) -> str:
    """The default of an algorithm-dependent field, e.g. ``"cavia 1.0, else 0.1"``, from
    :data:`~metadqn_jax.meta.defaults.ALGORITHM_DEFAULTS` and ``LIBRARY_DEFAULTS``."""
    groups: list[tuple[Any, list[str]]] = []  # (value, algorithms), in table order
    for algo, values in ALGORITHM_DEFAULTS.items():
        if field in values:
            same = [g for g in groups if type(g[0]) is type(values[field]) and g[0] == values[field]]
            if same:
                same[0][1].append(algo)
            else:
                groups.append((values[field], [algo]))
    parts = [f"{_and(algos)} {default_text(v)}" for v, algos in groups]
    return ", ".join([*parts, f"else {default_text(LIBRARY_DEFAULTS[field])}"])


def _and(names: Sequence[str], word: str = "and") -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"`` (or ``word``)."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {word} {names[-1]}"


_META_LEARNERS = [a for a in ALGORITHMS if a != "pretrained"]  # pretrained is a baseline (--baselines)


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(" ", "").strip("[]()").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _str_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def positive_int_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


TRAIN_OPTS: tuple[Opt, ...] = (
    Opt(("--family",), "meta.family", "task family (see 'metadqn families')", None, str, "NAME"),
    Opt(("--algorithm",), "run.algorithms", "meta-learning algorithm to train and compare: "
        f"{_and(_META_LEARNERS, 'or')}; repeat the option or give a comma list for several", None, _str_list,
        "ALGO", "append"),
    Opt(("--baselines",), "run.baselines", "comma list of baselines from pretrained, scratch, oracle "
        "('none': no baseline)", None, _str_list, "LIST"),
    Opt(("--oracle",), None, "add the oracle baseline (a DQN trained from scratch on each test task; "
        "about 15 s more on pointnav-rotated, 2 min on CartPole; kept in ~/.cache/metadqn_jax/oracle, so a run "
        "with the same family, test tasks and seed reads it)", None, None, None, "store_true", "off"),
    Opt(("--meta-steps",), "meta.num_meta_steps", "meta-training steps per algorithm", "meta-steps", int, "N"),
    Opt(("--num-tasks",), "meta.num_tasks", "tasks per meta-step (the meta-batch)", "tasks", int, "N"),
    Opt(("--inner-steps",), "meta.inner_steps", "inner-loop TD gradient steps of the gradient learners",
        "gradient steps", int, "K"),
    Opt(("--chunk-size",), "meta.chunk_size", "meta-steps per compiled call (logging, checkpoint and "
        "progress granularity)", "meta-steps", int, "N"),
    Opt(("--inner-lr",), "hparams.inner_lr", "inner-loop learning rate (traced; null = derived from the "
        f"family where Q-values are large, else the algorithm's: {_by_algorithm('inner_lr')})", "step size", float, "LR"),
    Opt(("--meta-lr",), "hparams.meta_lr", "meta-optimiser (Adam) learning rate (traced; null = derived from "
        f"the family where Q-values are large, else the algorithm's: {_by_algorithm('meta_lr')})", "step size", float, "LR"),
    Opt(("--gamma",), "hparams.gamma", "discount factor (traced; null = the family's)", "per env step",
        float, "G"),
    Opt(("--val-every",), "validation.every",
        "meta-steps between validations (null: a tenth of the run; 0: no validation)",
        "meta-steps", int, "N"),
    Opt(("--patience",), "validation.patience", "validations without improvement before early stopping "
        "(0: never stop)", "validations", int, "N"),
    Opt(("--seed",), "run.seed", "seed of meta-training, evaluation and the scratch init", None, int, "S"),
    Opt(("--meta-seeds",), "run.meta_seeds", "meta-training seeds per algorithm (S, S+1, ...), trained as one "
        "vmapped program; the table's intervals resample seeds and tasks", "seeds", int, "N"),
    Opt(("--num-devices",), "run.num_devices", "devices the task axis is sharded over (default: all local "
        "devices; 1: no sharding); meta.num_tasks must be divisible by it", "devices", int, "N"),
    Opt(("--budgets",), "few_shot.budgets", "comma list of adaptation budgets on each test task",
        "env steps", _int_list, "LIST", None, "the family's (TaskFamily.budgets: by default 0, 1/20, 1/5, 1/2, 1, "
        "2 and 4 episodes; 'metadqn families --json' lists them)"),
    Opt(("--test-tasks",), "few_shot.num_tasks", "held-out test tasks", "tasks", int, "N"),
    Opt(("--seeds",), "few_shot.seeds", "adaptation runs per test task", "runs", int, "N"),
    Opt(("--checkpoint-every",), "run.checkpoint_every", "meta-steps between checkpoints (0: only at the "
        "end; saved at chunk boundaries)", "meta-steps", int, "N"),
    Opt(("--keep",), "run.keep", "checkpoints kept per algorithm (the most recent)", "checkpoints", int, "K"),
)

EVALUATE_OPTS: tuple[Opt, ...] = (
    Opt(("--budgets",), "few_shot.budgets", "comma list of adaptation budgets",
        "env steps", _int_list, "LIST"),
    Opt(("--test-tasks",), "few_shot.num_tasks", "held-out test tasks", "tasks", int, "N"),
    Opt(("--seeds",), "few_shot.seeds", "adaptation runs per test task", "runs", int, "N"),
    Opt(("--baselines",), "run.baselines", "comma list from pretrained, scratch, oracle; pretrained only if "
        "the run trained it", None, _str_list, "LIST"),
    Opt(("--oracle",), None, "add the oracle baseline", None, None, None, "store_true", "off"),
)

DQN_OPTS: tuple[Opt, ...] = (
    Opt(("--env",), "dqn.env_id", "gymnax environment id (or an id of metadqn_jax.envs.registry)", None, str, "ID"),
    Opt(("--family",), "run.family", "train on one task of this family instead (sets --env)", None, str,
        "NAME"),
    Opt(("--task",), "run.task", "index of the family task", "task index", int, "I"),
    Opt(("--split",), "run.split", "family split the task comes from: train, val or test", None, str, "SPLIT"),
    Opt(("--steps",), "dqn.total_steps", "training length", "env steps (all envs)", int, "N"),
    Opt(("--num-envs",), "dqn.num_envs", "parallel environments", "envs", int, "N"),
    Opt(("--eval-every",), "dqn.eval_every", "env steps between greedy evaluations", "env steps", int, "N"),
    Opt(("--lr",), "hparams.lr", "Adam learning rate (traced)", "step size", float, "LR"),
    Opt(("--gamma",), "hparams.gamma", "discount factor (traced)", "per env step", float, "G"),
    Opt(("--seed",), "run.seed", "first seed (seeds are S, S+1, ...)", None, int, "S"),
    Opt(("--seeds",), "run.seeds", "independent runs, vmapped into one program", "runs", int, "N"),
)

REGRESS_OPTS: tuple[Opt, ...] = (
    Opt(("--algorithm",), "run.algorithms", "algorithm: maml, fomaml, reptile or pretrained; repeat the "
        "option or give a comma list", None, _str_list, "ALGO", "append"),
    Opt(("--iterations",), "regression.num_iterations", "meta-iterations per algorithm", "meta-iterations",
        int, "N"),
    Opt(("--shots",), "regression.shots", "support points per task during meta-training (K)", "points",
        int, "K"),
    Opt(("--meta-batch",), "regression.meta_batch", "tasks per meta-iteration", "tasks", int, "N"),
    Opt(("--inner-steps",), "regression.inner_steps", "inner SGD steps during meta-training",
        "gradient steps", int, "K"),
    Opt(("--inner-lr",), "regression.inner_lr", "inner learning rate", "step size", float, "LR"),
    Opt(("--meta-lr",), "regression.meta_lr", "meta-optimiser learning rate", "step size", float, "LR"),
    Opt(("--seed",), "regression.seed", "training seed", None, int, "S"),
    Opt(("--eval-tasks",), "eval.num_tasks", "held-out evaluation tasks", "tasks", int, "N"),
    Opt(("--eval-shots",), "eval.shots", "comma list of support sizes evaluated", "points", _int_list, "LIST"),
    Opt(("--eval-steps",), "eval.steps", "comma list of inner SGD step counts evaluated", "gradient steps",
        _int_list, "LIST"),
)

SWEEP_OPTS: tuple[Opt, ...] = (
    Opt(("--grid",), "sweep.grid", "FIELD=V1,V2,...: the values of one traced hyper-parameter (hparams.inner_lr, "
        "meta_lr, weight_decay, gamma, epsilon or tau; the 'hparams.' is optional); repeat for more fields: every "
        "combination is trained", None, lambda text: [text.strip()], "FIELD=V1,V2", "append", "none (required)"),
    Opt(("--meta-seeds", "--seeds"), "sweep.seeds", "meta-training seeds per combination (every combination x "
        "seed is one run of the one vmapped program; seed i trains from the key of 'metadqn train --seed SEED+i'; "
        "the name 'metadqn train' uses: --seeds, its old name here, still works)", "runs", int,
        "N", None, "3 (--quick: 2)"),
    Opt(("--seed",), "sweep.seed", "first meta-training seed", None, int, "S", None, "0"),
    Opt(("--family",), "meta.family", "task family (see 'metadqn families')", None, str, "NAME"),
    Opt(("--algorithm",), "sweep.algorithm", f"the meta-learning algorithm swept (one: {_and(ALGORITHMS, 'or')})",
        None, str, "ALGO", None, "context"),
    Opt(("--meta-steps",), "meta.num_meta_steps", "meta-training steps of every run", "meta-steps", int, "N"),
    Opt(("--num-tasks",), "meta.num_tasks", "tasks per meta-step (the meta-batch)", "tasks", int, "N"),
    Opt(("--chunk-size",), "meta.chunk_size", "meta-steps per compiled call", "meta-steps", int, "N"),
    Opt(("--inner-lr",), "hparams.inner_lr", "inner-loop learning rate where the grid does not vary it (null = "
        f"the algorithm's: {_by_algorithm('inner_lr')})", "step size", float, "LR"),
    Opt(("--meta-lr",), "hparams.meta_lr", "meta-optimiser learning rate where the grid does not vary it (null = "
        f"the algorithm's: {_by_algorithm('meta_lr')})", "step size", float, "LR"),
    Opt(("--val-every",), "validation.every", "meta-steps between validations (null: a tenth of the run; not 0: "
        "the sweep chooses on validation returns)", "meta-steps", int, "N"),
    Opt(("--val-tasks",), "validation.num_tasks", "validation tasks (from the family's val split)", "tasks", int,
        "N"),
    Opt(("--patience",), "validation.patience", "validations without improvement before a run stops improving "
        "(0: never stop; the program stops when every run has run out of it)", "validations", int, "N"),
    Opt(("--num-devices",), "sweep.num_devices", "devices the task axis is sharded over (default: all local "
        "devices; 1: no sharding)", "devices", int, "N", None, "all"),
    Opt(("--sequential",), None, "train the combinations one after another (each one program over its seeds) "
        "instead of all in one program: less memory, the same numbers up to float round-off", None, None, None,
        "store_true", "off"),
)


def add_opts(parser: argparse.ArgumentParser, opts: Sequence[Opt], defaults: dict | None) -> None:
    """Adds ``opts`` to ``parser``; each help ends with ``[default: ...; unit: ...]``, the default
    read from ``defaults`` (a resolved config as ``{section: {field: value}}``; ``None``: "the
    run's") unless the option names its own."""
    for o in opts:
        if o.default is not None:
            default = o.default
        elif o.key is not None and defaults is not None:
            sec, field = o.key.split(".", 1)
            default = default_text(defaults[sec][field])
        else:
            default = "the run's"
        tail = f"default: {default}" + (f"; unit: {o.unit}" if o.unit else "")
        kwargs: dict[str, Any] = {"help": f"{o.help} [{tail}]".replace("%", "%%"), "dest": _dest(o)}
        if o.action == "store_true":
            kwargs["action"] = "store_true"
        else:
            kwargs.update(type=o.type, metavar=o.metavar, default=None)
            if o.action:
                kwargs["action"] = o.action
        parser.add_argument(*o.flags, **kwargs)


def _dest(o: Opt) -> str:
    return o.flags[0].lstrip("-").replace("-", "_")


def flag_layer(args: argparse.Namespace, opts: Sequence[Opt]) -> dict[str, dict[str, Any]]:
    """The config layer of the options given on the command line."""
    layer: dict[str, dict[str, Any]] = {}
    for o in opts:
        if o.key is None:
            continue
        value = getattr(args, _dest(o), None)
        if value is None:
            continue
        if o.action == "append":  # list of lists (comma lists, repeated)
            value = [x for chunk in value for x in chunk]
        if o.key == "run.baselines" and [v.lower() for v in value] == ["none"]:
            value = []
        sec, field = o.key.split(".", 1)
        layer.setdefault(sec, {})[field] = value
    return layer


def add_common(parser: argparse.ArgumentParser, *, config: bool = True, out: bool = True,
               quick: str | None = None, progress: bool = True, diverge: str | None = None,
               set_example: str = "--set meta.hidden=[32,32] or --set hparams.tau=0.9") -> None:
    """Adds the options most commands share: ``--config``, ``--set``, ``--print-config`` (``config``),
    ``--out``, ``--name`` (``out``), ``--quick`` (its help: ``quick``), ``--keep-going-on-divergence``
    (its help: ``diverge``), ``--no-progress`` (``progress``) and the compilation cache's two."""
    if config:
        parser.add_argument("--config", metavar="FILE.yaml", default=None,
                            help="YAML config file (sections as in a run's config.yaml); flags and --set "
                                 "override it [default: none]")
        parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                            help=f"override any config field, e.g. {set_example} (value parsed as YAML; "
                                 "repeatable) [default: none]")
        parser.add_argument("--print-config", action="store_true",
                            help="print the resolved config as YAML and exit [default: off]")
    if out:
        parser.add_argument("--out", metavar="DIR", default="runs",
                            help="parent folder of the run folders [default: runs]")
        parser.add_argument("--name", metavar="NAME", default=None,
                            help="run folder name: the run goes to OUT/NAME [default: "
                                 "<command>-<family or env>-<date>-<time>]")
    if quick:
        parser.add_argument("--quick", action="store_true", help=f"{quick} [default: off]")
    if diverge:
        parser.add_argument("--keep-going-on-divergence", action="store_true",
                            help=f"{diverge} [default: off: stop with one error line and exit status 3]")
    if progress:
        parser.add_argument("--no-progress", action="store_true",
                            help="no progress bar [default: off: a tqdm bar on stderr, updated every chunk, "
                                 "with the step, the loss (and validation return) and the ETA]")
    parser.add_argument("--compile-cache", metavar="DIR", default=None,
                        help="persistent XLA compilation cache: reruns skip most compilation [default: "
                             "$METADQN_COMPILE_CACHE, else $JAX_COMPILATION_CACHE_DIR, else "
                             "~/.cache/metadqn_jax/xla]")
    parser.add_argument("--no-compile-cache", action="store_true",
                        help="do not use the persistent compilation cache [default: off]")


def add_family_arguments(parser: argparse.ArgumentParser, *, run: bool = False, listing: bool = False) -> None:
    """Adds ``--family-file`` and ``--family-module`` to a command's parser.

    Args:
      parser: the command's parser.
      run: the command reads a run folder (``evaluate``): the options only register a family
        (the run's ``config.yaml`` names it and holds its definition).
      listing: the command lists families (``families``).
    """
    if run:
        effect = ("registers it; needed only for a run folder whose config.yaml has no family: block, or whose "
                  "family's code module is not importable here (the stored definition wins)")
    elif listing:
        effect = "it is listed with the registered families"
    else:
        effect = "it becomes the family unless --family names another"
    parser.add_argument("--family-file", metavar="F.yaml", default=None,
                        help="a task family defined in YAML: the file's 'family:' block (name, env_id, ranges, "
                             "choices, base_params, gamma, meta_defaults, budgets, split sizes; README 'Your own "
                             f"task family'); {effect} [default: none]")
    parser.add_argument("--family-module", metavar="MODULE", default=None,
                        help="import a Python module (a dotted name, or a .py file's path) that registers task "
                             "families with metadqn_jax.tasks.register_family (the way for sample_fn / derive); "
                             f"{effect.replace('it is', 'they are').replace('it becomes', 'the one it registers becomes')} "
                             "[default: none]")
