"""Run logging: ``metrics.csv`` and TensorBoard event files (tensorboardX), plus readers.

Everything here runs on the host at chunk boundaries with plain Python floats: logging never
touches a jitted function, so it never triggers a recompilation.

* :class:`CSVLog` appends rows to one CSV file (fixed header; missing and ``None`` values
  empty). On resume, :meth:`CSVLog.truncate` drops the rows an interrupted run wrote after its
  last checkpoint.
* :class:`TBLog` wraps ``tensorboardX.SummaryWriter`` (``purge_step`` on resume, so
  TensorBoard discards the events after the checkpoint) and flushes after every chunk.
* :func:`read_csv` reads a CSV log back.
"""

from __future__ import annotations

import csv
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tensorboardX import SummaryWriter

from metadqn_jax.meta.defaults import ALGORITHMS


class CSVLog:
    """Appends rows (mappings) to ``path`` with the columns ``fields``; safe to share between the
    threads of algorithms that train at once (one lock serialises the writes and truncations)."""

    def __init__(self, path: str | Path, fields: Sequence[str]):
        self.path = Path(path)
        self.fields = list(fields)
        self._lock = threading.Lock()

    def write(self, row: Mapping[str, Any]) -> None:
        with self._lock:
            self._write(row)

    def _write(self, row: Mapping[str, Any]) -> None:
        new = not self.path.exists() or self.path.stat().st_size == 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore", restval="")
            if new:
                w.writeheader()
            w.writerow({k: _fmt(v) for k, v in row.items()})

    def truncate(self, keep: Callable[[dict[str, str]], bool]) -> int:
        """Rewrites the file keeping only rows with ``keep(row)``; returns the rows dropped."""
        with self._lock:
            return self._truncate(keep)

    def _truncate(self, keep: Callable[[dict[str, str]], bool]) -> int:
        if not self.path.exists():
            return 0
        rows = read_csv(self.path)
        kept = [r for r in rows if keep(r)]
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore", restval="")
            w.writeheader()
            for r in kept:
                w.writerow(r)
        tmp.replace(self.path)
        return len(rows) - len(kept)


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return repr(v)
    return v


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """The rows of a CSV file as dicts of strings."""
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))


class TBLog:
    """A tensorboardX ``SummaryWriter`` in ``logdir`` (created lazily, flushed on every write)."""

    def __init__(self, logdir: str | Path, *, purge_step: int | None = None):
        self.logdir = Path(logdir)
        self.purge_step = purge_step
        self._writer = None

    @property
    def writer(self):
        if self._writer is None:
            self.logdir.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(str(self.logdir), purge_step=self.purge_step, flush_secs=30)
        return self._writer

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        for tag, v in values.items():
            if v is None:
                continue
            self.writer.add_scalar(tag, float(v), global_step=int(step))
        self.writer.flush()

    def text(self, tag: str, text: str, step: int = 0) -> None:
        self.writer.add_text(tag, text, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


# ------------------------------------------------------------------- meta-training rows
# metrics.csv of 'metadqn train': a cell is blank where the value would mislead (train_return
# before any training episode has ended; pre/post_adapt_loss of a learner without an inner loop)
META_CSV_FIELDS = ("algorithm", "meta_step", "env_steps", "query_loss", "pre_adapt_loss", "post_adapt_loss",
                   "train_return", "grad_norm", "val_return", "wall_s")

# what each metrics.csv column of 'metadqn train' measures (one row per chunk and algorithm; the
# loss columns and train_return are means over the chunk's meta-steps, and over the meta-training
# seeds when several train as one program). README "Command line" repeats it.
META_CSV_DOC: dict[str, str] = {
    "algorithm": f"the learner ({', '.join(ALGORITHMS)})",
    "meta_step": "meta-steps taken at the end of the chunk",
    "env_steps": "environment steps simulated so far (meta_step x num_tasks x envs_per_task x rollout_steps, "
                 "x2 with query_source 'adapted')",
    "query_loss": "the meta-objective: TD loss on the query after adaptation",
    "pre_adapt_loss": "TD loss on the support before the inner loop (blank: no inner loop)",
    "post_adapt_loss": "TD loss on the support after the inner loop (blank: no inner loop)",
    "train_return": "undiscounted return of the last finished episode of each meta-training environment, on "
                    "TRAINING tasks, acting with the behaviour policy that collects the support: epsilon-greedy "
                    "(hparams.epsilon) with the UNADAPTED meta-parameters (context with online_context: on the "
                    "context inferred while acting); not the adapted policy, not greedy, and only episodes that "
                    "ended count (blank until one has)",
    "grad_norm": "global norm of the meta-gradient before clipping",
    "val_return": "the few-shot return the exported policy is selected on: mean undiscounted GREEDY return "
                  "(2 episodes) on validation.num_tasks tasks of the VALIDATION split (disjoint from the train "
                  "and test tasks), after the learner's own adaptation on support_size fresh transitions, no "
                  "fine-tuning (or averaged over validation.budgets); blank on chunks without a validation",
    "wall_s": "seconds since this algorithm's training started in this process (compilation included)",
}


def meta_row_scalars(row: Mapping[str, Any]) -> dict[str, float]:
    """TensorBoard tags of a :func:`metadqn_jax.driver.train_meta` history row (logged against
    environment steps, ``row["env_steps"]``): ``train/<metric>``, ``validation/return``,
    ``progress/env_steps``, ``progress/wall_s`` and ``progress/meta_step``. ``None`` values
    (blank cells) and ``diverged_step`` (a marker, not a metric) are left out."""
    out = {}
    for k, v in row.items():
        if k in ("algorithm", "diverged_step") or v is None:
            continue
        if k == "val_return":
            out["validation/return"] = v
        elif k in ("env_steps", "wall_s", "meta_step"):
            out[f"progress/{k}"] = v
        else:
            out[f"train/{k}"] = v
    return out
