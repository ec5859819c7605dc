"""metadqn_jax.progress.ChunkBar: "compiling" until the first chunk, then a rate that excludes it."""

from __future__ import annotations

import io

from metadqn_jax.progress import ChunkBar


def test_chunk_bar_rate_starts_after_the_first_chunk(monkeypatch):
    import tqdm.auto

    stream = io.StringIO()
    real = tqdm.auto.tqdm
    monkeypatch.setattr(tqdm.auto, "tqdm", lambda **kw: real(file=stream, mininterval=0, **kw))
    bar = ChunkBar("meta-train test", total=300, start=0)
    assert "compiling" in stream.getvalue()
    bar.chunk({"meta_step": 100, "query_loss": 0.5})  # the compiled chunk: not counted in the rate
    assert (bar.bar.n, bar.bar.initial) == (100, 100)
    bar.chunk({"meta_step": 200, "query_loss": 0.25, "val_return": -3.5})
    assert (bar.bar.n, bar.bar.initial) == (200, 100)
    assert bar.bar.format_dict["n"] - bar.bar.format_dict["initial"] == 100  # the rate's numerator
    bar.close()
    out = stream.getvalue()
    assert "loss=0.2500" in out and "val=-3.50" in out


def test_chunk_bar_resumed_run_starts_at_its_step(monkeypatch):
    import tqdm.auto

    real = tqdm.auto.tqdm
    monkeypatch.setattr(tqdm.auto, "tqdm", lambda **kw: real(file=io.StringIO(), **kw))
    bar = ChunkBar("meta-train test", total=300, start=200)
    assert bar.bar.n == 200
    bar.chunk({"meta_step": 300, "query_loss": 1.0})
    assert (bar.bar.n, bar.bar.initial) == (300, 300)
    bar.close()
