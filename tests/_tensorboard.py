"""Reading TensorBoard event files back in the tests: the TFRecord files are parsed directly
(no TensorFlow / TensorBoard needed), with tensorboardX's own ``Event`` protocol buffer."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

from tensorboardX.proto import event_pb2


def _tfrecords(path: Path) -> Iterable[bytes]:
    data = path.read_bytes()
    pos = 0
    while pos + 12 <= len(data):
        (length,) = struct.unpack("<Q", data[pos:pos + 8])
        start = pos + 12
        end = start + length
        if end + 4 > len(data):
            break  # a record being written
        yield data[start:end]
        pos = end + 4


def read_tb_scalars(logdir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` from every event file under ``logdir`` (recursively;
    tags of sub-directories are prefixed ``subdir/``), honouring purge-step restarts."""
    logdir = Path(logdir)
    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(logdir.rglob("events.out.tfevents.*")):
        rel = path.parent.relative_to(logdir).as_posix()
        prefix = "" if rel == "." else rel + "/"
        for record in _tfrecords(path):
            ev = event_pb2.Event.FromString(record)
            if ev.HasField("session_log") and ev.session_log.status == ev.session_log.START:
                for tag in [t for t in out if t.startswith(prefix)]:  # purge: drop steps >= this
                    out[tag] = [(s, v) for s, v in out[tag] if s < ev.step]
            if not ev.HasField("summary"):
                continue
            for value in ev.summary.value:
                if value.HasField("simple_value"):
                    out.setdefault(prefix + value.tag, []).append((int(ev.step), float(value.simple_value)))
    return out
