"""Orbax checkpoints of any pytree (a :class:`~metadqn_jax.meta.step.MetaState` with its
:class:`~metadqn_jax.driver.EarlyStop`, an exported policy), with validation on restore.

Layout of a checkpoint directory (one :class:`orbax.checkpoint.CheckpointManager`)::

    <directory>/<step>/state/   the pytree (orbax StandardSave: OCDBT / tensorstore, no pickles)
    <directory>/<step>/meta/    JSON metadata: format tag + version, step, the config, the
                                shape/dtype of every leaf, extra info (e.g. "finished")

Orbax does the storage: typed PRNG keys are saved as key data with their implementation and
come back as keys; restores read into an abstract tree (``jax.eval_shape``, ``StandardRestore``),
here onto one device whatever sharding the arrays were saved with; steps are orbax's finalized
step folders; saves are synchronous and atomic (``<step>.orbax-checkpoint-tmp*`` renamed when
complete) and steps beyond ``keep`` are deleted after a successful save (``max_to_keep``). Leaf
names are orbax's parameter names (``state.params.net.params.hidden_0.kernel``).

This module adds:

* zero-size arrays (orbax refuses them) are saved as empty nodes and restored as zeros;
* a failed save raises :class:`CheckpointError`, removes its temporary folder and leaves every
  earlier checkpoint intact; a step is never overwritten;
* :meth:`Checkpointer.restore` checks, in order: the directory exists and holds a complete
  checkpoint; the metadata carries this package's format tag (anything else is "foreign") and
  a version it reads; the stored config equals the expected one (naming the first differing
  field); every leaf has the expected path, shape and dtype (naming the leaf); the arrays read
  back (otherwise "corrupt"). Each failure is one :class:`CheckpointError`; an unreadable or
  damaged step raises its subclass :class:`CorruptCheckpointError`;
* a damaged latest step need not block a run: :meth:`Checkpointer.restore_latest_intact`
  restores the newest step that reads back and reports the broken ones (incomplete step
  folders, e.g. a deleted ``state/``, and corrupt ones); :meth:`Checkpointer.set_aside` renames
  a broken step to ``<step>.broken-<n>`` so that its step number can be saved again;

>>> import jax, jax.numpy as jnp, tempfile
>>> from metadqn_jax.checkpoint import Checkpointer
>>> ck = Checkpointer(tempfile.mkdtemp() + "/ck", keep=2)
>>> tree = {"w": jnp.arange(3.0), "key": jax.random.key(0)}
>>> _ = ck.save(10, tree, config={"meta": {"hidden": [16]}})
>>> restored = ck.restore(tree, config={"meta": {"hidden": [16]}})
>>> restored.step, bool((restored.tree["w"] == tree["w"]).all())
(10, True)
"""

from __future__ import annotations

import datetime
import json
import math
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from metadqn_jax import __version__
from metadqn_jax.core.optim import is_prng_key

FORMAT_STATE = "metadqn_jax/meta-training-state"
FORMAT_POLICY = "metadqn_jax/policy"
VERSION = 2  # the format version written and read: the pytree as orbax saves it
_ITEMS = ("state", "meta")


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, foreign or does not match the configuration."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint step exists but cannot be read back (damaged or missing files)."""


class Restored(NamedTuple):
    tree: Any  # the restored pytree (structure of ``like``; jax arrays, PRNG keys as keys)
    step: int  # the checkpoint's step
    info: dict  # the JSON metadata (format, version, config, leaves, extra)


# ---------------------------------------------------------------------------- leaves
def _named(tree: Any) -> dict[str, Any]:
    """``{orbax parameter name: leaf}`` (``"state.params.net.params.hidden_0.kernel"``)."""
    return ocp.utils.to_flat_dict(tree, sep=".")


def _empty(leaf: Any) -> bool:
    return math.prod(np.shape(leaf)) == 0


def leaf_specs(tree: Any) -> dict[str, dict[str, Any]]:
    """``{leaf name: {"shape": [...], "dtype": "float32"[, "key_impl": ...]}}`` of a (possibly
    abstract, e.g. ``jax.eval_shape``) pytree."""
    specs: dict[str, dict[str, Any]] = {}
    for name, leaf in _named(tree).items():
        if is_prng_key(leaf):
            impl = str(jax.random.key_impl(leaf)) if isinstance(leaf, jax.Array) else None
            specs[name] = {"shape": list(np.shape(leaf)), "dtype": "prng_key", "key_impl": impl}
        else:
            dtype = leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
            specs[name] = {"shape": list(np.shape(leaf)), "dtype": np.dtype(dtype).name}
    return specs


def _uncommitted(x: jax.Array) -> jax.Array:
    """A fresh, uncommitted copy of ``x`` (placed by the computation that uses it, as a newly
    built array is: orbax's arrays are committed to a device, and jax refuses to combine them
    with arrays sharded over several devices, e.g. a resumed ``--num-devices 2`` run's)."""
    if is_prng_key(x):
        return jax.random.wrap_key_data(_uncommitted(jax.random.key_data(x)), impl=jax.random.key_impl(x))
    return jnp.asarray(np.asarray(x))


def _as_restored(got: Any, like: Any) -> Any:
    """Orbax's restore ``got`` (empty nodes where ``like`` has zero-size leaves) in the structure
    of ``like``: zeros for the zero-size leaves, uncommitted arrays."""
    is_none = lambda x: x is None
    want, treedef = jax.tree_util.tree_flatten(like, is_leaf=is_none)
    got = jax.tree_util.tree_leaves(got, is_leaf=is_none)
    return treedef.unflatten([w if w is None else jnp.zeros(np.shape(w), w.dtype) if g is None else _uncommitted(g)
                              for w, g in zip(want, got)])


def _flat_config(config: Mapping[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in (config or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flat_config(v, key + "."))
        else:
            out[key] = v
    return out


def _json_ready(x: Any) -> Any:
    return json.loads(json.dumps(x, default=lambda o: o.item() if hasattr(o, "item") else list(o)))


def _shape_str(spec: Mapping[str, Any]) -> str:
    return f"{tuple(spec['shape'])} {spec['dtype']}"


# ---------------------------------------------------------------------------- checkpointer
class Checkpointer:
    """Saves and restores pytrees under ``directory`` (orbax CheckpointManager, keep last ``keep``).

    Args:
      directory: the checkpoint directory (created on the first save).
      keep: number of most recent checkpoints kept.
      kind: the format tag written into (and required from) the metadata.
    """

    def __init__(self, directory: str | Path, *, keep: int = 3, kind: str = FORMAT_STATE):
        self.directory = Path(directory).absolute()
        self.keep = int(keep)
        self.kind = kind
        self._mgr = None

    # ------------------------------------------------------------------ orbax plumbing
    def _manager(self, create: bool):
        if self._mgr is None:
            if not create and not self.directory.is_dir():
                raise CheckpointError(f"no checkpoint at {self.directory} (the directory does not exist)")
            options = ocp.CheckpointManagerOptions(
                max_to_keep=self.keep, create=create, enable_async_checkpointing=False,
                cleanup_tmp_directories=True,
            )
            handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
            self._mgr = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)
        return self._mgr

    def close(self) -> None:
        if self._mgr is not None:
            self._mgr.close()
            self._mgr = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _tmp_dirs(self, step: int | None = None) -> list[Path]:
        if not self.directory.is_dir():
            return []
        pattern = f"{step}.orbax-checkpoint-tmp*" if step is not None else "*.orbax-checkpoint-tmp*"
        return sorted(self.directory.glob(pattern))

    def _read_state(self, step: int, like: Any | None) -> Any:
        """Orbax's restore of the ``state`` item on one device: into the structure, shapes and
        dtypes of ``like`` (empty nodes for its zero-size leaves), or if ``None`` of orbax's own
        metadata of the step (PRNG keys come back as keys either way).

        Raises:
          CorruptCheckpointError: orbax cannot read it back.
        """
        one = jax.sharding.SingleDeviceSharding(jax.devices()[0])  # whatever sharding it was saved with

        def as_target(s):
            return None if _empty(s) else jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=one)

        try:
            mgr = self._manager(create=False)
            target = jax.eval_shape(lambda t: t, like) if like is not None else \
                mgr.item_metadata(step)["state"].tree
            out = mgr.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(jax.tree.map(as_target, target))))
            return out["state"]
        except Exception as e:  # noqa: BLE001 - whatever orbax raises: one message
            self.close()
            msg = str(e).splitlines()[0] if str(e) else ""
            raise CorruptCheckpointError(f"checkpoint {self.directory / str(step)} is corrupt or unreadable "
                                         f"({type(e).__name__}: {msg[:200]})") from None

    # ------------------------------------------------------------------------- queries
    def _step_folders(self) -> list[int]:
        """Orbax's finalized step folders (not ``*.orbax-checkpoint-tmp*``) named by a number."""
        if not self.directory.is_dir():
            return []
        return sorted(int(p.name) for p in ocp.utils.checkpoint_steps_paths(self.directory) if p.name.isdigit())

    def steps(self) -> list[int]:
        """Steps of the complete checkpoints (both items present), ascending (empty if none)."""
        return [s for s in self._step_folders()
                if all((self.directory / str(s) / item).is_dir() for item in _ITEMS)]

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def broken_steps(self) -> list[int]:
        """Steps whose folder exists but is not a complete checkpoint (no ``meta/`` or no
        ``state/``, e.g. deleted by hand), ascending. Orbax still counts such a folder as the
        step, so saving that step again fails until it is :meth:`set_aside`."""
        complete = set(self.steps())
        return [s for s in self._step_folders() if s not in complete]

    def set_aside(self, step: int) -> Path:
        """Renames the folder of ``step`` to ``<step>.broken-<n>`` (the first free ``n``), where
        no step listing sees it and the step number can be saved again; returns the new path.

        Raises:
          CheckpointError: the folder cannot be renamed.
        """
        self.close()  # the manager caches the step list
        src = self.directory / str(int(step))
        n = 1
        while (self.directory / f"{int(step)}.broken-{n}").exists():
            n += 1
        dst = self.directory / f"{int(step)}.broken-{n}"
        try:
            src.rename(dst)
        except OSError as e:
            raise CheckpointError(f"cannot move the broken checkpoint {src} aside ({e.strerror or e})") from None
        return dst

    def restore_latest_intact(self, like: Any, *, config: Mapping[str, Any] | None = None,
                              ignore: Iterable[str] = (), absent: Mapping[str, Any] | None = None,
                              ) -> tuple[Restored, list[tuple[int, str]]]:
        """:meth:`restore` of the newest step that reads back, skipping broken ones.

        Returns:
          ``(restored, broken)``: ``broken`` lists ``(step, reason)`` for every step that cannot
          be read (:meth:`broken_steps`, and complete steps newer than the restored one that
          raise :class:`CorruptCheckpointError`), ascending. Nothing is moved
          (:meth:`set_aside` does that).

        Raises:
          CheckpointError: no step reads back (the newest one's error; with a note on the
            others), or the newest readable step does not match ``config`` / ``like``.
        """
        broken = [(s, "incomplete: its meta/ or state/ folder is missing") for s in self.broken_steps()]
        first_error: CorruptCheckpointError | None = None
        for step in reversed(self.steps()):
            try:
                restored = self.restore(like, step=step, config=config, ignore=ignore, absent=absent)
            except CorruptCheckpointError as e:
                first_error = first_error or e
                broken.append((step, str(e)))
                continue
            return restored, sorted(broken)
        if first_error is None:
            if broken:
                step, why = broken[-1]
                raise CorruptCheckpointError(f"no intact checkpoint in {self.directory}: step {step} is {why}")
            self._require_step(None)  # the directory's own error (missing, empty, foreign, ...)
            raise CheckpointError(f"no checkpoint in {self.directory}")  # pragma: no cover
        others = len(broken) - 1
        more = f"; {others} other step(s) cannot be read either" if others else ""
        raise CorruptCheckpointError(f"{first_error}{more}")

    def _require_step(self, step: int | None) -> int:
        if not self.directory.exists():
            raise CheckpointError(f"no checkpoint at {self.directory} (the directory does not exist)")
        if not self.directory.is_dir():
            raise CheckpointError(f"no checkpoint at {self.directory} (not a directory)")
        steps = self.steps()
        if not steps:
            if self._tmp_dirs():
                raise CheckpointError(f"no complete checkpoint in {self.directory} "
                                      "(only an interrupted or failed save)")
            if any(self.directory.iterdir()):
                raise CheckpointError(f"{self.directory} is not a metadqn_jax checkpoint directory "
                                      "(no <step>/meta and <step>/state checkpoints in it)")
            raise CheckpointError(f"no checkpoint in {self.directory} (the directory is empty)")
        if step is None:
            return steps[-1]
        if step not in steps:
            raise CheckpointError(f"no checkpoint for step {step} in {self.directory} (steps: {steps})")
        return int(step)

    def read_info(self, step: int | None = None) -> dict:
        """The JSON metadata of checkpoint ``step`` (default: the latest); checks the format tag."""
        step = self._require_step(step)
        path = self.directory / str(step) / "meta" / "metadata"
        try:
            info = json.loads(path.read_text())
        except FileNotFoundError:
            raise CheckpointError(f"{self.directory / str(step)} is not a metadqn_jax checkpoint "
                                  "(no metadata)") from None
        except (OSError, ValueError) as e:
            raise CorruptCheckpointError(f"checkpoint {self.directory / str(step)} is corrupt: "
                                         f"unreadable metadata ({type(e).__name__})") from None
        if not isinstance(info, dict) or info.get("format") != self.kind:
            found = info.get("format") if isinstance(info, dict) else None
            raise CheckpointError(f"{self.directory / str(step)} is not a {self.kind} checkpoint "
                                  f"(foreign format tag {found!r})")
        if info.get("version") != VERSION:
            raise CheckpointError(f"checkpoint {self.directory / str(step)} has format version "
                                  f"{info.get('version')!r}; this metadqn_jax reads version {VERSION}")
        return info

    # ---------------------------------------------------------------------------- save
    def save(self, step: int, tree: Any, *, config: Mapping[str, Any] | None = None,
             extra: Mapping[str, Any] | None = None) -> Path:
        """Saves ``tree`` as checkpoint ``step`` (atomic; keeps the last ``keep``).

        Raises:
          CheckpointError: the save failed (earlier checkpoints are left intact) or ``step``
            already exists.
        """
        step = int(step)
        info = {
            "format": self.kind,
            "version": VERSION,
            "step": step,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "package_version": __version__,
            "config": _json_ready(config) if config is not None else None,
            "leaves": leaf_specs(tree),
            "extra": _json_ready(dict(extra or {})),
        }
        if step in self.steps():
            raise CheckpointError(f"checkpoint step {step} already exists in {self.directory}; "
                                  "it is never overwritten")
        before = self.latest_step()
        stored = jax.tree.map(lambda x: None if _empty(x) else x, tree)  # orbax refuses zero-size arrays
        try:
            mgr = self._manager(create=True)
            saved = mgr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(stored),
                                                           meta=ocp.args.JsonSave(info)), force=True)
            mgr.wait_until_finished()
            if not saved or step not in self.steps():
                raise RuntimeError("orbax did not write the checkpoint")
        except Exception as e:  # noqa: BLE001 - any failure: report it, keep the old ones
            self.close()  # the manager's view may be stale; reopen on the next call
            self._remove_partial(step)
            kept = f"the previous checkpoint (step {before}) is intact" if before is not None else \
                "no earlier checkpoint exists"
            msg = str(e).splitlines()[0] if str(e) else ""
            raise CheckpointError(f"saving checkpoint step {step} to {self.directory} failed "
                                  f"({type(e).__name__}: {msg}); {kept}") from e
        return self.directory / str(step)

    def _remove_partial(self, step: int, timeout: float = 5.0) -> None:
        """Deletes the temporary folder of a failed save once orbax's background writers are done
        (its content stops changing), so they do not race with the deletion."""
        deadline = time.monotonic() + timeout
        last, stable = None, 0
        while time.monotonic() < deadline and self._tmp_dirs(step):
            snap = sorted((str(p), p.stat().st_size) for t in self._tmp_dirs(step) for p in t.rglob("*")
                          if p.exists())
            stable = stable + 1 if snap == last else 0
            last = snap
            if stable >= 3:
                for tmp in self._tmp_dirs(step):
                    shutil.rmtree(tmp, ignore_errors=True)
                last, stable = None, 0
            time.sleep(0.05)

    # ------------------------------------------------------------------------- restore
    def read_arrays(self, step: int | None = None) -> dict[str, np.ndarray]:
        """The arrays by leaf name (PRNG keys as key data; no structure or config check)."""
        step = self._require_step(step)
        info = self.read_info(step)
        arrays = {name: np.asarray(jax.random.key_data(v) if is_prng_key(v) else v)
                  for name, v in _named(self._read_state(step, None)).items()}
        for name, spec in info["leaves"].items():  # zero-size ones, which are not stored
            if name not in arrays:
                key = spec["dtype"] == "prng_key"
                shape = tuple(spec["shape"]) + ((0,) if key else ())
                arrays[name] = np.zeros(shape, np.uint32 if key else spec["dtype"])
        return arrays

    def restore(self, like: Any, *, step: int | None = None, config: Mapping[str, Any] | None = None,
                ignore: Iterable[str] = (), absent: Mapping[str, Any] | None = None) -> Restored:
        """Restores checkpoint ``step`` (default: the latest) into the structure of ``like``.

        Args:
          like: a pytree with the expected structure, shapes and dtypes (concrete or abstract,
            e.g. from ``jax.eval_shape``).
          config: the expected config (nested mapping); compared with the stored one, except
            the dotted keys in ``ignore``.
          absent: dotted key -> the value that a key *missing* from the stored config stands
            for (a setting added after the checkpoint was written, which then behaved as its
            default: a config that keeps that default still matches).

        Raises:
          CheckpointError: missing, foreign, corrupt or mismatched checkpoint (one message).
        """
        step = self._require_step(step)
        where = self.directory / str(step)
        info = self.read_info(step)
        if config is not None:
            self._check_config(info.get("config"), config, set(ignore), where, absent or {})
        stored = info.get("leaves") or {}
        self._check_leaves(stored, leaf_specs(like), where)
        return Restored(_as_restored(self._read_state(step, like), like), step, info)

    @staticmethod
    def _check_config(stored: Mapping[str, Any] | None, expected: Mapping[str, Any], ignore: set[str],
                      where: Path, absent: Mapping[str, Any]) -> None:
        if stored is None:
            raise CheckpointError(f"checkpoint {where} holds no config to check against")
        a, b = _flat_config(stored), _flat_config(_json_ready(expected))
        implied = {k: v for k, v in _json_ready(dict(absent)).items() if k not in a and k in b}
        a.update(implied)
        for key in sorted(set(a) | set(b), key=lambda k: (k not in b, k)):
            if key in ignore or any(key.startswith(p.rstrip("*")) for p in ignore if p.endswith("*")):
                continue
            if a.get(key, "<absent>") != b.get(key, "<absent>"):
                shown = f"absent (so {a[key]!r})" if key in implied else repr(a.get(key, "<absent>"))
                raise CheckpointError(
                    f"checkpoint {where} does not match the config: {key} is "
                    f"{shown} in the checkpoint but {b.get(key, '<absent>')!r} in the config")

    @staticmethod
    def _check_leaves(stored: Mapping[str, Any], expected: Mapping[str, Any], where: Path) -> None:
        for name, spec in expected.items():
            if name not in stored:
                raise CheckpointError(f"checkpoint {where} does not match the config: it has no leaf {name} "
                                      f"(expected {_shape_str(spec)})")
            got = stored[name]
            if list(got["shape"]) != list(spec["shape"]) or got["dtype"] != spec["dtype"]:
                raise CheckpointError(f"checkpoint {where} does not match the config's shapes: {name} is "
                                      f"{_shape_str(got)} in the checkpoint but {_shape_str(spec)} "
                                      "for the config")
        extra = sorted(set(stored) - set(expected))
        if extra:
            raise CheckpointError(f"checkpoint {where} does not match the config: unexpected leaf {extra[0]}")
