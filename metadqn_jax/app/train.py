"""``metadqn train``: meta-train every algorithm with checkpoints, logging and exact resume,
then compare the few-shot adaptation of every initialisation on held-out tasks.

A run folder (:mod:`metadqn_jax.runs.folder`) is created atomically and locked for the whole
command (``--resume`` locks the existing one): a second writer is refused. It gets
``config.yaml`` first, then per chunk a ``metrics.csv`` row and TensorBoard scalars per
algorithm (against environment steps), checkpoints every ``run.checkpoint_every`` meta-steps
and at the end, the exported policies, and finally the few-shot results
(:mod:`metadqn_jax.app.results`).

``--resume`` first restores and checks the latest checkpoint of every algorithm (its
:class:`~metadqn_jax.meta.MetaState` and :class:`~metadqn_jax.driver.EarlyStop`; a broken
latest step falls back to the newest intact one and is moved aside), and only then rewrites
anything; it continues at the same chunk boundaries, so the result is the uninterrupted run's.

Exit statuses: 0 (also after ``--stop-after``), 2 for a usage, config, run-folder or checkpoint
error (raised by the caller, :func:`metadqn_jax.cli.main`), :data:`EXIT_DIVERGED` (3) when
meta-training diverged, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from metadqn_jax import driver
from metadqn_jax.app import presets
from metadqn_jax.app.common import (
    apply_family_options,
    check_memory,
    check_unchanged,
    compiling,
    configure_jax,
    info,
    resolve_config,
    with_oracle,
)
from metadqn_jax.app.logs import META_CSV_FIELDS, CSVLog, TBLog, meta_row_scalars
from metadqn_jax.app.results import write_few_shot
from metadqn_jax.checkpoint import Checkpointer, CheckpointError
from metadqn_jax.compare import (
    Cancelled,
    StopComparison,
    compare,
    config_for,
    protocol_text,
)
from metadqn_jax.core.compile import jit
from metadqn_jax.core.errors import ConfigError
from metadqn_jax.deploy import export_policy
from metadqn_jax.fewshot import default_oracle_cache
from metadqn_jax.meta import MetaHParams, make_meta_step
from metadqn_jax.meta.defaults import ALGORITHM_SETTINGS
from metadqn_jax.progress import ChunkBar
from metadqn_jax.runs import folder, layout
from metadqn_jax.runs.configs import TrainConfig, field_defaults, meta_config_dict
from metadqn_jax.runs.record import config_text, read_run_config, write_config
from metadqn_jax.sharding import task_mesh

__all__ = ["RESUME_MAY_CHANGE", "EXIT_DIVERGED", "StopRequested", "MetaTrainer", "restore_meta_checkpoint",
           "cmd_train"]

# with --resume only these may differ from the run's config.yaml ("section.*": the whole section)
RESUME_MAY_CHANGE = ("meta.num_meta_steps", "few_shot.*", "run.baselines", "run.checkpoint_every", "run.keep")
EXIT_DIVERGED = 3  # the exit status of a run stopped by the divergence guard


class StopRequested(StopComparison):
    """``--stop-after`` reached: training stops after saving a checkpoint (a simulated interruption;
    the other algorithms training at the same time stop at the same meta-step)."""

    def __init__(self, algorithm: str, step: int):
        super().__init__(f"{algorithm} stopped at meta-step {step}")
        self.algorithm, self.step = algorithm, step


def restore_meta_checkpoint(ck, cfg_a, validation, program=None, *, broken: list | None = None,
                            meta_seeds: int = 1):
    """The latest meta-training checkpoint in ``ck``, validated against the run's settings.

    Args:
      ck: a :class:`~metadqn_jax.checkpoint.Checkpointer` of one algorithm (closed afterwards).
      cfg_a: the algorithm's :class:`~metadqn_jax.meta.MetaConfig`.
      validation: the run's :class:`~metadqn_jax.driver.ValidationConfig`.
      program: ``make_meta_step(cfg_a)`` if already built.
      broken: ``None``: the latest step must read back. A list: the newest step that reads back
        is restored instead, and ``(step, reason)`` of every broken step is appended to it
        (:meth:`~metadqn_jax.checkpoint.Checkpointer.restore_latest_intact`; nothing is moved).
      meta_seeds: the run's ``run.meta_seeds``: above 1, every leaf carries a leading seed axis.

    Returns:
      A :class:`~metadqn_jax.checkpoint.Restored` whose tree is ``{"state": MetaState,
      "early_stop": EarlyStop}``. Settings a checkpoint predates count as their defaults
      (:func:`metadqn_jax.runs.configs.field_defaults`).

    Raises:
      CheckpointError: missing, corrupt (with ``broken``: every step), foreign, or written
        with other settings.
    """
    program = program or make_meta_step(cfg_a)
    abstract = jax.eval_shape(driver.seeded_init(program, meta_seeds > 1), meta_keys(meta_seeds), cfg_a.hparams())
    like = {"state": abstract, "early_stop": jax.eval_shape(driver.init_early_stop, abstract)}
    config = meta_config_dict(cfg_a, validation)
    with ck:
        if broken is None:
            return ck.restore(like, config=config, absent=field_defaults())
        restored, found = ck.restore_latest_intact(like, config=config, absent=field_defaults())
        broken.extend(found)
        return restored


def meta_keys(meta_seeds: int):
    """A key (``meta_seeds == 1``) or ``[N]`` keys: what :func:`metadqn_jax.driver.seeded_init` takes."""
    key = jax.random.key(0)
    return key if meta_seeds == 1 else jax.random.split(key, meta_seeds)


def _no_inner_loss(algorithm: str) -> bool:
    """Whether ``algorithm`` has no inner loop (its "pre/post-adaptation losses" would be a copy
    of the query loss): the learners without ``inner_steps`` among their settings (context)."""
    return "inner_steps" not in ALGORITHM_SETTINGS.get(algorithm, ("inner_steps",))


def _logged_row(algorithm: str, state, row: Mapping[str, Any]) -> dict[str, Any]:
    """The ``metrics.csv`` / TensorBoard values of a :func:`~metadqn_jax.driver.train_meta` row:
    blank (``None``) where the row's number would mislead: ``train_return`` while no training
    episode has ended (the meta-step reports 0.0 then), the pre/post-adaptation losses of a
    learner without an inner loop. Reads ``state.carry.episodes`` on the host (no compilation)."""
    out = dict(row)
    if out.get("train_return") == 0.0 and not np.asarray(state.carry.episodes).any():
        out["train_return"] = None
    if _no_inner_loss(algorithm):
        out["pre_adapt_loss"] = out["post_adapt_loss"] = None
    return out


class MetaTrainer:
    """The ``compare(..., train=...)`` hook of ``metadqn train``
    (:class:`~metadqn_jax.compare.TrainHook`): meta-trains one algorithm with checkpoints,
    logging and exact resume (restores MetaState + EarlyStop, continues at the same chunk
    boundaries), then exports its policy. Several algorithms may train at once, each in its own
    thread (the shared ``metrics.csv`` is written under a lock); when the comparison stops (an
    interruption, another algorithm's error or ``--stop-after``) each saves a checkpoint at its
    next chunk edge first.

    Args:
      cfg: the run's :class:`~metadqn_jax.runs.configs.TrainConfig`.
      run_dir: the run folder (locked by the caller).
      resume: continue from the folder's checkpoints (otherwise existing checkpoints are an error);
        call :meth:`preflight` first.
      stop_after: raise :class:`StopRequested` at the first chunk boundary >= this meta-step,
        after saving a checkpoint.
      progress: show the tqdm bar.
      allow_divergence: ``train_meta(allow_divergence=...)``: keep training after a non-finite
        loss, gradient norm or parameter (default: :class:`~metadqn_jax.core.divergence.DivergenceError`
        propagates; its chunk is never logged or checkpointed, and nothing is exported).
    """

    def __init__(self, cfg, run_dir: Path, *, resume: bool, stop_after: int | None, progress: bool,
                 allow_divergence: bool = False):
        self.cfg, self.run_dir, self.resume = cfg, run_dir, resume
        self.stop_after, self.progress = stop_after, progress
        self.allow_divergence = allow_divergence
        self.csv = CSVLog(layout.metrics_path(run_dir), META_CSV_FIELDS)
        self.last_checkpoint: dict[str, int] = {}  # algorithm -> meta-step of its latest checkpoint (-1: none)
        self._restored: dict = {}  # algorithm -> Restored, from preflight()
        self._broken: dict[str, list] = {}  # algorithm -> [(step, reason)] found by restore()

    def __call__(self, cfg_a, key, *, callback=None, position: int | None = None):
        algo = cfg_a.algorithm
        program = make_meta_step(cfg_a)
        hp = cfg_a.hparams()
        ck = Checkpointer(layout.checkpoint_dir(self.run_dir, algo), keep=self.cfg.run.keep)
        try:
            restored = self._restore_to_continue(cfg_a, program, ck)
            if restored is None:  # jitted: bit-identical to train_meta's eager init, compiled (and cached) at once
                state = jit(driver.seeded_init(program, self.cfg.run.meta_seeds > 1))(key, hp)
                early_stop, start = None, 0
            else:
                state, early_stop, start = restored.tree["state"], restored.tree["early_stop"], restored.step
            if restored is not None and (restored.info.get("extra") or {}).get("stopped_early"):
                info(f"{algo}: stopped early at meta-step {start} (validation patience); not continued")
                res = driver.TrainResult(state, early_stop, [], True)
            else:
                res = self._train(cfg_a, program, ck, key, hp, state, early_stop, start, callback, position)
        except driver.DivergenceError as e:
            e.algorithm = algo  # which one, for the command's error line (several may train at once)
            raise
        finally:
            ck.close()
        self._export(cfg_a, res)
        info(f"{algo}: evaluating on {protocol_text(self.cfg.few_shot)}")
        return res

    def saved_text(self) -> str:
        """``"context at meta-step 15, pretrained at meta-step 10"``: each trained algorithm's
        latest checkpoint (in the run's order)."""
        steps = self.last_checkpoint
        return ", ".join(f"{a} at meta-step {steps[a]}" for a in self.cfg.run.trained if steps.get(a, -1) >= 0)

    def _restore_to_continue(self, cfg_a, program, ck):
        """The checkpoint to continue from (``None``: train from the start); records its step as
        the algorithm's latest checkpoint."""
        algo = cfg_a.algorithm
        if ck.latest_step() is None:
            if self.resume:
                info(f"{algo}: no checkpoint yet; training from the start")
            self.last_checkpoint[algo] = -1
            return None
        if not self.resume:
            raise CheckpointError(f"{ck.directory} already holds checkpoints; continue with --resume")
        restored = self.restore(cfg_a, program)
        info(f"{algo}: resuming from the checkpoint at meta-step {restored.step} ({ck.directory})")
        self.last_checkpoint[algo] = restored.step
        return restored

    def _train(self, cfg_a, program, ck, key, hp, state, early_stop, start: int, callback, position):
        """:func:`~metadqn_jax.driver.train_meta` from ``state`` (meta-step ``start``), every chunk
        logged (metrics.csv, TensorBoard against environment steps, the bar) and checkpointed as
        the run's settings say (:class:`_ChunkLog`)."""
        algo = cfg_a.algorithm
        self.csv.truncate(lambda r: r.get("algorithm") != algo or int(r.get("meta_step") or 0) <= start)
        # on resume TensorBoard discards what an interrupted run logged after the checkpoint
        tb = TBLog(layout.tb_dir(self.run_dir, algo),
                   purge_step=start * cfg_a.env_steps_per_meta_step + 1 if self.resume else None)
        if start == 0:
            tb.text("config", _config_markdown(self.cfg, cfg_a))
        bar = ChunkBar(f"meta-train {algo}", cfg_a.num_meta_steps, start, position) if self.progress else None
        log = _ChunkLog(self, cfg_a, ck, tb, bar, start, callback)
        try:
            with warnings.catch_warnings():  # reported as one line by the callback instead
                warnings.filterwarnings("ignore", message="meta-training diverged", category=RuntimeWarning)
                return driver.train_meta(cfg_a, key, hp, validation=self.cfg.validation, state=state,
                                         early_stop=early_stop, callback=log, progress=False, program=program,
                                         num_devices=self.cfg.run.num_devices, allow_divergence=self.allow_divergence)
        finally:
            if bar is not None:
                bar.close()
            tb.close()

    def restore(self, cfg_a, program=None):
        """The latest checkpoint of ``cfg_a.algorithm`` (None if there is none), validated against
        the config (format, settings, shapes); with ``resume``, the newest intact one (broken
        steps are recorded for :meth:`preflight`)."""
        algo = cfg_a.algorithm
        if algo in self._restored:
            return self._restored.pop(algo)
        ck = Checkpointer(layout.checkpoint_dir(self.run_dir, algo), keep=self.cfg.run.keep)
        if not ck.directory.exists():
            return None
        if ck.latest_step() is None and not ck.broken_steps() and \
                all(".orbax-checkpoint-tmp" in p.name for p in ck.directory.iterdir()):
            return None  # nothing saved yet (or only a failed / interrupted first save)
        broken: list = []
        restored = restore_meta_checkpoint(ck, cfg_a, self.cfg.validation, program,
                                           broken=broken if self.resume else None,
                                           meta_seeds=self.cfg.run.meta_seeds)
        if broken:
            self._broken[algo] = broken
        return restored

    def preflight(self) -> None:
        """Restores and checks every algorithm's checkpoint before anything is written (fail
        fast, one error): its settings and shapes, the run's fixed settings against those it
        was trained with (an edited ``config.yaml`` is refused), and ``meta.num_meta_steps``
        not below its step. Then moves broken steps aside (one line each), so that their step
        numbers can be saved again.

        Raises:
          ConfigError, CheckpointError: the first problem found.
        """
        for algo in self.cfg.run.trained:
            restored = self.restore(config_for(self.cfg.meta, algo))
            if restored is None:
                continue
            self._restored[algo] = restored
            where = f"the {algo} checkpoint (meta-step {restored.step})"
            recorded = (restored.info.get("extra") or {}).get("run_config")
            if isinstance(recorded, Mapping):  # written by a version that records it
                check_unchanged(recorded, self.cfg.to_dict(), RESUME_MAY_CHANGE, "--resume", old_name=where,
                                new_name="the run's config.yaml")
            if self.cfg.meta.num_meta_steps < restored.step:
                raise ConfigError(f"--resume: meta.num_meta_steps is {self.cfg.meta.num_meta_steps} but {where} "
                                  f"is past it; it can only grow (--meta-steps {restored.step} or more)")
        for algo, broken in self._broken.items():
            ck = Checkpointer(layout.checkpoint_dir(self.run_dir, algo))
            for step, why in broken:
                moved = ck.set_aside(step)
                info(f"{algo}: checkpoint step {step} is broken ({why}); moved aside to {moved.name}")
        self._broken.clear()

    def all_finished(self) -> bool:
        """After :meth:`preflight`: every trained algorithm has a checkpoint that finished its run
        (all ``meta.num_meta_steps``, or stopped early by validation)."""
        for algo in self.cfg.run.trained:
            restored = self._restored.get(algo)
            extra = (restored.info.get("extra") or {}) if restored is not None else {}
            if restored is None or not (extra.get("finished") or restored.step >= self.cfg.meta.num_meta_steps):
                return False
        return True

    def _export(self, cfg_a, res) -> None:
        """Exports the best validated parameters; with several meta-training seeds, those of the
        seed with the best validation return (chosen on validation tasks only; the few-shot
        table reports every seed)."""
        es, state = res.early_stop, res.state
        extra = {"algorithm": cfg_a.algorithm}
        if self.cfg.run.meta_seeds > 1:
            val = np.asarray(es.best_return, np.float64)
            i = int(np.nanargmax(val)) if np.isfinite(val).any() else 0
            extra.update(meta_seed=self.cfg.run.seed + i,
                         val_returns=[float(v) if v == v else None for v in val])
            es, state = jax.tree.map(lambda x: x[i], (es, state))
        best = float(es.best_return)
        export_policy(self.run_dir, cfg_a, es.best_params, es.best_target, step=int(state.step),
                      extra={**extra, "meta_steps": int(state.step), "best_step": int(es.best_step),
                             "val_return": best if best == best else None, "stopped_early": bool(res.stopped_early)})


class _ChunkLog:
    """The ``train_meta`` callback of :class:`MetaTrainer`: after every chunk, one ``metrics.csv``
    row and TensorBoard scalars (:func:`_logged_row`), the bar, one warning line on the first
    diverged chunk (only with ``allow_divergence``), and a checkpoint every
    ``run.checkpoint_every`` meta-steps, at the end (or when validation patience stops the run),
    at ``--stop-after`` (then :class:`StopRequested`) and when the comparison stops (``callback``,
    compare's, raises :class:`~metadqn_jax.compare.Cancelled`; raised again after the save)."""

    def __init__(self, trainer: MetaTrainer, cfg_a, ck: Checkpointer, tb: TBLog, bar: ChunkBar | None, start: int,
                 callback=None):
        self.trainer, self.cfg_a, self.ck, self.tb, self.bar = trainer, cfg_a, ck, tb, bar
        self.callback = callback
        self.last_saved, self.warned = start, False
        self.expected = meta_config_dict(cfg_a, trainer.cfg.validation)
        self.record = trainer.cfg.to_dict()  # the run's settings, checked against config.yaml on --resume

    def __call__(self, state, early_stop, row) -> None:
        trainer, cfg_a, algo = self.trainer, self.cfg_a, self.cfg_a.algorithm
        step = int(row["meta_step"])
        if "diverged_step" in row and not self.warned:  # only with allow_divergence
            self.warned = True
            info(f"warning: {algo}: meta-training diverged at meta-step {row['diverged_step']} (a non-finite "
                 "loss, gradient norm or parameter); training on (--keep-going-on-divergence)")
        logged = _logged_row(algo, state, row)
        trainer.csv.write({"algorithm": algo, **logged})
        self.tb.scalars(meta_row_scalars(logged), int(row["env_steps"]))
        if self.bar is not None:
            self.bar.chunk(row)
        patience = trainer.cfg.validation.patience
        stopped_early = bool(patience) and "val_return" in row and \
            int(np.min(np.asarray(early_stop.bad_validations))) >= patience  # every seed
        finished = step >= cfg_a.num_meta_steps or stopped_early
        every = trainer.cfg.run.checkpoint_every
        due = bool(every) and step // every > self.last_saved // every
        stop_now = trainer.stop_after is not None and step >= trainer.stop_after and not finished
        cancelled = None
        try:
            if self.callback is not None:
                self.callback(state, early_stop, row)
        except Cancelled as e:
            cancelled = e
        if due or finished or stop_now or cancelled is not None:
            self.ck.save(step, {"state": state, "early_stop": early_stop}, config=self.expected,
                         extra={"finished": finished, "stopped_early": stopped_early,
                                "num_meta_steps": cfg_a.num_meta_steps, "algorithm": algo, "run_config": self.record})
            self.last_saved = step
            trainer.last_checkpoint[algo] = step
        if stop_now:
            raise StopRequested(algo, step)
        if cancelled is not None:
            raise cancelled


def _config_markdown(cfg, cfg_a) -> str:
    """The TensorBoard text of an algorithm's run: its resolved hyper-parameters and settings
    (a table) and the run's config.yaml."""
    rows = [f"| hparams.{name} | {cfg_a.setting(name)} |" for name in MetaHParams._fields]
    settings = meta_config_dict(cfg_a, cfg.validation)
    rows += [f"| {section}.{name} | {value} |" for section in ("meta", "validation")
             for name, value in settings[section].items()]
    rows.append(f"| meta.num_meta_steps | {cfg_a.num_meta_steps} |")
    table = "\n".join([f"**{cfg_a.algorithm}: resolved settings**", "", "| setting | value |", "|---|---|", *rows])
    yaml_text = "\n".join("    " + line for line in config_text(cfg).splitlines())
    return f"{table}\n\n**config.yaml**\n\n{yaml_text}\n"


def cmd_train(args: argparse.Namespace, flags: Mapping[str, Any]) -> int:
    """``metadqn train`` (``flags``: the config layer of the options given). Returns the exit
    status: 0 (also after ``--stop-after``), :data:`EXIT_DIVERGED` when meta-training diverged
    (one ``error:`` line; nothing exported or evaluated from the diverged parameters), 130
    when interrupted.

    Raises:
      ConfigError, CheckpointError: a usage, config, run-folder or checkpoint error, before
        any computation where it can be known then (the run folder is locked and checked for
        writing, and on ``--resume`` every checkpoint restored and checked, first).
    """
    if args.resume:
        for flag, given in (("--quick", args.quick), ("--config", args.config), ("--name", args.name)):
            if given:
                raise ConfigError(f"{flag} cannot be combined with --resume (the run's config.yaml is used)")
        # a family module / file only registers (the run's config.yaml names the family and holds its
        # definition, which wins)
        apply_family_options(args, None)
        run_dir = Path(args.resume)
        stored = read_run_config(run_dir, TrainConfig)
        cfg = resolve_config(TrainConfig, args, flags, stored.as_layer(), None)
        cfg = with_oracle(cfg, args)
        check_unchanged(stored, cfg, RESUME_MAY_CHANGE, "--resume")
    else:
        flags = {k: dict(v) for k, v in flags.items()}
        apply_family_options(args, flags, "meta.family")  # --family-file / --family-module: the family, unless --family
        cfg = with_oracle(resolve_config(TrainConfig, args, flags, presets.DEFAULT_TRAIN, presets.QUICK_TRAIN), args)
        run_dir = None
    if args.print_config:
        sys.stdout.write(config_text(cfg))  # what config.yaml will hold, the family's definition too
        return 0
    if run_dir is None:
        run_dir = folder.new_run_dir(args.out, args.name, "train", cfg.meta.family)
    configure_jax(args)
    # device count, divisibility, micro-batching: fail before any compute or folder
    task_mesh(cfg.meta.num_tasks, cfg.run.num_devices, cfg.meta.task_micro_batch)
    check_memory(cfg.meta, cfg.run.meta_seeds, bool(getattr(args, "force", False)))
    argv = getattr(args, "argv", None)
    lock = folder.open_run_dir(run_dir, argv) if args.resume else folder.create_run_dir(run_dir, "train", argv)
    try:
        with compiling(cfg.run.fast_compile):
            return _train(args, cfg, run_dir)
    finally:
        lock.release()


def _train(args: argparse.Namespace, cfg, run_dir: Path) -> int:
    """The body of :func:`cmd_train` once the run folder is locked."""
    trainer = MetaTrainer(cfg, run_dir, resume=bool(args.resume), stop_after=args.stop_after,
                          progress=not args.no_progress,
                          allow_divergence=bool(getattr(args, "keep_going_on_divergence", False)))
    if args.resume:
        trainer.preflight()  # nothing in the folder is rewritten before this passes
        results = layout.output_path(run_dir, "few_shot", ".md")
        if trainer.all_finished() and results.exists():  # a finished run: its results stand, bytes unchanged
            info(f"{run_dir} is finished (every algorithm trained its {cfg.meta.num_meta_steps} meta-steps or "
                 f"stopped early) and evaluated; nothing to do (extend it with --meta-steps N; re-evaluate "
                 f"with metadqn evaluate {run_dir} --tag NAME). Its results ({results.name}):")
            _print(results.read_text())
            return 0
    write_config(run_dir, cfg)
    info(f"run folder: {run_dir}")
    t0 = time.perf_counter()
    try:
        comp = compare(cfg.meta, cfg.run.trained, cfg.few_shot, seed=cfg.run.seed, validation=cfg.validation,
                       scratch="scratch" in cfg.run.baselines, oracle="oracle" in cfg.run.baselines,
                       progress=not args.no_progress, log=info, train=trainer, meta_seeds=cfg.run.meta_seeds,
                       oracle_cache=default_oracle_cache())
    except StopRequested as stop:
        info(f"stopped at meta-step {stop.step} (--stop-after); checkpoints saved: {trainer.saved_text()}. "
             f"Continue with: metadqn train --resume {run_dir}")
        return 0
    except KeyboardInterrupt:
        info(f"interrupted; last checkpoints: {trainer.saved_text() or 'none'}. "
             f"Continue with: metadqn train --resume {run_dir}")
        return 130
    except driver.DivergenceError as e:
        algo = getattr(e, "algorithm", "?")
        last = trainer.last_checkpoint.get(algo, -1)
        kept = f"its last good checkpoint (meta-step {last}) is the latest" if last >= 0 else "no checkpoint of it"
        print(f"error: {algo}: {getattr(e, 'detail', e)}; {kept}; no policy or results were written for it "
              "(lower --meta-lr / --inner-lr, or --keep-going-on-divergence to train on)", file=sys.stderr)
        return EXIT_DIVERGED
    write_few_shot(run_dir, "few_shot", cfg, comp, trained=cfg.run.trained, show=_print)
    print(f"\nrun folder: {run_dir} (few_shot.md/.png/.json, metrics.csv, tb/, checkpoints/, policy/); "
          f"total {time.perf_counter() - t0:.0f} s")
    return 0


def _print(text: str) -> None:
    """Prints a result on stdout at once (before the files holding it are written)."""
    print(text, end="", flush=True)
