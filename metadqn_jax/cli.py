"""The ``metadqn`` command line (also ``python -m metadqn_jax``): argument wiring only.

Commands: ``train`` (meta-train, then the few-shot comparison on held-out tasks), ``evaluate``
(few-shot evaluation of a saved run), ``dqn`` (single-task DQN), ``regress`` (sinusoid
few-shot regression), ``families`` (the built-in task families). Their bodies live in
:mod:`metadqn_jax.app` (one module per command); this module holds the option tables, the
parser, :func:`main` and the generated reference (``docs/CLI.md``, by :func:`render_cli_docs`;
regenerate it with ``python -m metadqn_jax.cli --write-docs``).

Every option's help ends with its default, taken from the resolved default configuration of
its command (:mod:`metadqn_jax.app.command_defaults`, generated with ``docs/CLI.md``) and the
per-algorithm defaults (:mod:`metadqn_jax.meta.defaults`): building the parser imports no jax.

Every user-facing error (bad option or config value, bad run folder or checkpoint, an
operating-system error such as a read-only folder) prints one line ``error: <message>`` on
stderr and exits with status 2; training that diverged (a non-finite loss, gradient norm or
parameter) prints one ``error:`` line and exits with status 3 (``METADQN_DEBUG=1`` shows the
traceback instead). Results go to stdout, progress and notes to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from metadqn_jax.app import dqn, evaluate, families, regress, runs, train
from metadqn_jax.app.userfamily import add_family_arguments
from metadqn_jax.app.command_defaults import COMMAND_DEFAULTS
from metadqn_jax.meta.defaults import ALGORITHM_DEFAULTS, LIBRARY_DEFAULTS

PROG = "metadqn"
DOCS_PATH = Path(__file__).resolve().parents[1] / "docs" / "CLI.md"
DEFAULTS_PATH = Path(__file__).resolve().parent / "app" / "command_defaults.py"
DOCS_WIDTH = 96


class UsageError(Exception):
    """A command-line usage error (unknown option, bad option value)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump; main() prints "error: ..."
        raise UsageError(f"{message} (see '{self.prog} --help')")


# --------------------------------------------------------------------------- options
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


def _default_text(value: Any) -> str:
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
    parts = [f"{_and(algos)} {_default_text(v)}" for v, algos in groups]
    return ", ".join([*parts, f"else {_default_text(LIBRARY_DEFAULTS[field])}"])


def _and(names: Sequence[str]) -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(" ", "").strip("[]()").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _str_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _pos_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


TRAIN_OPTS: tuple[Opt, ...] = (
    Opt(("--family",), "meta.family", "task family (see 'metadqn families')", None, str, "NAME"),
    Opt(("--algorithm",), "run.algorithms", "meta-learning algorithm to train and compare: maml, fomaml, "
        "reptile, cavia or context; repeat the option or give a comma list for several", None, _str_list,
        "ALGO", "append"),
    Opt(("--baselines",), "run.baselines", "comma list of baselines from pretrained, scratch, oracle "
        "('none': no baseline)", None, _str_list, "LIST"),
    Opt(("--oracle",), None, "add the oracle baseline (a DQN trained from scratch on each test task; "
        "about 45 s more)", None, None, None, "store_true", "off"),
    Opt(("--meta-steps",), "meta.num_meta_steps", "meta-training steps per algorithm", "meta-steps", int, "N"),
    Opt(("--num-tasks",), "meta.num_tasks", "tasks per meta-step (the meta-batch)", "tasks", int, "N"),
    Opt(("--inner-steps",), "meta.inner_steps", "inner-loop TD gradient steps of the gradient learners",
        "gradient steps", int, "K"),
    Opt(("--chunk-size",), "meta.chunk_size", "meta-steps per compiled call (logging, checkpoint and "
        "progress granularity)", "meta-steps", int, "N"),
    Opt(("--inner-lr",), "hparams.inner_lr", "inner-loop learning rate (traced; null = the algorithm's: "
        f"{_by_algorithm('inner_lr')})", "step size", float, "LR"),
    Opt(("--meta-lr",), "hparams.meta_lr", "meta-optimiser (Adam) learning rate (traced; null = the "
        f"algorithm's: {_by_algorithm('meta_lr')})", "step size", float, "LR"),
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
    Opt(("--seeds",), "sweep.seeds", "meta-training seeds per combination (every combination x seed is one run "
        "of the one vmapped program; seed i trains from the key of 'metadqn train --seed SEED+i')", "runs", int,
        "N", None, "3 (--quick: 2)"),
    Opt(("--seed",), "sweep.seed", "first meta-training seed", None, int, "S", None, "0"),
    Opt(("--family",), "meta.family", "task family (see 'metadqn families')", None, str, "NAME"),
    Opt(("--algorithm",), "sweep.algorithm", "the meta-learning algorithm swept (one: maml, fomaml, reptile, "
        "cavia, context or pretrained)", None, str, "ALGO", None, "context"),
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


def _add_opts(parser: argparse.ArgumentParser, opts: Sequence[Opt], defaults: dict | None) -> None:
    for o in opts:
        if o.default is not None:
            default = o.default
        elif o.key is not None and defaults is not None:
            sec, field = o.key.split(".", 1)
            default = _default_text(defaults[sec][field])
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


def _flag_layer(args: argparse.Namespace, opts: Sequence[Opt]) -> dict[str, dict[str, Any]]:
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


def _add_common(parser: argparse.ArgumentParser, *, config: bool = True, out: bool = True,
                quick: str | None = None, progress: bool = True, diverge: str | None = None,
                set_example: str = "--set meta.hidden=[32,32] or --set hparams.tau=0.9") -> None:
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


# --------------------------------------------------------------------------- parser
def _formatter(width: int | None):
    def make(prog):
        return argparse.RawDescriptionHelpFormatter(prog, width=width, max_help_position=30)

    return make


def build_parser(width: int | None = None, defaults: dict[str, dict] | None = None) -> argparse.ArgumentParser:
    """The ``metadqn`` argument parser.

    Args:
      width: help text width (None: the terminal's).
      defaults: ``{command: resolved default config dict}`` shown in the help (None: the
        generated :data:`~metadqn_jax.app.command_defaults.COMMAND_DEFAULTS`).
    """
    from metadqn_jax import __version__

    d = COMMAND_DEFAULTS if defaults is None else defaults
    fmt = _formatter(width)
    tq = d["train"]
    parser = _Parser(
        prog=PROG, formatter_class=fmt,
        description="Meta-learning Deep Q-Networks in JAX over gymnax task families.",
        epilog="Run 'metadqn COMMAND --help' for the options of a command. Errors print one line "
               "'error: ...' and exit with status 2; training that diverged, with status 3.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    # ---- train
    p = sub.add_parser(
        "train", formatter_class=fmt, help="meta-train, then compare few-shot adaptation on held-out tasks",
        description=(
            "Meta-train on a task family, then adapt every initialisation (the meta-learned ones, the\n"
            "pretrained multi-task DQN, a scratch init, optionally the oracle) on held-out test tasks and\n"
            "print the table of greedy return vs. adaptation budget.\n\n"
            f"With no arguments it runs the built-in default (metadqn_jax/app/presets.py): family\n"
            f"{tq['meta']['family']}, algorithm {_default_text(tq['run']['algorithms'])} vs. "
            f"{_default_text(tq['run']['baselines'])}, {tq['meta']['num_meta_steps']} meta-steps,\n"
            f"budgets {_default_text(tq['few_shot']['budgets'])} env steps, {tq['few_shot']['num_tasks']} "
            f"test tasks x {tq['few_shot']['seeds']} seeds."),
        epilog=(
            "config precedence: dataclass defaults < preset (--quick) < --config FILE < flags < --set\n\n"
            "run folder OUT/NAME/:\n"
            + "".join(f"  {path:<24} {what}\n" for path, what in runs.TRAIN_LAYOUT) + "\n"
            "examples:\n"
            "  metadqn train                                  # the built-in default\n"
            "  metadqn train --quick --name smoke             # tiny settings, seconds after compiling\n"
            "  metadqn train --algorithm maml,context --meta-steps 500 --oracle\n"
            "  metadqn train --resume runs/smoke              # continue an interrupted run exactly"),
    )
    _add_opts(p, TRAIN_OPTS, tq)
    add_family_arguments(p)
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue the run in RUN_DIR from its latest checkpoints (its config.yaml; only "
                        "--meta-steps, the few-shot options, --baselines/--oracle, --checkpoint-every and "
                        "--keep may change) [default: none]")
    p.add_argument("--stop-after", metavar="STEP", type=_pos_int, default=None,
                   help="stop meta-training at the first chunk boundary >= STEP, after saving a checkpoint, "
                        "and exit (a deliberate interruption; continue with --resume) [default: none; unit: "
                        "meta-steps]")
    _add_common(p, quick="tiny settings for smoke tests (metadqn_jax/app/presets.py QUICK_TRAIN)",
                diverge="keep meta-training after a non-finite loss, gradient norm or parameter, and "
                        "export and evaluate what it gives")
    p.set_defaults(func=train.cmd_train, opts=TRAIN_OPTS)

    # ---- evaluate
    p = sub.add_parser(
        "evaluate", formatter_class=fmt, help="few-shot evaluation of a saved run (table + PNG)",
        description=("Few-shot evaluation of the initialisations saved in a 'metadqn train' run folder\n"
                     "(its exported policies; the latest checkpoints for an unfinished run) on held-out tasks.\n"
                     "Writes RUN_DIR/<tag>.md, .png and .json and prints the table."),
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a 'metadqn train' run folder")
    _add_opts(p, EVALUATE_OPTS, None)
    add_family_arguments(p, run=True)
    p.add_argument("--tag", metavar="NAME", default="few_shot",
                   help="output file stem inside RUN_DIR [default: few_shot]")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override a few_shot.* field, e.g. --set few_shot.finetune=false [default: none]")
    _add_common(p, config=False, out=False, progress=False)
    p.set_defaults(func=evaluate.cmd_evaluate, opts=EVALUATE_OPTS)

    # ---- dqn
    p = sub.add_parser(
        "dqn", formatter_class=fmt, help="single-task DQN (one compiled program, vmapped over seeds)",
        description=("Train a DQN on one task: a gymnax environment (--env) or one task of a family\n"
                     "(--family/--task). Writes config.yaml, metrics.csv, tb/, returns.png and dqn.md/.json."),
    )
    _add_opts(p, DQN_OPTS, d["dqn"])
    add_family_arguments(p)
    _add_common(p, quick="tiny settings for smoke tests (presets.QUICK_DQN)", progress=False,
                diverge="keep training after a non-finite loss or parameter and write the results anyway",
                set_example="--set dqn.hidden=[32,32] or --set hparams.tau=0.99")
    p.set_defaults(func=dqn.cmd_dqn, opts=DQN_OPTS)

    # ---- regress
    p = sub.add_parser(
        "regress", formatter_class=fmt, help="sinusoid few-shot regression (MAML paper, section 5.1)",
        description=("Meta-train regressors on sinusoids y = A sin(x - phase) and report the MSE on held-out\n"
                     "sinusoids after K-shot fine-tuning. Writes config.yaml, metrics.csv, tb/, regress.md/.json/.png."),
    )
    _add_opts(p, REGRESS_OPTS, d["regress"])
    _add_common(p, quick="tiny settings for smoke tests (presets.QUICK_REGRESS)",
                diverge="keep meta-training after a non-finite loss or parameter and report what it gives",
                set_example="--set regression.hidden=[40,40] or --set eval.inner_lr=0.02")
    p.set_defaults(func=regress.cmd_regress, opts=REGRESS_OPTS)

    # ---- sweep
    from metadqn_jax.app import sweep as sweep_app

    p = sub.add_parser(
        "sweep", formatter_class=fmt, help="hyper-parameter grid x seeds as one vmapped program, best on validation",
        description=(
            "Meta-train every combination of a grid over the traced hyper-parameters, for several\n"
            "meta-training seeds each, as ONE vmapped XLA program (compiled once), evaluate every run on\n"
            "validation tasks and choose the combination with the highest mean validation return. The\n"
            "test split is never evaluated. The meta / hparams / validation settings are those of\n"
            "'metadqn train' (same defaults, --config, --set)."),
        epilog=(
            "config precedence: dataclass defaults < preset (--quick) < --config FILE < flags < --set\n\n"
            "run folder OUT/NAME/:\n"
            + "".join(f"  {path:<24} {what}\n" for path, what in sweep_app.SWEEP_LAYOUT) + "\n"
            "examples:\n"
            "  metadqn sweep --quick --grid hparams.tau=0.9,0.99 --grid hparams.meta_lr=0.001,0.003 --seeds 2\n"
            "  metadqn sweep --family pointnav-goal --algorithm context --grid meta_lr=3e-4,1e-3,3e-3 --seeds 3"),
    )
    _add_opts(p, SWEEP_OPTS, {**tq, "sweep": sweep_app.SWEEP_DEFAULTS})
    add_family_arguments(p)
    _add_common(p, quick="tiny settings for smoke tests (metadqn train's QUICK_TRAIN sizes, 2 seeds)",
                set_example="--set meta.hidden=[32,32] or --set hparams.epsilon=0.3")
    p.set_defaults(func=sweep_app.cmd_sweep, opts=SWEEP_OPTS)

    # ---- families
    p = sub.add_parser(
        "families", formatter_class=fmt, help="list the task families and their varying fields",
        description="List the registered task families: environment, varying fields and their ranges, "
                    "discount, episode length and split sizes (--json: also meta_defaults and budgets); "
                    "with --family-file / --family-module, the user's family too.",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of one line per family [default: off]")
    add_family_arguments(p, listing=True)
    p.set_defaults(func=families.cmd_families, opts=())
    return parser


# --------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``metadqn``: returns the exit status (0 ok, 2 usage, config, run-folder,
    checkpoint or operating-system error, 3 training diverged, 130 interrupted); every error is
    one ``error:`` line on stderr."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("METADQN_DEBUG", "") not in ("", "0")
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help(sys.stderr)
            return 2
        args.argv = argv  # recorded in a run folder's lock file
        return int(args.func(args, _flag_layer(args, args.opts)) or 0)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # ConfigError, CheckpointError and other invalid values
        if debug:
            raise
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early (e.g. '| head'): stop quietly (Python's SIGPIPE recipe)
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 1
    except OSError as e:  # e.g. a folder that became read-only or a full disk while writing
        if debug:
            raise
        print(f"error: {_os_error(e)}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        if type(e).__name__ != "DivergenceError" or debug:
            raise
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 3


def _os_error(e: OSError) -> str:
    """One line for an operating-system error: its reason and the path(s) it names."""
    why = e.strerror or " ".join(str(e).split()) or type(e).__name__
    paths = [repr(str(p)) for p in (e.filename, e.filename2) if p is not None]
    return f"{why}: {' -> '.join(paths)}" if paths else why


# --------------------------------------------------------------------------- docs
def render_cli_docs() -> str:
    """``docs/CLI.md``: the help of every command (from the parser, with the live defaults), the
    default config and the deployment example (:func:`metadqn_jax.app.docs.reference`)."""
    from metadqn_jax.app.docs import live_defaults, reference

    return reference(build_parser(width=DOCS_WIDTH, defaults=live_defaults()))


def render_command_defaults() -> str:
    """The text of :mod:`metadqn_jax.app.command_defaults` for the current defaults."""
    from metadqn_jax.app.docs import command_defaults_source

    return command_defaults_source()


def write_cli_docs(path: str | Path = DOCS_PATH) -> Path:
    """Writes ``docs/CLI.md`` (to ``path``) and :mod:`metadqn_jax.app.command_defaults`."""
    DEFAULTS_PATH.write_text(render_command_defaults())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_cli_docs())
    return path


if __name__ == "__main__":  # python -m metadqn_jax.cli --write-docs
    if sys.argv[1:] == ["--write-docs"]:
        print(write_cli_docs())
        raise SystemExit(0)
    raise SystemExit(main())
