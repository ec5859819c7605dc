"""``metadqn train``: meta-train every algorithm with checkpoints, logging and exact resume,
then compare the few-shot adaptation of every initialisation on held-out tasks.

A run folder (:mod:`metadqn_jax.app.runs`) gets ``config.yaml`` first, then per chunk a
``metrics.csv`` row and TensorBoard scalars per algorithm, checkpoints every
``run.checkpoint_every`` meta-steps and at the end, the exported policies, and finally the
few-shot results (:mod:`metadqn_jax.app.results`). ``--resume`` restores the latest checkpoint
of every algorithm (its :class:`~metadqn_jax.meta.MetaState` and
:class:`~metadqn_jax.driver.EarlyStop`) and continues at the same chunk boundaries, so the
result is the uninterrupted run's.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from metadqn_jax.app import presets, runs
from metadqn_jax.app.common import (
    check_unchanged,
    configure_jax,
    info,
    resolve_config,
    with_oracle,
)

__all__ = ["RESUME_MAY_CHANGE", "StopRequested", "MetaTrainer", "restore_meta_checkpoint", "cmd_train"]

# with --resume only these may differ from the run's config.yaml ("section.*": the whole section)
RESUME_MAY_CHANGE = ("meta.num_meta_steps", "few_shot.*", "run.baselines", "run.checkpoint_every", "run.keep")


class StopRequested(Exception):
    """``--stop-after`` reached: training stops after saving a checkpoint (a simulated interruption)."""

    def __init__(self, algorithm: str, step: int):
        super().__init__(f"{algorithm} stopped at meta-step {step}")
        self.algorithm, self.step = algorithm, step


def restore_meta_checkpoint(ck, cfg_a, validation, program=None):
    """The latest meta-training checkpoint in ``ck``, validated against the run's settings.

    Args:
      ck: a :class:`~metadqn_jax.checkpoint.Checkpointer` of one algorithm (closed afterwards).
      cfg_a: the algorithm's :class:`~metadqn_jax.meta.MetaConfig`.
      validation: the run's :class:`~metadqn_jax.driver.ValidationConfig`.
      program: ``make_meta_step(cfg_a)`` if already built.

    Returns:
      A :class:`~metadqn_jax.checkpoint.Restored` whose tree is ``{"state": MetaState,
      "early_stop": EarlyStop}``. Settings a checkpoint predates count as their defaults
      (:func:`metadqn_jax.app.runconfig.field_defaults`).

    Raises:
      CheckpointError: missing, corrupt, foreign, or written with other settings.
    """
    import jax

    from metadqn_jax.app.runconfig import field_defaults, meta_config_dict
    from metadqn_jax.driver import init_early_stop
    from metadqn_jax.meta import make_meta_step

    program = program or make_meta_step(cfg_a)
    abstract = jax.eval_shape(program.init, jax.random.key(0), cfg_a.hparams())
    like = {"state": abstract, "early_stop": jax.eval_shape(init_early_stop, abstract)}
    with ck:
        return ck.restore(like, config=meta_config_dict(cfg_a, validation), absent=field_defaults())


class MetaTrainer:
    """The ``compare(..., train=...)`` hook of ``metadqn train``: meta-trains one algorithm with
    checkpoints, logging and exact resume (restores MetaState + EarlyStop, continues at the same
    chunk boundaries), then exports its policy.

    Args:
      cfg: the run's :class:`~metadqn_jax.app.runconfig.TrainConfig`.
      run_dir: the run folder.
      resume: continue from the folder's checkpoints (otherwise existing checkpoints are an error).
      stop_after: raise :class:`StopRequested` at the first chunk boundary >= this meta-step,
        after saving a checkpoint.
      progress: show the tqdm bar.
    """

    def __init__(self, cfg, run_dir: Path, *, resume: bool, stop_after: int | None, progress: bool):
        from metadqn_jax.app.logs import META_CSV_FIELDS, CSVLog

        self.cfg, self.run_dir, self.resume = cfg, run_dir, resume
        self.stop_after, self.progress = stop_after, progress
        self.csv = CSVLog(runs.metrics_path(run_dir), META_CSV_FIELDS)
        self.last_checkpoint: dict[str, int] = {}  # algorithm -> meta-step of its latest checkpoint (-1: none)
        self._restored: dict = {}

    def __call__(self, cfg_a, key):
        import jax

        from metadqn_jax.app.logs import TBLog, meta_row_scalars
        from metadqn_jax.app.runconfig import meta_config_dict
        from metadqn_jax.checkpoint import Checkpointer, CheckpointError
        from metadqn_jax.driver import (  # at call time: tests patch driver.train_meta
            TrainResult,
            train_meta,
        )
        from metadqn_jax.meta import make_meta_step

        algo = cfg_a.algorithm
        run = self.cfg.run
        validation = self.cfg.validation
        program = make_meta_step(cfg_a)
        hp = cfg_a.hparams()
        expected = meta_config_dict(cfg_a, validation)
        ck = Checkpointer(runs.checkpoint_dir(self.run_dir, algo), keep=run.keep)
        state = early_stop = None
        start = 0
        latest = ck.latest_step()
        if latest is not None:
            if not self.resume:
                raise CheckpointError(f"{ck.directory} already holds checkpoints; continue with --resume")
            restored = self.restore(cfg_a, program)
            state, early_stop = restored.tree["state"], restored.tree["early_stop"]
            start = restored.step
            info(f"{algo}: resuming from the checkpoint at meta-step {start} ({ck.directory})")
            extra = restored.info.get("extra") or {}
            if extra.get("stopped_early"):
                info(f"{algo}: stopped early at meta-step {start} (validation patience); not continued")
                res = TrainResult(state, early_stop, [], True)
                self._export(cfg_a, res)
                ck.close()
                return res
        else:
            if self.resume:
                info(f"{algo}: no checkpoint yet; training from the start")
            # jitted: bit-identical to train_meta's eager init, and compiled (and cached) at once
            state = jax.jit(program.init)(key, hp)
        self.csv.truncate(lambda r: r.get("algorithm") != algo or int(r.get("meta_step") or 0) <= start)
        # on resume TensorBoard discards what an interrupted run logged after the checkpoint
        tb = TBLog(runs.tb_dir(self.run_dir, algo), purge_step=start + 1 if self.resume else None)
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
        self._export(cfg_a, res)
        return res

    def restore(self, cfg_a, program=None):
        """The latest checkpoint of ``cfg_a.algorithm`` (None if there is none), validated against
        the config (format, settings, shapes)."""
        from metadqn_jax.checkpoint import Checkpointer

        algo = cfg_a.algorithm
        if algo in self._restored:
            return self._restored.pop(algo)
        ck = Checkpointer(runs.checkpoint_dir(self.run_dir, algo), keep=self.cfg.run.keep)
        if not ck.directory.exists():
            return None
        if ck.latest_step() is None and all(".orbax-checkpoint-tmp" in p.name for p in ck.directory.iterdir()):
            return None  # nothing saved yet (or only a failed / interrupted first save)
        return restore_meta_checkpoint(ck, cfg_a, self.cfg.validation, program)

    def preflight(self) -> None:
        """Validates every algorithm's checkpoints before anything runs (fail fast, one error)."""
        from metadqn_jax.compare import config_for

        for algo in self.cfg.run.trained:
            restored = self.restore(config_for(self.cfg.meta, algo))
            if restored is not None:
                self._restored[algo] = restored

    def _export(self, cfg_a, res) -> None:
        from metadqn_jax.deploy import export_policy

        es = res.early_stop
        best = float(es.best_return)
        export_policy(self.run_dir, cfg_a, es.best_params, es.best_target, step=int(res.state.step),
                      extra={"algorithm": cfg_a.algorithm, "meta_steps": int(res.state.step),
                             "best_step": int(es.best_step), "val_return": best if best == best else None,
                             "stopped_early": bool(res.stopped_early)})


def cmd_train(args: argparse.Namespace, flags: Mapping[str, Any]) -> int:
    """``metadqn train`` (``flags``: the config layer of the options given). Returns the exit
    status: 0 (also after ``--stop-after``), 130 when interrupted."""
    from metadqn_jax.app.results import write_few_shot
    from metadqn_jax.app.runconfig import TrainConfig
    from metadqn_jax.core.validate import ConfigError

    if args.resume:
        for flag, given in (("--quick", args.quick), ("--config", args.config), ("--name", args.name)):
            if given:
                raise ConfigError(f"{flag} cannot be combined with --resume (the run's config.yaml is used)")
        run_dir = Path(args.resume)
        stored = runs.read_run_config(run_dir, TrainConfig)
        cfg = resolve_config(TrainConfig, args, flags, stored.to_dict(), None)
        cfg = with_oracle(cfg, args)
        check_unchanged(stored, cfg, RESUME_MAY_CHANGE, "--resume")
    else:
        cfg = with_oracle(resolve_config(TrainConfig, args, flags, presets.DEFAULT_TRAIN, presets.QUICK_TRAIN), args)
        run_dir = None
    if args.print_config:
        sys.stdout.write(cfg.to_yaml())
        return 0
    if run_dir is None:
        run_dir = runs.new_run_dir(args.out, args.name, "train", cfg.meta.family)
    configure_jax(args)
    from metadqn_jax.compare import compare
    from metadqn_jax.sharding import task_mesh

    # device count, divisibility, micro-batching: fail before any compute or folder
    task_mesh(cfg.meta.num_tasks, cfg.run.num_devices, cfg.meta.task_micro_batch)

    trainer = MetaTrainer(cfg, run_dir, resume=bool(args.resume), stop_after=args.stop_after,
                          progress=not args.no_progress)
    if args.resume:
        trainer.preflight()
    runs.write_config(run_dir, cfg)
    info(f"run folder: {run_dir}")
    t0 = time.perf_counter()
    try:
        comp = compare(cfg.meta, cfg.run.trained, cfg.few_shot, seed=cfg.run.seed, validation=cfg.validation,
                       scratch="scratch" in cfg.run.baselines, oracle="oracle" in cfg.run.baselines,
                       progress=not args.no_progress, log=info, train=trainer)
    except StopRequested as stop:
        info(f"stopped after meta-step {stop.step} of {stop.algorithm} (--stop-after); checkpoint saved. "
             f"Continue with: metadqn train --resume {run_dir}")
        return 0
    except KeyboardInterrupt:
        saved = ", ".join(f"{a} at meta-step {s}" for a, s in trainer.last_checkpoint.items() if s >= 0)
        info(f"interrupted; last checkpoints: {saved or 'none'}. Continue with: metadqn train --resume {run_dir}")
        return 130
    text = write_few_shot(run_dir, "few_shot", cfg, comp, trained=cfg.run.trained)
    print(text, end="")
    print(f"\nrun folder: {run_dir} (few_shot.md/.png/.json, metrics.csv, tb/, checkpoints/, policy/); "
          f"total {time.perf_counter() - t0:.0f} s")
    return 0
