"""The generated reference of the command line: ``docs/CLI.md`` (rendered from the parser by
:func:`metadqn_jax.cli.render_cli_docs`) and :mod:`metadqn_jax.app.command_defaults` (the
resolved default configuration of every command, which the parser's help reads).

Both are written by ``python -m metadqn_jax.cli --write-docs``; tests/test_cli.py checks that
the files in the repository are current.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import textwrap
from typing import Any

from metadqn_jax import deploy
from metadqn_jax.app import presets
from metadqn_jax.runs.configs import DQNRunConfig, RegressRunConfig, SweepConfig, TrainConfig

__all__ = ["reference", "dedent_doc", "live_defaults", "command_defaults_source"]


def reference(parser: argparse.ArgumentParser) -> str:
    """``docs/CLI.md``: the help of every command of ``parser``, the default config and the
    deployment example (from :mod:`metadqn_jax.deploy`'s docstring)."""
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
        *dedent_doc(deploy.__doc__),
    ]
    return "\n".join(out).rstrip() + "\n"


def dedent_doc(doc: str) -> list[str]:
    """A module docstring (reST) as Markdown lines: ``x`` and :func:`x` -> `x`, ``::`` blocks fenced."""
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


def live_defaults() -> dict[str, dict[str, Any]]:
    """``{command: <its config>.resolve(presets.DEFAULT_<COMMAND>).to_dict()}``."""
    return {"train": TrainConfig.resolve(presets.DEFAULT_TRAIN).to_dict(),
            "dqn": DQNRunConfig.resolve(presets.DEFAULT_DQN).to_dict(),
            "regress": RegressRunConfig.resolve(presets.DEFAULT_REGRESS).to_dict(),
            "sweep": SweepConfig.resolve(presets.DEFAULT_SWEEP).to_dict()}


def command_defaults_source() -> str:
    """The text of :mod:`metadqn_jax.app.command_defaults` for the current defaults."""
    def literal(value: Any, indent: int = 0) -> str:  # dicts one key a line, strings double-quoted
        if isinstance(value, str):
            return json.dumps(value)
        if isinstance(value, list):
            return "[" + ", ".join(literal(v) for v in value) + "]"
        if not isinstance(value, dict):
            return repr(value)
        pad = " " * (indent + 4)
        items = "".join(f"{pad}{literal(k)}: {literal(v, indent + 4)},\n" for k, v in value.items())
        return "{\n" + items + " " * indent + "}"

    live = live_defaults()
    text = literal(live)
    assert ast.literal_eval(text) == live, "a default is not a Python literal"
    return ('"""The resolved default configuration of every command, as plain data: what\n'
            "``<its config>.resolve(presets.DEFAULT_<COMMAND>).to_dict()`` returns. ``metadqn --help`` shows\n"
            "these defaults without importing jax.\n\n"
            "Generated with docs/CLI.md by ``python -m metadqn_jax.cli --write-docs``; do not edit\n"
            '(tests/test_cli.py checks that it is current).\n"""\n\n'
            f"COMMAND_DEFAULTS: dict[str, dict] = {text}\n")
