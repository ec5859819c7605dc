"""The ``metadqn`` command line (also ``python -m metadqn_jax``).

Commands: ``train`` (meta-train, then the few-shot comparison on held-out tasks), ``evaluate``
(few-shot evaluation of a saved run), ``dqn`` (single-task DQN), ``regress`` (sinusoid
few-shot regression), ``families`` (the built-in task families). The reference
(``docs/CLI.md``) is generated from the parser by :func:`render_cli_docs`; regenerate it with
``python -m metadqn_jax.cli --write-docs``.

Every user-facing error (bad option or config value, bad run folder or checkpoint) prints one
line ``error: <message>`` on stderr and exits with status 2 (``METADQN_DEBUG=1`` shows the
traceback instead). Results go to stdout, progress and notes to stderr.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from metadqn_jax.app import presets

PROG = "metadqn"
DOCS_PATH = Path(__file__).resolve().parents[1] / "docs" / "CLI.md"
DOCS_WIDTH = 96
# with --resume only these may differ from the run's config.yaml ("section.*": the whole section)
RESUME_MAY_CHANGE = ("meta.num_meta_steps", "few_shot.*", "run.baselines", "run.checkpoint_every", "run.keep")
EVALUATE_MAY_CHANGE = ("few_shot.*", "run.baselines")


class UsageError(Exception):
    """A command-line usage error (unknown option, bad option value)."""


class StopRequested(Exception):
    """``--stop-after`` reached: training stops after saving a checkpoint (a simulated interruption)."""

    def __init__(self, algorithm: str, step: int):
        super().__init__(f"{algorithm} stopped at meta-step {step}")
        self.algorithm, self.step = algorithm, step


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
        "cavia 1.0, else 0.1)", "step size", float, "LR"),
    Opt(("--meta-lr",), "hparams.meta_lr", "meta-optimiser (Adam) learning rate (traced; null = the "
        "algorithm's: context and cavia 3e-3, else 1e-3)", "step size", float, "LR"),
    Opt(("--gamma",), "hparams.gamma", "discount factor (traced; null = the family's)", "per env step",
        float, "G"),
    Opt(("--val-every",), "validation.every", "meta-steps between validations (0: no validation)",
        "meta-steps", int, "N"),
    Opt(("--patience",), "validation.patience", "validations without improvement before early stopping "
        "(0: never stop)", "validations", int, "N"),
    Opt(("--seed",), "run.seed", "seed of meta-training, evaluation and the scratch init", None, int, "S"),
    Opt(("--num-devices",), "run.num_devices", "devices the task axis is sharded over (default: all local "
        "devices; 1: no sharding); meta.num_tasks must be divisible by it", "devices", int, "N"),
    Opt(("--budgets",), "few_shot.budgets", "comma list of adaptation budgets on each test task",
        "env steps", _int_list, "LIST"),
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


def _default_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) if value else "none"
    return str(value)


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
                quick: str | None = None, progress: bool = True,
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


def _defaults() -> dict[str, dict[str, dict]]:
    from metadqn_jax.app.runconfig import DQNRunConfig, RegressRunConfig, TrainConfig

    return {
        "train": TrainConfig.resolve(presets.DEFAULT_TRAIN).to_dict(),
        "dqn": DQNRunConfig.resolve(presets.DEFAULT_DQN).to_dict(),
        "regress": RegressRunConfig.resolve(presets.DEFAULT_REGRESS).to_dict(),
    }


def build_parser(width: int | None = None) -> argparse.ArgumentParser:
    """The ``metadqn`` argument parser (``width``: help text width; None = the terminal's)."""
    from metadqn_jax import __version__

    d = _defaults()
    fmt = _formatter(width)
    tq = d["train"]
    parser = _Parser(
        prog=PROG, formatter_class=fmt,
        description="Meta-learning Deep Q-Networks in JAX over gymnax task families.",
        epilog="Run 'metadqn COMMAND --help' for the options of a command. Errors print one line "
               "'error: ...' and exit with status 2.",
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
            "  config.yaml              the resolved config (what --resume and 'metadqn evaluate' read)\n"
            "  metrics.csv              one row per chunk and algorithm (losses, returns, val_return)\n"
            "  tb/<algorithm>/          TensorBoard event files (tensorboard --logdir OUT/NAME/tb)\n"
            "  checkpoints/<algorithm>/ orbax checkpoints: every --checkpoint-every meta-steps + the end\n"
            "  policy/<algorithm>/      exported meta-parameters (metadqn_jax.load_policy)\n"
            "  few_shot.md/.png/.json   the comparison table, plot and numbers\n\n"
            "examples:\n"
            "  metadqn train                                  # the built-in default\n"
            "  metadqn train --quick --name smoke             # tiny settings, seconds after compiling\n"
            "  metadqn train --algorithm maml,context --meta-steps 500 --oracle\n"
            "  metadqn train --resume runs/smoke              # continue an interrupted run exactly"),
    )
    _add_opts(p, TRAIN_OPTS, tq)
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue the run in RUN_DIR from its latest checkpoints (its config.yaml; only "
                        "--meta-steps, the few-shot options, --baselines/--oracle, --checkpoint-every and "
                        "--keep may change) [default: none]")
    p.add_argument("--stop-after", metavar="STEP", type=_pos_int, default=None,
                   help="stop meta-training at the first chunk boundary >= STEP, after saving a checkpoint, "
                        "and exit (a deliberate interruption; continue with --resume) [default: none; unit: "
                        "meta-steps]")
    _add_common(p, quick="tiny settings for smoke tests (metadqn_jax/app/presets.py QUICK_TRAIN)")
    p.set_defaults(func=cmd_train)

    # ---- evaluate
    p = sub.add_parser(
        "evaluate", formatter_class=fmt, help="few-shot evaluation of a saved run (table + PNG)",
        description=("Few-shot evaluation of the initialisations saved in a 'metadqn train' run folder\n"
                     "(its exported policies; the latest checkpoints for an unfinished run) on held-out tasks.\n"
                     "Writes RUN_DIR/<tag>.md, .png and .json and prints the table."),
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a 'metadqn train' run folder")
    _add_opts(p, EVALUATE_OPTS, None)
    p.add_argument("--tag", metavar="NAME", default="few_shot",
                   help="output file stem inside RUN_DIR [default: few_shot]")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override a few_shot.* field, e.g. --set few_shot.finetune=false [default: none]")
    _add_common(p, config=False, out=False, progress=False)
    p.set_defaults(func=cmd_evaluate)

    # ---- dqn
    p = sub.add_parser(
        "dqn", formatter_class=fmt, help="single-task DQN (one compiled program, vmapped over seeds)",
        description=("Train a DQN on one task: a gymnax environment (--env) or one task of a family\n"
                     "(--family/--task). Writes config.yaml, metrics.csv, tb/, returns.png and dqn.md/.json."),
    )
    _add_opts(p, DQN_OPTS, d["dqn"])
    _add_common(p, quick="tiny settings for smoke tests (presets.QUICK_DQN)", progress=False,
                set_example="--set dqn.hidden=[32,32] or --set hparams.tau=0.99")
    p.set_defaults(func=cmd_dqn)

    # ---- regress
    p = sub.add_parser(
        "regress", formatter_class=fmt, help="sinusoid few-shot regression (MAML paper, section 5.1)",
        description=("Meta-train regressors on sinusoids y = A sin(x - phase) and report the MSE on held-out\n"
                     "sinusoids after K-shot fine-tuning. Writes config.yaml, metrics.csv, tb/, regress.md/.json/.png."),
    )
    _add_opts(p, REGRESS_OPTS, d["regress"])
    _add_common(p, quick="tiny settings for smoke tests (presets.QUICK_REGRESS)",
                set_example="--set regression.hidden=[40,40] or --set eval.inner_lr=0.02")
    p.set_defaults(func=cmd_regress)

    # ---- families
    p = sub.add_parser(
        "families", formatter_class=fmt, help="list the built-in task families and their varying fields",
        description="List the registered task families: environment, varying fields and their ranges, "
                    "discount, episode length and split sizes.",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of one line per family [default: off]")
    p.set_defaults(func=cmd_families)
    return parser


# --------------------------------------------------------------------------- helpers
def _info(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _configure_jax(args: argparse.Namespace) -> None:
    """The persistent compilation cache (see --compile-cache)."""
    import jax

    if getattr(args, "no_compile_cache", False):
        return
    path = getattr(args, "compile_cache", None) or os.environ.get("METADQN_COMPILE_CACHE")
    if not path:
        if jax.config.jax_compilation_cache_dir:
            return  # JAX_COMPILATION_CACHE_DIR is set: respect it
        path = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "metadqn_jax" / "xla"
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # not writable: run without the cache
    jax.config.update("jax_compilation_cache_dir", str(path))


def _run_dir(args: argparse.Namespace, command: str, label: str) -> Path:
    from metadqn_jax.core.validate import ConfigError

    name = args.name or f"{command}-{label}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    if "/" in name or name in ("", ".", ".."):
        raise ConfigError(f"--name must be a plain folder name, got {name!r}")
    run_dir = Path(args.out) / name
    if (run_dir / "config.yaml").exists():
        hint = f"continue it with 'metadqn train --resume {run_dir}' or " if command == "train" else ""
        raise ConfigError(f"run folder {str(run_dir)!r} already exists; {hint}choose another --name")
    return run_dir


def _resolve(cls, args, opts, default_layer, quick_layer, extra_layers=()):
    from metadqn_jax.app.runconfig import load_yaml, parse_overrides

    layers = [default_layer]
    if getattr(args, "quick", False):
        layers.append(quick_layer)
    if getattr(args, "config", None):
        layers.append(load_yaml(args.config))
    layers.append(_flag_layer(args, opts))
    layers.extend(extra_layers)
    layers.append(parse_overrides(args.set or [], cls))
    return cls.resolve(*layers)


def _with_oracle(cfg, args):
    if getattr(args, "oracle", False) and "oracle" not in cfg.run.baselines:
        return type(cfg).resolve(cfg.to_dict(), {"run": {"baselines": [*cfg.run.baselines, "oracle"]}})
    return cfg


def _check_unchanged(old, new, allowed: Sequence[str], what: str) -> None:
    from metadqn_jax.core.validate import ConfigError

    diff = old.diff(new, ignore=allowed)
    if diff:
        key, a, b = diff[0]
        raise ConfigError(f"{what}: {key} is {a!r} in the run's config.yaml and cannot change (requested "
                          f"{b!r}); only {', '.join(allowed)} may")


# --------------------------------------------------------------------------- train
def _restore_meta_checkpoint(ck, cfg_a, validation, program=None):
    """The latest meta-training checkpoint in ``ck`` (``{"state": MetaState, "early_stop":
    EarlyStop}``), validated against ``cfg_a`` and ``validation``; settings a checkpoint predates
    count as their defaults (:func:`metadqn_jax.app.runconfig.field_defaults`)."""
    import jax

    from metadqn_jax.app.runconfig import field_defaults, meta_config_dict
    from metadqn_jax.meta import make_meta_step
    from metadqn_jax.driver import init_early_stop

    program = program or make_meta_step(cfg_a)
    abstract = jax.eval_shape(program.init, jax.random.key(0), cfg_a.hparams())
    like = {"state": abstract, "early_stop": jax.eval_shape(init_early_stop, abstract)}
    with ck:
        return ck.restore(like, config=meta_config_dict(cfg_a, validation), absent=field_defaults())


class _Trainer:
    """``compare(..., train=...)`` hook: meta-trains one algorithm with checkpoints, logging and
    exact resume (restores MetaState + EarlyStop, continues at the same chunk boundaries)."""

    def __init__(self, cfg, run_dir: Path, *, resume: bool, stop_after: int | None, progress: bool):
        from metadqn_jax.app.logs import META_CSV_FIELDS, CSVLog

        self.cfg, self.run_dir, self.resume = cfg, run_dir, resume
        self.stop_after, self.progress = stop_after, progress
        self.csv = CSVLog(run_dir / "metrics.csv", META_CSV_FIELDS)
        self.last_checkpoint: dict[str, int] = {}
        self._restored: dict = {}

    def __call__(self, cfg_a, key):
        import jax

        from metadqn_jax.checkpoint import Checkpointer, CheckpointError
        from metadqn_jax.app.runconfig import meta_config_dict
        from metadqn_jax.deploy import export_policy
        from metadqn_jax.app.logs import TBLog, meta_row_scalars
        from metadqn_jax.meta import make_meta_step
        from metadqn_jax.driver import TrainResult, train_meta

        algo = cfg_a.algorithm
        run = self.cfg.run
        validation = self.cfg.validation
        program = make_meta_step(cfg_a)
        hp = cfg_a.hparams()
        expected = meta_config_dict(cfg_a, validation)
        ck = Checkpointer(self.run_dir / "checkpoints" / algo, keep=run.keep)
        state = early_stop = None
        start = 0
        latest = ck.latest_step()
        if latest is not None:
            if not self.resume:
                raise CheckpointError(f"{ck.directory} already holds checkpoints; continue with --resume")
            restored = self.restore(cfg_a, program)
            state, early_stop = restored.tree["state"], restored.tree["early_stop"]
            start = restored.step
            _info(f"{algo}: resuming from the checkpoint at meta-step {start} ({ck.directory})")
            extra = restored.info.get("extra") or {}
            if extra.get("stopped_early"):
                _info(f"{algo}: stopped early at meta-step {start} (validation patience); not continued")
                res = TrainResult(state, early_stop, [], True)
                self._export(export_policy, cfg_a, res)
                ck.close()
                return res
        else:
            if self.resume:
                _info(f"{algo}: no checkpoint yet; training from the start")
            # jitted: bit-identical to train_meta's eager init, and compiled (and cached) at once
            state = jax.jit(program.init)(key, hp)
        self.csv.truncate(lambda r: r.get("algorithm") != algo or int(r.get("meta_step") or 0) <= start)
        # on resume TensorBoard discards what an interrupted run logged after the checkpoint
        tb = TBLog(self.run_dir / "tb" / algo, purge_step=start + 1 if self.resume else None)
        last_saved = start
        self.last_checkpoint[algo] = latest if latest is not None else -1

        def callback(state, early_stop, row):
            nonlocal last_saved
            step = int(row["meta_step"])
            self.csv.write({"algorithm": algo, **row})
            tb.scalars(meta_row_scalars(row), step)
            stopped_early = bool(validation.patience) and "val_return" in row and \
                int(early_stop.bad_validations) >= validation.patience
            finished = step >= cfg_a.num_meta_steps or stopped_early
            every = run.checkpoint_every
            due = bool(every) and step // every > last_saved // every
            stop_now = self.stop_after is not None and step >= self.stop_after and not finished
            if due or finished or stop_now:
                ck.save(step, {"state": state, "early_stop": early_stop}, config=expected,
                        extra={"finished": finished, "stopped_early": stopped_early,
                               "num_meta_steps": cfg_a.num_meta_steps, "algorithm": algo})
                last_saved = step
                self.last_checkpoint[algo] = step
            if stop_now:
                raise StopRequested(algo, step)

        try:
            res = train_meta(cfg_a, key, hp, validation=validation, state=state, early_stop=early_stop,
                             callback=callback, progress=self.progress, program=program,
                             num_devices=self.cfg.run.num_devices)
        finally:
            tb.close()
            ck.close()
        self._export(export_policy, cfg_a, res)
        return res

    def restore(self, cfg_a, program=None):
        """The latest checkpoint of ``cfg_a.algorithm`` (None if there is none), validated against
        the config (format, settings, shapes)."""
        from metadqn_jax.checkpoint import Checkpointer

        algo = cfg_a.algorithm
        if algo in self._restored:
            return self._restored.pop(algo)
        ck = Checkpointer(self.run_dir / "checkpoints" / algo, keep=self.cfg.run.keep)
        if not ck.directory.exists():
            return None
        if ck.latest_step() is None and all(".orbax-checkpoint-tmp" in p.name for p in ck.directory.iterdir()):
            return None  # nothing saved yet (or only a failed / interrupted first save)
        return _restore_meta_checkpoint(ck, cfg_a, self.cfg.validation, program)

    def preflight(self) -> None:
        """Validates every algorithm's checkpoints before anything runs (fail fast, one error)."""
        from metadqn_jax.compare import config_for

        for algo in self.cfg.run.trained:
            restored = self.restore(config_for(self.cfg.meta, algo))
            if restored is not None:
                self._restored[algo] = restored

    def _export(self, export_policy, cfg_a, res) -> None:
        es = res.early_stop
        best = float(es.best_return)
        export_policy(self.run_dir, cfg_a, es.best_params, es.best_target, step=int(res.state.step),
                      extra={"algorithm": cfg_a.algorithm, "meta_steps": int(res.state.step),
                             "best_step": int(es.best_step), "val_return": best if best == best else None,
                             "stopped_early": bool(res.stopped_early)})


def _write_few_shot(run_dir: Path, tag: str, cfg, comp, *, trained: Sequence[str]) -> str:
    """Writes <tag>.md/.png/.json (+ TensorBoard scalars) and returns the printed text."""
    from metadqn_jax import report
    from metadqn_jax.app.logs import TBLog

    results = comp.results
    fs = cfg.few_shot
    title = (f"{cfg.meta.family}: greedy return after adapting on held-out test tasks "
             f"({fs.num_tasks} tasks x {fs.seeds} seeds, mean +- 95% CI)")
    times = {k: f"{comp.train_wall_s[k]:.0f} s" for k in comp.train_wall_s if k in trained}
    table = report.markdown_table(results, title=title, extra={"train time": times} if times else None)
    verdict = verdict_line(results, cfg.run.algorithms)
    text = table + ("\n\n" + verdict if verdict else "") + "\n"
    (run_dir / f"{tag}.md").write_text(text)
    report.plot(results, run_dir / f"{tag}.png", title=f"{cfg.meta.family}: few-shot adaptation")
    data = {
        "results": report.to_dict(results),
        "returns": {k: r.returns.tolist() for k, r in results.items()},
        "train_wall_s": dict(comp.train_wall_s),
        "verdict": verdict,
        "config": cfg.to_dict(),
    }
    (run_dir / f"{tag}.json").write_text(json.dumps(data, indent=1))
    tb = TBLog(run_dir / "tb" / tag, purge_step=0)  # a re-evaluation replaces the previous one
    for j, b in enumerate(fs.budgets):
        tb.scalars({f"{tag}/{name}": float(r.mean[j]) for name, r in results.items()}, b)
    tb.text(f"{tag}/table", table)
    tb.close()
    return text


def verdict_line(results, algorithms: Sequence[str]) -> str:
    """One line per meta-learned init: at how many budgets it beats every baseline.

    "Significantly" means the 95 % CI of the difference to every baseline, paired by (task,
    seed) run (:func:`metadqn_jax.report.paired_difference`; ``compare`` evaluates every init
    on the same runs), lies above 0. Results without per-run returns fall back to
    non-overlapping CI bands.
    """
    import numpy as np

    from metadqn_jax import report

    baselines = [n for n in results if n not in algorithms and n != "oracle"]
    if not baselines:
        return ""
    lines = []
    budgets = next(iter(results.values())).budgets
    for a in algorithms:
        if a not in results:
            continue
        ra = results[a]
        paired = ra.returns is not None and all(results[n].returns is not None for n in baselines)
        if paired:
            lower = np.min([np.subtract(*report.paired_difference(ra, results[n])) for n in baselines], axis=0)
        else:
            lower = np.min([(ra.mean - ra.ci95) - (results[n].mean + results[n].ci95) for n in baselines], axis=0)
        gains = np.asarray(ra.mean) - np.max([results[n].mean for n in baselines], axis=0)
        best = int(np.argmax(gains))
        how = "paired 95% CI of the difference above 0" if paired else "95% CIs separated"
        lines.append(f"{a} vs. {', '.join(baselines)}: higher mean return at {int((gains > 0).sum())}/{len(budgets)} "
                     f"budgets (significantly, {how}, at {int((lower > 0).sum())}/{len(budgets)}); largest margin "
                     f"{gains[best]:+.2f} at {budgets[best]} env steps.")
    return "\n".join(lines)


def cmd_train(args: argparse.Namespace) -> int:
    from metadqn_jax.core.validate import ConfigError
    from metadqn_jax.app.runconfig import TrainConfig, dump_yaml, read_run_config

    if args.resume:
        for flag, given in (("--quick", args.quick), ("--config", args.config), ("--name", args.name)):
            if given:
                raise ConfigError(f"{flag} cannot be combined with --resume (the run's config.yaml is used)")
        run_dir = Path(args.resume)
        stored = read_run_config(run_dir, TrainConfig)
        cfg = _resolve(TrainConfig, args, TRAIN_OPTS, stored.to_dict(), None)
        cfg = _with_oracle(cfg, args)
        _check_unchanged(stored, cfg, RESUME_MAY_CHANGE, "--resume")
    else:
        cfg = _with_oracle(_resolve(TrainConfig, args, TRAIN_OPTS, presets.DEFAULT_TRAIN, presets.QUICK_TRAIN),
                           args)
        run_dir = None
    if args.print_config:
        sys.stdout.write(cfg.to_yaml())
        return 0
    if run_dir is None:
        run_dir = _run_dir(args, "train", cfg.meta.family)
    _configure_jax(args)
    from metadqn_jax.compare import compare
    from metadqn_jax.sharding import task_mesh

    # device count, divisibility, micro-batching: fail before any compute or folder
    task_mesh(cfg.meta.num_tasks, cfg.run.num_devices, cfg.meta.task_micro_batch)

    trainer = _Trainer(cfg, run_dir, resume=bool(args.resume), stop_after=args.stop_after,
                       progress=not args.no_progress)
    if args.resume:
        trainer.preflight()
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_yaml(cfg, run_dir / "config.yaml")
    _info(f"run folder: {run_dir}")
    t0 = time.perf_counter()
    try:
        comp = compare(cfg.meta, cfg.run.trained, cfg.few_shot, seed=cfg.run.seed, validation=cfg.validation,
                       scratch="scratch" in cfg.run.baselines, oracle="oracle" in cfg.run.baselines,
                       progress=not args.no_progress, log=_info, train=trainer)
    except StopRequested as stop:
        _info(f"stopped after meta-step {stop.step} of {stop.algorithm} (--stop-after); checkpoint saved. "
              f"Continue with: metadqn train --resume {run_dir}")
        return 0
    except KeyboardInterrupt:
        saved = ", ".join(f"{a} at meta-step {s}" for a, s in trainer.last_checkpoint.items() if s >= 0)
        _info(f"interrupted; last checkpoints: {saved or 'none'}. Continue with: metadqn train --resume {run_dir}")
        return 130
    text = _write_few_shot(run_dir, "few_shot", cfg, comp, trained=cfg.run.trained)
    print(text, end="")
    print(f"\nrun folder: {run_dir} (few_shot.md/.png/.json, metrics.csv, tb/, checkpoints/, policy/); "
          f"total {time.perf_counter() - t0:.0f} s")
    return 0


# --------------------------------------------------------------------------- evaluate
def cmd_evaluate(args: argparse.Namespace) -> int:
    from metadqn_jax.core.validate import ConfigError
    from metadqn_jax.app.runconfig import TrainConfig, parse_overrides, read_run_config

    run_dir = Path(args.run_dir)
    stored = read_run_config(run_dir, TrainConfig)
    layers = [stored.to_dict(), _flag_layer(args, EVALUATE_OPTS), parse_overrides(args.set or [], TrainConfig)]
    cfg = _with_oracle(TrainConfig.resolve(*layers), args)
    _check_unchanged(stored, cfg, EVALUATE_MAY_CHANGE, "evaluate")
    missing = [a for a in cfg.run.trained if a not in stored.run.trained]
    if missing:
        raise ConfigError(f"run.baselines: {missing[0]} was not trained in {str(run_dir)!r}")
    _configure_jax(args)
    import jax.numpy as jnp

    from metadqn_jax.compare import compare
    from metadqn_jax.driver import EarlyStop, TrainResult

    def restore(cfg_a, key):
        params, target, note = _load_init(run_dir, cfg, cfg_a)
        if note:
            _info(note)
        es = EarlyStop(jnp.float32(jnp.nan), jnp.int32(-1), jnp.int32(0), params, target)
        return TrainResult(None, es, [], False)

    comp = compare(cfg.meta, cfg.run.trained, cfg.few_shot, seed=cfg.run.seed, validation=cfg.validation,
                   scratch="scratch" in cfg.run.baselines, oracle="oracle" in cfg.run.baselines,
                   progress=False, log=_info, train=restore)
    comp = comp._replace(train_wall_s={})
    text = _write_few_shot(run_dir, args.tag, cfg, comp, trained=())
    print(text, end="")
    print(f"\nwrote {run_dir / (args.tag + '.md')}, .png and .json")
    return 0


def _load_init(run_dir: Path, cfg, cfg_a) -> tuple[Any, Any, str]:
    """The meta-parameters of one trained algorithm: its exported policy, else (an unfinished
    run) the best parameters in its latest checkpoint."""
    from metadqn_jax.checkpoint import Checkpointer, CheckpointError
    from metadqn_jax.deploy import load_policy, policy_dir

    algo = cfg_a.algorithm
    if policy_dir(run_dir, algo).exists():
        pol = load_policy(run_dir, algo)
        return pol.meta_params, pol.meta_target, ""
    ck = Checkpointer(run_dir / "checkpoints" / algo, keep=cfg.run.keep)
    if ck.latest_step() is None:
        raise CheckpointError(f"{algo} has neither an exported policy nor a checkpoint in {str(run_dir)!r}")
    r = _restore_meta_checkpoint(ck, cfg_a, cfg.validation)
    es = r.tree["early_stop"]
    if int(es.best_step) >= 0:
        params, target = es.best_params, es.best_target
    else:
        params, target = r.tree["state"].params, r.tree["state"].target_params
    return params, target, (f"note: no exported policy for {algo} (unfinished run?); evaluating the best "
                            f"parameters of its latest checkpoint (meta-step {r.step})")


# --------------------------------------------------------------------------- dqn
def cmd_dqn(args: argparse.Namespace) -> int:
    from metadqn_jax.app.runconfig import DQNRunConfig, dump_yaml

    cfg = _resolve(DQNRunConfig, args, DQN_OPTS, presets.DEFAULT_DQN, presets.QUICK_DQN)
    if args.print_config:
        sys.stdout.write(cfg.to_yaml())
        return 0
    run_dir = _run_dir(args, "dqn", cfg.run.family or cfg.dqn.env_id)
    _configure_jax(args)
    import jax
    import jax.numpy as jnp
    import numpy as np

    from metadqn_jax import dqn, envs
    from metadqn_jax.app.logs import CSVLog, TBLog

    run_dir.mkdir(parents=True, exist_ok=True)
    dump_yaml(cfg, run_dir / "config.yaml")
    _info(f"run folder: {run_dir}")
    if cfg.run.family is not None:
        from metadqn_jax import tasks

        fam = tasks.get_family(cfg.run.family)
        env_params = jax.tree.map(lambda x: x[cfg.run.task], fam.tasks(cfg.run.split))
        where = f"{cfg.run.family} {cfg.run.split} task {cfg.run.task}"
    else:
        env_params = envs.make_env(cfg.dqn.env_id)[1]
        where = cfg.dqn.env_id
    train = dqn.make_train(cfg.dqn, env_params)
    hp = cfg.dqn.hparams()
    keys = jax.vmap(jax.random.key)(jnp.arange(cfg.run.seed, cfg.run.seed + cfg.run.seeds))
    _info(f"training DQN on {where}: {cfg.dqn.total_steps} env steps x {cfg.run.seeds} seed(s) as one "
          "compiled program (no progress bar: results appear when it finishes)")
    t0 = time.perf_counter()
    _, metrics = jax.jit(jax.vmap(train, in_axes=(0, None)))(keys, hp)
    metrics = jax.tree.map(np.asarray, metrics)
    wall = time.perf_counter() - t0
    csv_log = CSVLog(run_dir / "metrics.csv", ("seed", "env_steps", "eval_return", "train_return", "loss"))
    for i in range(cfg.run.seeds):
        tb = TBLog(run_dir / "tb" / f"seed_{cfg.run.seed + i}")
        for j in range(metrics.env_steps.shape[1]):
            row = {"seed": cfg.run.seed + i, "env_steps": int(metrics.env_steps[i, j]),
                   "eval_return": float(metrics.eval_return[i, j]),
                   "train_return": float(metrics.train_return[i, j]), "loss": float(metrics.loss[i, j])}
            csv_log.write(row)
            tb.scalars({"eval/return": row["eval_return"], "train/return": row["train_return"],
                        "train/loss": row["loss"]}, row["env_steps"])
        tb.close()
    solved = np.asarray(dqn.first_solved_step(jax.tree.map(jnp.asarray, metrics), cfg.dqn.solve_threshold))
    ev = metrics.eval_return
    n = ev.shape[0]
    ci = 1.96 * ev.std(0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros(ev.shape[1])
    lines = [f"**DQN on {where}: greedy return ({cfg.dqn.eval_episodes} episodes, mean +- 95% CI over "
             f"{n} seed(s))**", "", "| env steps | eval return |", "|---|---|"]
    for j in range(ev.shape[1]):
        lines.append(f"| {int(metrics.env_steps[0, j])} | {ev[:, j].mean():.2f} ± {ci[j]:.2f} |")
    solved_txt = [int(s) if s >= 0 else None for s in solved]
    lines += ["", f"first evaluation >= {cfg.dqn.solve_threshold:g}: {solved_txt} (env steps per seed; "
                  f"None: never); wall time {wall:.0f} s (compile + train)"]
    text = "\n".join(lines) + "\n"
    (run_dir / "dqn.md").write_text(text)
    (run_dir / "dqn.json").write_text(json.dumps({
        "env_steps": metrics.env_steps[0].tolist(), "eval_return": ev.tolist(),
        "train_return": metrics.train_return.tolist(), "loss": metrics.loss.tolist(),
        "first_solved_step": solved_txt, "wall_s": wall, "config": cfg.to_dict()}, indent=1))
    _plot_curves(run_dir / "returns.png", metrics.env_steps[0], ev, f"DQN on {where}", "env steps",
                 "greedy return")
    print(text, end="")
    print(f"\nrun folder: {run_dir}")
    return 0


def _plot_curves(path: Path, x, ys, title: str, xlabel: str, ylabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ys = np.asarray(ys)
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=110)
    for y in ys:
        ax.plot(x, y, color="tab:blue", alpha=0.25, lw=1)
    ax.plot(x, ys.mean(0), color="tab:blue", lw=2, label=f"mean of {ys.shape[0]}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------- regress
def cmd_regress(args: argparse.Namespace) -> int:
    from metadqn_jax.app.runconfig import RegressRunConfig, dump_yaml

    cfg = _resolve(RegressRunConfig, args, REGRESS_OPTS, presets.DEFAULT_REGRESS, presets.QUICK_REGRESS)
    if args.print_config:
        sys.stdout.write(cfg.to_yaml())
        return 0
    run_dir = _run_dir(args, "regress", "sinusoid")
    _configure_jax(args)
    import jax
    import numpy as np

    from metadqn_jax import regression
    from metadqn_jax.app.logs import CSVLog, TBLog

    run_dir.mkdir(parents=True, exist_ok=True)
    dump_yaml(cfg, run_dir / "config.yaml")
    _info(f"run folder: {run_dir}")
    family = regression.SinusoidTasks()
    ev = cfg.eval
    tasks = family.eval_tasks(seed=ev.seed, n=ev.num_tasks)
    eval_key = jax.random.fold_in(jax.random.key(ev.seed), 7)
    csv_log = CSVLog(run_dir / "metrics.csv", ("algorithm", "iteration", "pre_adapt_loss", "post_adapt_loss",
                                               "query_loss", "wall_s"))
    results: dict[str, dict] = {}
    walls: dict[str, float] = {}
    for algo in cfg.run.algorithms:
        rc = cfg.for_algorithm(algo)
        trainer = regression.make_meta_train(rc)
        tb = TBLog(run_dir / "tb" / algo)
        bar = None
        if not args.no_progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=rc.num_iterations, desc=f"regress {algo}", unit="it", dynamic_ncols=True)
        t0 = time.perf_counter()

        def callback(step, m, algo=algo, tb=tb, bar=bar, t0=t0):
            row = {k: float(np.mean(np.asarray(v))) for k, v in m._asdict().items()}
            csv_log.write({"algorithm": algo, "iteration": step, **row, "wall_s": time.perf_counter() - t0})
            tb.scalars({f"train/{k}": v for k, v in row.items()}, step)
            if bar is not None:
                bar.set_postfix({"query_mse": f"{row['query_loss']:.3f}"})
                bar.update(step - bar.n)

        try:
            state, _ = trainer.run(callback=callback)
        finally:
            if bar is not None:
                bar.close()
            tb.close()
        walls[algo] = time.perf_counter() - t0
        results[algo] = regression.evaluate(state.params, tasks, eval_key, shots=ev.shots, steps=ev.steps,
                                            inner_lr=ev.inner_lr)
        _info(f"{algo}: trained and evaluated in {time.perf_counter() - t0:.0f} s")
    lines = [f"**Sinusoid regression: MSE on held-out tasks after K-shot SGD fine-tuning (lr {ev.inner_lr:g}; "
             f"{ev.num_tasks} tasks, mean +- 95% CI)**", "",
             "| algorithm | K | " + " | ".join(f"{s} steps" for s in ev.steps) + " | train time |",
             "|---|---:|" + "---:|" * len(ev.steps) + "---:|"]
    for algo, by_k in results.items():
        for k in ev.shots:
            cells = [f"{by_k[k][s]['mean']:.3f} ± {by_k[k][s]['ci95']:.3f}" for s in ev.steps]
            lines.append(f"| {algo} | {k} | " + " | ".join(cells) + f" | {walls[algo]:.0f} s |")
    text = "\n".join(lines) + "\n"
    (run_dir / "regress.md").write_text(text)
    (run_dir / "regress.json").write_text(json.dumps({
        "mse": {a: {str(k): {str(s): v for s, v in by_s.items()} for k, by_s in by_k.items()}
                for a, by_k in results.items()},
        "train_wall_s": walls, "config": cfg.to_dict()}, indent=1))
    _plot_regress(run_dir / "regress.png", results, ev)
    print(text, end="")
    print(f"\nrun folder: {run_dir}")
    return 0


def _plot_regress(path: Path, results: dict, ev) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=110)
    for algo, by_k in results.items():
        for k in ev.shots:
            means = [by_k[k][s]["mean"] for s in ev.steps]
            cis = [by_k[k][s]["ci95"] for s in ev.steps]
            ax.errorbar(ev.steps, means, yerr=cis, marker="o", ms=4, capsize=3, label=f"{algo}, K={k}")
    ax.set_xlabel("SGD steps on the K support points")
    ax.set_ylabel("MSE on held-out sinusoids")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------- families
def cmd_families(args: argparse.Namespace) -> int:
    from metadqn_jax import tasks

    fams = [tasks.get_family(n) for n in tasks.list_families()]
    if args.json:
        out = [{"name": f.name, "env_id": f.env_id, "varying_fields": list(f.varying_fields),
                "gamma": float(f.gamma), "episode_length": f.episode_length,
                "splits": {s: f.num_tasks(s) for s in ("train", "val", "test")},
                "description": f.describe()} for f in fams]
        print(json.dumps(out, indent=1))
    else:
        for f in fams:
            print(f.describe())
    return 0


# --------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``metadqn``: returns the exit status (0 ok, 2 usage/config/checkpoint error,
    130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("METADQN_DEBUG", "") not in ("", "0")
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help(sys.stderr)
            return 2
        return int(args.func(args) or 0)
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


# --------------------------------------------------------------------------- docs
def render_cli_docs() -> str:
    """``docs/CLI.md``: the help of every command (from the parser), the default config and
    the deployment example."""
    from metadqn_jax import deploy
    from metadqn_jax.app.runconfig import TrainConfig

    parser = build_parser(width=DOCS_WIDTH)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = [
        "# `metadqn` command-line reference",
        "",
        "<!-- Generated from the argparse parser by metadqn_jax.cli.render_cli_docs(); do not edit.",
        "     Regenerate: python -m metadqn_jax.cli --write-docs -->",
        "",
        "`metadqn` is installed with the package (`python -m metadqn_jax` is the same). Every option's",
        "help ends with its default and unit. Errors print one line `error: <message>` on stderr and",
        "exit with status 2; results go to stdout, progress and notes to stderr.",
        "",
        "```text",
        parser.format_help().rstrip(),
        "```",
    ]
    for name, p in sub.choices.items():
        out += ["", f"## `metadqn {name}`", "", "```text", p.format_help().rstrip(), "```"]
    out += [
        "",
        "## Config files",
        "",
        "`--config FILE.yaml` takes the same sections as the `config.yaml` a run writes. Static settings",
        "(`meta`, `dqn`) are kept apart from traced hyper-parameters (`hparams`: changing one never",
        "recompiles). Invalid values fail before anything is compiled, with one message naming the",
        "field, e.g. `error: meta.num_tasks must be a positive integer, got 0`. The resolved default of",
        "`metadqn train` (metadqn_jax/app/presets.py over the dataclass defaults):",
        "",
        "```yaml",
        TrainConfig.resolve(presets.DEFAULT_TRAIN).to_yaml().rstrip(),
        "```",
        "",
        "## Checkpoints and resume",
        "",
        "`checkpoints/<algorithm>/<step>/` are orbax checkpoints (no pickles) of everything meta-training",
        "carries: parameters, meta-target, optimiser state, PRNG key (as key data), per-task replay",
        "buffers and environment states, the step counter and the early-stopping state, plus JSON",
        "metadata with a format tag and version. They are written every `--checkpoint-every` meta-steps",
        "(at chunk boundaries) and at the end, the last `--keep` are kept, and a save is atomic: a failed",
        "save never replaces a good checkpoint. `metadqn train --resume RUN_DIR` continues from the latest",
        "checkpoints and ends with bit-identical parameters to an uninterrupted run on the CPU. A missing,",
        "corrupt or foreign checkpoint, or a config that does not match it, is one `error:` line.",
        "",
        "## Deployment",
        "",
        *_dedent_doc(deploy.__doc__),
    ]
    return "\n".join(out).rstrip() + "\n"


def _dedent_doc(doc: str) -> list[str]:
    """A module docstring (reST) as Markdown lines: ``x`` and :func:`x` -> `x`, ``::`` blocks fenced."""
    import re
    import textwrap

    text = textwrap.dedent("\n".join(doc.strip().splitlines()[1:]))
    text = re.sub(r":(?:func|class|mod|meth|data):`~?([^`]+)`", r"`\1`", text)
    text = re.sub(r"``([^`]+)``", r"`\1`", text)
    lines, in_code = [], False
    for line in text.strip().splitlines():
        if line.rstrip().endswith("::"):
            lines.append(line.rstrip()[:-1])
            lines += ["", "```python"]
            in_code = True
            continue
        if in_code and line and not line.startswith("    "):
            lines += ["```", ""]
            in_code = False
        if in_code:
            if line.strip() or (lines and lines[-1] != "```python"):
                lines.append(line[4:])
            continue
        lines.append(line)
    if in_code:
        while lines and not lines[-1].strip():
            lines.pop()
        lines.append("```")
    return lines


def write_cli_docs(path: str | Path = DOCS_PATH) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_cli_docs())
    return path


if __name__ == "__main__":  # python -m metadqn_jax.cli --write-docs
    if sys.argv[1:] == ["--write-docs"]:
        print(write_cli_docs())
        raise SystemExit(0)
    raise SystemExit(main())
