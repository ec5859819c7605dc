"""Orbax checkpoints of any pytree (a :class:`~metadqn_jax.meta.step.MetaState` with its
:class:`~metadqn_jax.driver.EarlyStop`, an exported policy), with validation on restore.

Layout of a checkpoint directory (one :class:`orbax.checkpoint.CheckpointManager`)::

    <directory>/<step>/state/   the arrays (orbax StandardSave: OCDBT / tensorstore, no pickles)
    <directory>/<step>/meta/    JSON metadata: format tag + version, step, the config, the
                                shape/dtype of every leaf, extra info (e.g. "finished")

* The tree is flattened to ``{"state.params.net.params.hidden_0.kernel": array, ...}``; new-style
  PRNG keys are stored as ``jax.random.key_data`` (uint32) and re-wrapped with
  ``jax.random.wrap_key_data`` and the recorded implementation; zero-size arrays (which
  orbax cannot store) live only in the metadata.
* Saves are synchronous and atomic: orbax writes into ``<step>.orbax-checkpoint-tmp`` and
  renames it when complete, and old steps (beyond ``keep``) are deleted only after a
  successful save. A failed save raises :class:`CheckpointError`, removes its temporary
  directory and leaves every earlier checkpoint intact.
* :meth:`Checkpointer.restore` checks, in order: the directory exists and holds a complete
  checkpoint; the metadata carries this package's format tag (anything else is "foreign");
  the stored config equals the expected one (naming the first differing field); every leaf
  has the expected path, shape and dtype (naming the leaf); the arrays are readable and
  match their metadata (otherwise "corrupt"). Each failure is one :class:`CheckpointError`;
  an unreadable or damaged step raises its subclass :class:`CorruptCheckpointError`.
* A damaged latest step need not block a run: :meth:`Checkpointer.restore_latest_intact`
  restores the newest step that reads back and reports the broken ones (incomplete step
  folders, e.g. a deleted ``state/``, and corrupt ones); :meth:`Checkpointer.set_aside` renames
  a broken step to ``<step>.broken-<n>`` so that its step number can be saved again.

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
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metadqn_jax.core.optim import is_prng_key

FORMAT_STATE = "metadqn_jax/meta-training-state"
FORMAT_POLICY = "metadqn_jax/policy"
VERSION = 1
_ITEMS = ("state", "meta")


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, foreign or does not match the configuration."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint step exists but cannot be read back (damaged or missing files)."""


class Restored(NamedTuple):
    tree: Any  # the restored pytree (structure of ``like``; jax arrays, keys re-wrapped)
    step: int  # the checkpoint's step
    info: dict  # the JSON metadata (format, version, config, leaves, extra)


# ---------------------------------------------------------------------------- flattening
def _path_name(path) -> str:
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:  # pragma: no cover
            parts.append(str(k))
    return ".".join(parts) if parts else "_root"


def leaf_specs(tree: Any) -> dict[str, dict[str, Any]]:
    """``{leaf name: {"shape": [...], "dtype": "float32"[, "key_impl": ...]}}`` of a (possibly
    abstract, e.g. ``jax.eval_shape``) pytree."""
    specs: dict[str, dict[str, Any]] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = _path_name(path)
        if name in specs:  # pragma: no cover - distinct paths give distinct names in practice
            raise CheckpointError(f"two leaves share the name {name!r}")
        if is_prng_key(leaf):
            impl = str(jax.random.key_impl(leaf)) if isinstance(leaf, jax.Array) else None
            specs[name] = {"shape": list(np.shape(leaf)), "dtype": "prng_key", "key_impl": impl}
        else:
            dtype = leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
            specs[name] = {"shape": list(np.shape(leaf)), "dtype": np.dtype(dtype).name}
    return specs


def flatten(tree: Any) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
    """``(arrays, specs)``: host copies of the non-empty leaves (keys as key data) + specs."""
    specs = leaf_specs(tree)
    arrays: dict[str, np.ndarray] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = _path_name(path)
        value = jax.random.key_data(leaf) if is_prng_key(leaf) else leaf
        arr = np.array(value)  # a copy: the device buffer may be donated right after
        if arr.size:
            arrays[name] = arr
    return arrays, specs


def unflatten(like: Any, arrays: Mapping[str, np.ndarray], specs: Mapping[str, Mapping[str, Any]]) -> Any:
    """Rebuilds a tree shaped like ``like`` from :func:`flatten`'s output (jax arrays)."""
    leaves = []
    flat, treedef = jax.tree_util.tree_flatten_with_path(like)
    for path, leaf in flat:
        name = _path_name(path)
        spec = specs[name]
        if spec["dtype"] == "prng_key":
            data = arrays[name] if name in arrays else np.zeros(tuple(spec["shape"]) + (0,), np.uint32)
            leaves.append(jax.random.wrap_key_data(jnp.asarray(data), impl=spec["key_impl"]))
        else:
            dtype = np.dtype(spec["dtype"])
            value = arrays[name] if name in arrays else np.zeros(spec["shape"], dtype)
            leaves.append(jnp.asarray(value, dtype=dtype))
    return jax.tree_util.tree_unflatten(treedef, leaves)


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
        import orbax.checkpoint as ocp

        if self._mgr is None:
            if not create and not self.directory.is_dir():
                raise CheckpointError(f"no checkpoint at {self.directory} (the directory does not exist)")
            options = ocp.CheckpointManagerOptions(
                max_to_keep=self.keep, create=create, enable_async_checkpointing=False,
                cleanup_tmp_directories=True,
            )
            self._mgr = ocp.CheckpointManager(self.directory, options=options, item_names=_ITEMS)
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

    # ------------------------------------------------------------------------- queries
    def steps(self) -> list[int]:
        """Steps of the complete checkpoints, ascending (empty if there are none)."""
        if not self.directory.is_dir():
            return []
        out = []
        for p in self.directory.iterdir():
            if p.is_dir() and p.name.isdigit() and (p / "meta").is_dir() and (p / "state").is_dir():
                out.append(int(p.name))
        return sorted(out)

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def broken_steps(self) -> list[int]:
        """Steps whose folder exists but is not a complete checkpoint (no ``meta/`` or no
        ``state/``, e.g. deleted by hand), ascending. Orbax still counts such a folder as the
        step, so saving that step again fails until it is :meth:`set_aside`."""
        if not self.directory.is_dir():
            return []
        complete = set(self.steps())
        return sorted(int(p.name) for p in self.directory.iterdir()
                      if p.is_dir() and p.name.isdigit() and int(p.name) not in complete)

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
        import orbax.checkpoint as ocp

        step = int(step)
        arrays, specs = flatten(tree)
        from metadqn_jax import __version__

        info = {
            "format": self.kind,
            "version": VERSION,
            "step": step,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "package_version": __version__,
            "config": _json_ready(config) if config is not None else None,
            "leaves": specs,
            "extra": _json_ready(dict(extra or {})),
        }
        if step in self.steps():
            raise CheckpointError(f"checkpoint step {step} already exists in {self.directory}; "
                                  "it is never overwritten")
        before = self.latest_step()
        try:
            mgr = self._manager(create=True)
            saved = mgr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(arrays),
                                                           meta=ocp.args.JsonSave(info)), force=True)
            mgr.wait_until_finished()
            if not saved or step not in self.steps():
                raise RuntimeError("orbax did not write the checkpoint")
        except CheckpointError:
            raise
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
        """The stored arrays by leaf name (PRNG keys as key data; no structure or config check)."""
        import orbax.checkpoint as ocp

        step = self._require_step(step)
        info = self.read_info(step)
        try:
            out = self._manager(create=False).restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
        except Exception as e:  # noqa: BLE001
            self.close()
            raise CorruptCheckpointError(f"checkpoint {self.directory / str(step)} is corrupt or unreadable "
                                         f"({type(e).__name__})") from None
        arrays = {k: np.asarray(v) for k, v in dict(out["state"]).items()}
        for name, spec in info["leaves"].items():
            if name not in arrays:
                shape = tuple(spec["shape"]) + ((0,) if spec["dtype"] == "prng_key" else ())
                arrays[name] = np.zeros(shape, np.uint32 if spec["dtype"] == "prng_key" else spec["dtype"])
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
        import orbax.checkpoint as ocp

        step = self._require_step(step)
        where = self.directory / str(step)
        info = self.read_info(step)
        if config is not None:
            self._check_config(info.get("config"), config, set(ignore), where, absent or {})
        expected = leaf_specs(like)
        stored = info.get("leaves") or {}
        self._check_leaves(stored, expected, where)
        try:
            mgr = self._manager(create=False)
            out = mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
            arrays = {k: np.asarray(v) for k, v in dict(out["state"]).items()}
        except CheckpointError:
            raise
        except Exception as e:  # noqa: BLE001
            self.close()
            msg = str(e).splitlines()[0] if str(e) else ""
            raise CorruptCheckpointError(f"checkpoint {where} is corrupt or unreadable "
                                         f"({type(e).__name__}: {msg[:200]})") from None
        for name, spec in stored.items():
            want = tuple(spec["shape"])
            if spec["dtype"] == "prng_key":
                if name in arrays and arrays[name].shape[: len(want)] != want:
                    raise CorruptCheckpointError(f"checkpoint {where} is corrupt: key {name} has shape "
                                                 f"{arrays[name].shape}, its metadata says {want}")
                continue
            size = int(np.prod(want)) if want else 1
            if size and name not in arrays:
                raise CorruptCheckpointError(f"checkpoint {where} is corrupt: the array {name} is missing")
            if name in arrays and (arrays[name].shape != want or arrays[name].dtype.name != spec["dtype"]):
                raise CorruptCheckpointError(f"checkpoint {where} is corrupt: {name} is "
                                             f"{arrays[name].shape} {arrays[name].dtype.name}, its metadata "
                                             f"says {_shape_str(spec)}")
        tree = unflatten(like, arrays, stored)
        return Restored(tree, step, info)

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
