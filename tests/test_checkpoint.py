"""Checkpoints (metadqn_jax.checkpoint): exact round trip of MetaState + EarlyStop, keep-last-K,
atomic saves, and one clear error for missing / empty / foreign / corrupt / mismatched ones."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metadqn_jax.checkpoint import FORMAT_POLICY, Checkpointer, CheckpointError, leaf_specs
from metadqn_jax.runs.configs import meta_config_dict
from metadqn_jax.meta import MetaConfig, make_meta_step
from metadqn_jax.driver import EarlyStop, ValidationConfig, init_early_stop

pytestmark = pytest.mark.usefixtures("shared_compile_cache")

TINY = dict(family="pointnav-goal", algorithm="context", num_tasks=4, envs_per_task=2, rollout_steps=5,
            support_size=10, buffer_size=10, query_batch=16, hidden=(16, 16), encoder_hidden=(16,),
            encoder_post=(), context_decoder=0.0, context_refine=0,  # not pointnav-goal's recommendations
            num_meta_steps=20, chunk_size=5)



@pytest.fixture(scope="module")
def tiny():
    """A real (tiny) MetaState with a non-trivial EarlyStop, and its abstract twin."""
    cfg = MetaConfig(**TINY)
    program = make_meta_step(cfg)
    hp = cfg.hparams()
    state = jax.jit(program.init)(jax.random.key(3), hp)
    es = init_early_stop(state)
    es = es._replace(best_return=jnp.float32(-12.5), best_step=jnp.int32(10), bad_validations=jnp.int32(1))
    abstract = jax.eval_shape(program.init, jax.random.key(0), hp)
    like = {"state": abstract, "early_stop": jax.eval_shape(init_early_stop, abstract)}
    return cfg, {"state": state, "early_stop": es}, like


def _leaves(tree):
    out = []
    for x in jax.tree.leaves(tree):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            out.append(("key", str(jax.random.key_impl(x)), np.asarray(jax.random.key_data(x))))
        else:
            out.append((x.dtype.name, np.asarray(x)))
    return out


def _assert_identical(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(_leaves(a), _leaves(b)):
        assert x[:-1] == y[:-1]
        assert x[-1].shape == y[-1].shape and x[-1].dtype == y[-1].dtype
        assert np.array_equal(x[-1], y[-1])


def test_round_trip_is_bit_exact(tiny, tmp_path):
    cfg, tree, like = tiny
    config = meta_config_dict(cfg, ValidationConfig())
    with Checkpointer(tmp_path / "ck", keep=2) as ck:
        ck.save(5, tree, config=config, extra={"finished": False})
        r = ck.restore(like, config=config)
    assert r.step == 5 and r.info["extra"] == {"finished": False}
    _assert_identical(r.tree, tree)
    assert isinstance(r.tree["state"], type(tree["state"])) and isinstance(r.tree["early_stop"], EarlyStop)
    # the PRNG key is recorded with its implementation, no pickles anywhere
    assert r.info["leaves"]["state.key"] == {"shape": [], "dtype": "prng_key", "key_impl": "threefry2x32"}
    assert not list((tmp_path / "ck").rglob("*.pkl")) and not list((tmp_path / "ck").rglob("*.pickle"))
    # the state item is the pytree as orbax saves it: plain orbax restores it into the abstract tree
    import orbax.checkpoint as ocp

    assert r.info["version"] == 2
    _assert_identical(ocp.StandardCheckpointer().restore(tmp_path / "ck" / "5" / "state", like), tree)
    # restoring into a concrete tree works too, and the restored state keeps training identically
    assert ck.restore(tree).step == 5


def test_keeps_the_last_k_and_never_overwrites(tmp_path):
    tree = {"w": jnp.arange(4.0), "n": jnp.int32(0)}
    ck = Checkpointer(tmp_path / "ck", keep=2)
    for step in (1, 2, 3):
        ck.save(step, {"w": tree["w"] * step, "n": jnp.int32(step)})
    assert ck.steps() == [2, 3] and ck.latest_step() == 3
    with pytest.raises(CheckpointError, match="step 3 already exists"):
        ck.save(3, tree)
    assert int(ck.restore(tree).tree["n"]) == 3
    assert np.array_equal(ck.restore(tree, step=2).tree["w"], np.arange(4.0) * 2)
    with pytest.raises(CheckpointError, match=r"no checkpoint for step 1 .*steps: \[2, 3\]"):
        ck.restore(tree, step=1)
    ck.close()


def test_zero_size_leaves_round_trip(tmp_path):
    # orbax refuses zero-size arrays (e.g. the empty context of a pretrained policy): saved as
    # empty nodes, restored as zeros of the recorded shape and dtype (keys too); None nodes stay
    tree = {"ctx": jnp.zeros((0,), jnp.float32), "w": jnp.ones((2, 3)), "keys": jax.random.split(jax.random.key(1), 3),
            "none": None, "nokeys": jax.random.split(jax.random.key(1, impl="rbg"), 0),
            "n": [jnp.zeros((3, 0), jnp.int8)]}
    with Checkpointer(tmp_path / "ck") as ck:
        ck.save(1, tree)
        _assert_identical(ck.restore(tree).tree, tree)
        _assert_identical(ck.restore(jax.eval_shape(lambda t: t, tree)).tree, tree)
        assert ck.restore(tree).tree["none"] is None
        arrays = ck.read_arrays()
    assert sorted(arrays) == ["ctx", "keys", "n.0", "nokeys", "w"]
    assert arrays["ctx"].shape == (0,) and arrays["n.0"].dtype == np.int8 and arrays["keys"].shape == (3, 2)


def test_failed_save_leaves_previous_checkpoint_intact(tiny, tmp_path, monkeypatch):
    import orbax.checkpoint as ocp

    _, tree, like = tiny
    ck = Checkpointer(tmp_path / "ck", keep=1)  # keep=1: a naive manager would delete step 5 first
    ck.save(5, tree)

    async def boom(self, *args, **kwargs):
        raise OSError("No space left on device (simulated)")

    with monkeypatch.context() as m:
        m.setattr(ocp.handlers.JsonCheckpointHandler, "async_save", boom)
        with pytest.raises(CheckpointError, match=r"saving checkpoint step 10 .* failed .*No space left.*"
                                                  r"previous checkpoint \(step 5\) is intact"):
            ck.save(10, tree)
    assert ck.steps() == [5]
    assert not list((tmp_path / "ck").glob("*tmp*"))  # the partial save is cleaned up
    _assert_identical(ck.restore(like).tree, tree)
    ck.save(10, tree)  # the next save works again
    assert ck.steps() == [10]
    ck.close()


def test_missing_empty_and_foreign_directories(tmp_path):
    like = {"w": jnp.zeros(2)}
    with pytest.raises(CheckpointError, match="no checkpoint at .*nope .*does not exist"):
        Checkpointer(tmp_path / "nope").restore(like)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint in .*empty .*empty"):
        Checkpointer(tmp_path / "empty").restore(like)
    foreign = tmp_path / "foreign"
    (foreign / "model").mkdir(parents=True)
    (foreign / "model" / "weights.bin").write_bytes(b"\x00" * 16)
    (foreign / "model_3").mkdir()  # orbax would take it for step 3; only numbers are steps here
    assert Checkpointer(foreign).steps() == [] and Checkpointer(foreign).broken_steps() == []
    with pytest.raises(CheckpointError, match="is not a metadqn_jax checkpoint directory"):
        Checkpointer(foreign).restore(like)
    # an orbax-like step folder whose metadata is somebody else's
    other = tmp_path / "other"
    (other / "7" / "meta").mkdir(parents=True)
    (other / "7" / "state").mkdir()
    (other / "7" / "meta" / "metadata").write_text(json.dumps({"format": "someone-else", "version": 3}))
    with pytest.raises(CheckpointError, match="not a metadqn_jax/meta-training-state checkpoint .*foreign format"):
        Checkpointer(other).restore(like)
    # a policy export is not a training state (and vice versa)
    Checkpointer(tmp_path / "pol", kind=FORMAT_POLICY).save(1, like)
    with pytest.raises(CheckpointError, match="foreign format tag 'metadqn_jax/policy'"):
        Checkpointer(tmp_path / "pol").restore(like)
    # an interrupted save only
    (tmp_path / "partial" / "3.orbax-checkpoint-tmp").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="only an interrupted or failed save"):
        Checkpointer(tmp_path / "partial").restore(like)


def test_corrupt_checkpoint(tmp_path):
    tree = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}
    with Checkpointer(tmp_path / "ck") as ck:
        ck.save(1, tree)
    for f in (tmp_path / "ck" / "1" / "state").rglob("*"):
        if f.is_file() and f.name not in ("commit_success.txt",):
            f.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"checkpoint .*1 is corrupt or unreadable"):
        Checkpointer(tmp_path / "ck").restore(tree)
    # an array that disagrees with (edited) metadata: orbax reads into the expected shapes strictly
    # (one array: orbax's other reads still in flight could outlive its event loop)
    with Checkpointer(tmp_path / "ck2") as ck:
        ck.save(1, {"w": tree["w"]})
    meta = tmp_path / "ck2" / "1" / "meta" / "metadata"
    info = json.loads(meta.read_text())
    info["leaves"]["w"]["shape"] = [3, 3]
    meta.write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match=r"ck2/1 is corrupt or unreadable \(ValueError: .*shape"):
        Checkpointer(tmp_path / "ck2").restore({"w": jnp.zeros((3, 3))})
    (tmp_path / "ck" / "1" / "meta" / "metadata").write_text("{not json")
    with pytest.raises(CheckpointError, match="is corrupt: unreadable metadata"):
        Checkpointer(tmp_path / "ck").restore(tree)


def test_config_and_shape_mismatch_name_the_field(tiny, tmp_path):
    cfg, tree, like = tiny
    config = meta_config_dict(cfg, ValidationConfig())
    with Checkpointer(tmp_path / "ck") as ck:
        ck.save(5, tree, config=config)
    bigger = dataclasses.replace(cfg, hidden=(32, 32))
    with pytest.raises(CheckpointError, match=r"does not match the config: meta.hidden is \[16, 16\] in the "
                                              r"checkpoint but \[32, 32\] in the config"):
        Checkpointer(tmp_path / "ck").restore(like, config=meta_config_dict(bigger, ValidationConfig()))
    # without a config to compare, the shapes still have to match (naming the leaf)
    program = make_meta_step(bigger)
    abstract = jax.eval_shape(program.init, jax.random.key(0), bigger.hparams())
    big_like = {"state": abstract, "early_stop": jax.eval_shape(init_early_stop, abstract)}
    with pytest.raises(CheckpointError, match=r"does not match the config's shapes: early_stop.best_params.net"
                                              r".params.head.kernel is \(16, 4\) float32 in the checkpoint but "
                                              r"\(32, 4\) float32 for the config"):
        Checkpointer(tmp_path / "ck").restore(big_like)
    # ignored keys (e.g. a longer run) are allowed to differ
    longer = meta_config_dict(cfg, dataclasses.replace(ValidationConfig(), every=7))
    Checkpointer(tmp_path / "ck").restore(like, config=longer, ignore=("validation.*",))
    with pytest.raises(CheckpointError, match="validation.every is None in the checkpoint but 7"):
        Checkpointer(tmp_path / "ck").restore(like, config=longer)


def test_a_setting_added_later_matches_older_checkpoints_only_at_its_default(tiny, tmp_path):
    """A checkpoint written before a setting existed (its key absent from the stored config)
    behaved as that setting's default: restoring with the default passes, with another value
    fails naming the key, and without ``absent`` the missing key is still reported."""
    from metadqn_jax.runs.configs import field_defaults

    cfg, tree, like = tiny
    config = meta_config_dict(cfg, ValidationConfig())
    older = {**config, "meta": {k: v for k, v in config["meta"].items() if k != "context_refine"}}
    with Checkpointer(tmp_path / "ck") as ck:
        ck.save(5, tree, config=older)
    defaults = field_defaults()
    assert defaults["meta.context_refine"] == 0 and defaults["validation.num_tasks"] == 32
    assert "meta.task_lifetime" not in defaults  # resolved per family: no fixed default to assume
    Checkpointer(tmp_path / "ck").restore(like, config=config, absent=defaults)
    refined = {**config, "meta": {**config["meta"], "context_refine": 2}}
    with pytest.raises(CheckpointError, match=r"meta.context_refine is absent \(so 0\) in the checkpoint but 2 in "):
        Checkpointer(tmp_path / "ck").restore(like, config=refined, absent=defaults)
    with pytest.raises(CheckpointError, match=r"meta.context_refine is '<absent>' in the checkpoint but 0"):
        Checkpointer(tmp_path / "ck").restore(like, config=config)


def test_leaf_specs_of_abstract_and_concrete_trees_agree(tiny):
    _, tree, like = tiny
    a, b = leaf_specs(tree), leaf_specs(like)
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k]["shape"], a[k]["dtype"]) == (b[k]["shape"], b[k]["dtype"]), k
    assert {"state.params.net.params.hidden_0.kernel", "state.buffers.data.obs", "state.carry.env_state.pos",
            "early_stop.best_return", "state.key"} <= a.keys()
    assert any(k.startswith("state.opt_state.") for k in a)


def test_broken_steps_fall_back_and_are_set_aside(tmp_path):
    """A deleted ``state/`` (incomplete step) and garbage arrays (corrupt step) are skipped by
    ``restore_latest_intact``, which restores the newest readable step; moved aside, their
    step numbers can be saved again (orbax would otherwise raise StepAlreadyExistsError)."""
    import shutil

    from metadqn_jax.checkpoint import CorruptCheckpointError

    tree = {"w": jnp.arange(4.0), "n": jnp.int32(0)}
    ck = Checkpointer(tmp_path / "ck", keep=3)
    for step in (1, 2, 3):
        ck.save(step, {"w": tree["w"] * step, "n": jnp.int32(step)})
    ck.close()
    shutil.rmtree(tmp_path / "ck" / "2" / "state")
    for f in (tmp_path / "ck" / "3" / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"\x00garbage")
    ck = Checkpointer(tmp_path / "ck", keep=3)
    assert ck.steps() == [1, 3] and ck.broken_steps() == [2]
    with pytest.raises(CorruptCheckpointError, match="ck/3 is corrupt or unreadable"):
        ck.restore(tree)
    restored, broken = ck.restore_latest_intact(tree)
    assert restored.step == 1 and int(restored.tree["n"]) == 1
    assert [s for s, _ in broken] == [2, 3]
    assert "incomplete" in broken[0][1] and "corrupt or unreadable" in broken[1][1]
    assert ck.set_aside(2).name == "2.broken-1" and ck.set_aside(3).name == "3.broken-1"
    assert ck.steps() == [1] and ck.broken_steps() == []
    ck.save(2, {"w": tree["w"], "n": jnp.int32(22)}, config={"a": 0})  # the step numbers are free again
    ck.save(3, {"w": tree["w"], "n": jnp.int32(33)}, config={"a": 0})
    assert ck.steps() == [1, 2, 3] and int(ck.restore(tree).tree["n"]) == 33
    shutil.rmtree(tmp_path / "ck" / "3" / "state")
    assert ck.set_aside(3).name == "3.broken-2"  # the first free name
    ck.close()
    # a config mismatch is not "broken": no fallback past it
    with pytest.raises(CheckpointError, match="does not match the config: a is 0 in the checkpoint but 1") as e:
        Checkpointer(tmp_path / "ck").restore_latest_intact(tree, config={"a": 1})
    assert not isinstance(e.value, CorruptCheckpointError)
    # nothing readable at all: the newest step's error, naming how many others failed
    only = Checkpointer(tmp_path / "only", keep=2)
    only.save(1, tree)
    only.close()
    shutil.rmtree(tmp_path / "only" / "1" / "state")
    with pytest.raises(CorruptCheckpointError, match=r"no intact checkpoint in .*only: step 1 is incomplete"):
        Checkpointer(tmp_path / "only").restore_latest_intact(tree)


def test_arrays_read_back_by_name_and_other_format_versions_are_refused(tiny, tmp_path):
    """``read_arrays`` gives every leaf by name (PRNG keys as key data, zero-size arrays as zeros)
    without a structure; a checkpoint of another format version is refused by name."""
    cfg, tree, like = tiny
    config = meta_config_dict(cfg, ValidationConfig())
    extra = {"ctx": jnp.zeros((0,)), "nokeys": jax.random.split(jax.random.key(1, impl="rbg"), 0),
             "keys": jax.random.split(jax.random.key(2, impl="rbg"), 2)}
    with Checkpointer(tmp_path / "ck") as ck:
        ck.save(20, {**tree, **extra}, config=config)
    arrays = Checkpointer(tmp_path / "ck").read_arrays()
    assert arrays["ctx"].shape == (0,) and arrays["nokeys"].size == 0 and arrays["nokeys"].dtype == np.uint32
    assert np.array_equal(arrays["keys"], np.asarray(jax.random.key_data(extra["keys"])))
    r = Checkpointer(tmp_path / "ck").restore({**like, **extra}, config=config)
    _assert_identical(r.tree, {**tree, **extra})
    meta = tmp_path / "ck" / "20" / "meta" / "metadata"
    for version in (1, 3):
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "version": version}))
        with pytest.raises(CheckpointError, match=rf"ck/20 has format version {version}; this metadqn_jax reads "
                                                  r"version 2"):
            Checkpointer(tmp_path / "ck").restore(like)


_SAVE_SHARDED = """
import sys, jax, jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
from metadqn_jax.checkpoint import Checkpointer
sh = NamedSharding(jax.make_mesh((2,), ("tasks",)), P("tasks"))
tree = {"w": jax.device_put(jnp.arange(12.0).reshape(4, 3), sh),
        "keys": jax.device_put(jax.random.split(jax.random.key(5), 4), sh), "b": jnp.int32(7)}
Checkpointer(sys.argv[1]).save(3, tree)
"""


def test_restores_onto_one_device_whatever_the_saved_sharding(tmp_path):
    """A state saved sharded over 2 devices (``--num-devices 2``) restores in a process with another
    device count (orbax alone refuses: 'Topology mismatch'), into the abstract tree and as arrays."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    subprocess.run([sys.executable, "-c", _SAVE_SHARDED, str(tmp_path / "ck")], env=env, check=True, timeout=1800)
    want = {"w": jnp.arange(12.0).reshape(4, 3), "keys": jax.random.split(jax.random.key(5), 4), "b": jnp.int32(7)}
    with Checkpointer(tmp_path / "ck") as ck:
        r = ck.restore(jax.eval_shape(lambda t: t, want))
        arrays = ck.read_arrays()
    _assert_identical(r.tree, want)
    # not committed to a device (as a freshly built state): a resumed run can shard it or mix it
    # with sharded arrays (jax refuses committed single-device arrays there)
    assert not any(x.committed for x in jax.tree.leaves(r.tree))
    assert np.array_equal(arrays["keys"], np.asarray(jax.random.key_data(want["keys"])))
