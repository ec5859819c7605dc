"""The ``metadqn`` command line (also ``python -m metadqn_jax``): the parser and :func:`main`.

Commands: ``train`` (meta-train, then the few-shot comparison on held-out tasks), ``evaluate``
(few-shot evaluation of a saved run), ``dqn`` (single-task DQN), ``regress`` (sinusoid
few-shot regression), ``sweep`` (a hyper-parameter grid as one vmapped program, chosen on
validation tasks), ``families`` (the registered task families). Their bodies live in
:mod:`metadqn_jax.app` (one module per command, imported when the command runs: building the
parser and ``--help`` import no JAX); the options are :mod:`metadqn_jax.app.options`. The
generated reference is ``docs/CLI.md`` (:func:`render_cli_docs`; regenerate it with
``python -m metadqn_jax.cli --write-docs``).

Every user-facing error (bad option or config value, bad run folder or checkpoint, an
operating-system error such as a read-only folder) prints one line ``error: <message>`` on
stderr and exits with status 2; training that diverged (a non-finite loss, gradient norm or
parameter) prints one ``error:`` line and exits with status 3 (``METADQN_DEBUG=1`` shows the
traceback instead). Results go to stdout, progress and notes to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from metadqn_jax import __version__
from metadqn_jax.app.command_defaults import COMMAND_DEFAULTS
from metadqn_jax.app.options import (
    DQN_OPTS,
    EVALUATE_OPTS,
    REGRESS_OPTS,
    SWEEP_OPTS,
    TRAIN_OPTS,
    add_common,
    add_family_arguments,
    add_opts,
    default_text,
    flag_layer,
    positive_int_arg,
)
from metadqn_jax.runs.layout import SWEEP_LAYOUT, TRAIN_LAYOUT

PROG = "metadqn"
DOCS_PATH = Path(__file__).resolve().parents[1] / "docs" / "CLI.md"
DEFAULTS_PATH = Path(__file__).resolve().parent / "app" / "command_defaults.py"
DOCS_WIDTH = 96


class UsageError(Exception):
    """A command-line usage error (unknown option, bad option value)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump; main() prints "error: ..."
        raise UsageError(f"{message} (see '{self.prog} --help')")



def _command(module: str, name: str) -> Callable[[argparse.Namespace, dict], int]:
    """The body ``module.name(args, flags)`` of a command, imported when the command runs (the
    command modules import JAX; building the parser and ``--help`` must not)."""

    def run(args: argparse.Namespace, flags: dict) -> int:
        return getattr(importlib.import_module(module), name)(args, flags)

    return run


def _formatter(width: int | None):
    def make(prog):
        return argparse.RawDescriptionHelpFormatter(prog, width=width, max_help_position=30)

    return make


def _layout(rows: Sequence[tuple[str, str]]) -> str:
    return "".join(f"  {path:<24} {what}\n" for path, what in rows)


def build_parser(width: int | None = None, defaults: dict[str, dict] | None = None) -> argparse.ArgumentParser:
    """The ``metadqn`` argument parser.

    Args:
      width: help text width (None: the terminal's).
      defaults: ``{command: resolved default config dict}`` shown in the help (None: the
        generated :data:`~metadqn_jax.app.command_defaults.COMMAND_DEFAULTS`).
    """
    d = COMMAND_DEFAULTS if defaults is None else defaults
    fmt = _formatter(width)
    parser = _Parser(
        prog=PROG, formatter_class=fmt,
        description="Meta-learning Deep Q-Networks in JAX over gymnax task families.",
        epilog="Run 'metadqn COMMAND --help' for the options of a command. Errors print one line "
               "'error: ...' and exit with status 2; training that diverged, with status 3.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for add in (_add_train, _add_evaluate, _add_dqn, _add_regress, _add_sweep, _add_families):
        add(sub, d, fmt)
    return parser


def _add_train(sub, d: dict[str, dict], fmt) -> None:
    """``metadqn train``."""
    tq = d["train"]
    p = sub.add_parser(
        "train", formatter_class=fmt, help="meta-train, then compare few-shot adaptation on held-out tasks",
        description=(
            "Meta-train on a task family, then adapt every initialisation (the meta-learned ones, the\n"
            "pretrained multi-task DQN, a scratch init, optionally the oracle) on held-out test tasks and\n"
            "print the table of greedy return vs. adaptation budget.\n\n"
            f"With no arguments it runs the built-in default (metadqn_jax/app/presets.py): family\n"
            f"{tq['meta']['family']}, algorithm {default_text(tq['run']['algorithms'])} vs. "
            f"{default_text(tq['run']['baselines'])}, {tq['meta']['num_meta_steps']} meta-steps,\n"
            f"budgets {default_text(tq['few_shot']['budgets'])} env steps, {tq['few_shot']['num_tasks']} "
            f"test tasks x {tq['few_shot']['seeds']} seeds."),
        epilog=(
            "config precedence: dataclass defaults < preset (--quick) < --config FILE < flags < --set\n\n"
            "run folder OUT/NAME/:\n"
            + _layout(TRAIN_LAYOUT) + "\n"
            "examples:\n"
            "  metadqn train                                  # the built-in default\n"
            "  metadqn train --quick --name smoke             # tiny settings, seconds after compiling\n"
            "  metadqn train --algorithm maml,context --meta-steps 500 --oracle\n"
            "  metadqn train --resume runs/smoke              # continue an interrupted run exactly"),
    )
    add_opts(p, TRAIN_OPTS, tq)
    add_family_arguments(p)
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue the run in RUN_DIR from its latest checkpoints (its config.yaml; only "
                        "--meta-steps, the few-shot options, --baselines/--oracle, --checkpoint-every and "
                        "--keep may change) [default: none]")
    p.add_argument("--stop-after", metavar="STEP", type=positive_int_arg, default=None,
                   help="stop meta-training at the first chunk boundary >= STEP, after saving a checkpoint, "
                        "and exit (a deliberate interruption; continue with --resume) [default: none; unit: "
                        "meta-steps]")
    p.add_argument("--force", action="store_true",
                   help="start even when the configuration's estimated memory exceeds what is available "
                        "(meta.step.memory_bytes; refused by default, before any compute) [default: off]")
    add_common(p, quick="tiny settings for smoke tests (metadqn_jax/app/presets.py QUICK_TRAIN)",
                diverge="keep meta-training after a non-finite loss, gradient norm or parameter, and "
                        "export and evaluate what it gives")
    p.set_defaults(func=_command("metadqn_jax.app.train", "cmd_train"), opts=TRAIN_OPTS)


def _add_evaluate(sub, d: dict[str, dict], fmt) -> None:
    """``metadqn evaluate``."""
    p = sub.add_parser(
        "evaluate", formatter_class=fmt, help="few-shot evaluation of a saved run (table + PNG)",
        description=("Few-shot evaluation of the initialisations saved in a 'metadqn train' run folder\n"
                     "(its exported policies; the latest checkpoints for an unfinished run) on held-out tasks.\n"
                     "Writes RUN_DIR/<tag>.md, .png and .json and prints the table."),
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a 'metadqn train' run folder")
    add_opts(p, EVALUATE_OPTS, None)
    add_family_arguments(p, run=True)
    p.add_argument("--tag", metavar="NAME", default=None,
                   help="output file stem inside RUN_DIR [default: few_shot, or evaluate where train's "
                        "few_shot.md exists: what train wrote is replaced only when asked, --tag few_shot]")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override a few_shot.* field, e.g. --set few_shot.finetune=false [default: none]")
    add_common(p, config=False, out=False, progress=False)
    p.set_defaults(func=_command("metadqn_jax.app.evaluate", "cmd_evaluate"), opts=EVALUATE_OPTS)


def _add_dqn(sub, d: dict[str, dict], fmt) -> None:
    """``metadqn dqn``."""
    p = sub.add_parser(
        "dqn", formatter_class=fmt, help="single-task DQN (one compiled program, vmapped over seeds)",
        description=("Train a DQN on one task: a gymnax environment (--env) or one task of a family\n"
                     "(--family/--task). Writes config.yaml, metrics.csv, tb/, returns.png and dqn.md/.json."),
    )
    add_opts(p, DQN_OPTS, d["dqn"])
    add_family_arguments(p)
    add_common(p, quick="tiny settings for smoke tests (presets.QUICK_DQN)", progress=False,
                diverge="keep training after a non-finite loss or parameter and write the results anyway",
                set_example="--set dqn.hidden=[32,32] or --set hparams.tau=0.99")
    p.set_defaults(func=_command("metadqn_jax.app.dqn", "cmd_dqn"), opts=DQN_OPTS)


def _add_regress(sub, d: dict[str, dict], fmt) -> None:
    """``metadqn regress``."""
    p = sub.add_parser(
        "regress", formatter_class=fmt, help="sinusoid few-shot regression (MAML paper, section 5.1)",
        description=("Meta-train regressors on sinusoids y = A sin(x - phase) and report the MSE on held-out\n"
                     "sinusoids after K-shot fine-tuning. Writes config.yaml, metrics.csv, tb/, regress.md/.json/.png."),
    )
    add_opts(p, REGRESS_OPTS, d["regress"])
    add_common(p, quick="tiny settings for smoke tests (presets.QUICK_REGRESS)",
                diverge="keep meta-training after a non-finite loss or parameter and report what it gives",
                set_example="--set regression.hidden=[40,40] or --set eval.inner_lr=0.02")
    p.set_defaults(func=_command("metadqn_jax.app.regress", "cmd_regress"), opts=REGRESS_OPTS)


def _add_sweep(sub, d: dict[str, dict], fmt) -> None:
    """``metadqn sweep``."""
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
            + _layout(SWEEP_LAYOUT) + "\n"
            "examples:\n"
            "  metadqn sweep --quick --grid hparams.tau=0.9,0.99 --grid hparams.meta_lr=0.001,0.003 --meta-seeds 2\n"
            "  metadqn sweep --family pointnav-goal --algorithm context --grid meta_lr=3e-4,1e-3,3e-3 --meta-seeds 3"),
    )
    add_opts(p, SWEEP_OPTS, d["sweep"])
    add_family_arguments(p)
    add_common(p, quick="tiny settings for smoke tests (metadqn train's QUICK_TRAIN sizes, 2 seeds)",
                set_example="--set meta.hidden=[32,32] or --set hparams.epsilon=0.3")
    p.set_defaults(func=_command("metadqn_jax.app.sweep", "cmd_sweep"), opts=SWEEP_OPTS)


def _add_families(sub, d: dict[str, dict], fmt) -> None:
    """``metadqn families``."""
    p = sub.add_parser(
        "families", formatter_class=fmt, help="list the task families and their varying fields",
        description="List the registered task families: environment, varying fields and their ranges, "
                    "discount, episode length and split sizes (--json: also meta_defaults and budgets); "
                    "with --family-file / --family-module, the user's family too.",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of one line per family [default: off]")
    add_family_arguments(p, listing=True)
    p.set_defaults(func=_command("metadqn_jax.app.families", "cmd_families"), opts=())


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
        return int(args.func(args, flag_layer(args, args.opts)) or 0)
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
    from metadqn_jax.app.docs import live_defaults, reference  # imports JAX: not at start-up

    return reference(build_parser(width=DOCS_WIDTH, defaults=live_defaults()))


def render_command_defaults() -> str:
    """The text of :mod:`metadqn_jax.app.command_defaults` for the current defaults."""
    from metadqn_jax.app.docs import command_defaults_source  # imports JAX: not at start-up

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
