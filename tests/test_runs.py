"""Run folders as a unit (metadqn_jax.runs.folder, issue 15): one writer at a time (an flock that
the operating system releases when its holder dies), creation that cannot race, one ``error:``
line for every operating-system problem before any computation, and the divergence guard of
``metadqn train``.

The concurrency test holds a real ``metadqn train`` subprocess frozen (it stops itself with
SIGSTOP right after taking the lock, and again after its first checkpoint), so nothing here
depends on timing: the test waits for each stop with ``waitpid`` (a generous overall bound is
only a hang guard).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from metadqn_jax import cli
from metadqn_jax.runs import folder as runs
from metadqn_jax.runs import layout

from conftest import subprocess_env  # noqa: E402

pytestmark = pytest.mark.usefixtures("shared_compile_cache")
HANG_GUARD_S = 1800  # only against a hung subprocess; a loaded machine never needs it


def _env() -> dict[str, str]:
    return subprocess_env()


def run_main(capsys, argv):
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _one_error_line(err: str) -> bool:
    return err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


# ------------------------------------------------------------------------------ the lock
def test_lock_refuses_a_second_writer_and_is_released(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    first = runs.RunLock(run).acquire(["train", "--name", "run"])
    assert first.held
    text = layout.lock_path(run).read_text()
    assert f"pid: {os.getpid()}\n" in text and "command: metadqn train --name run\n" in text
    with pytest.raises(ValueError, match=rf"run folder '{run}' is in use by process {os.getpid()} \(metadqn "
                                         r"train --name run, started .*\); wait for it to end"):
        runs.RunLock(run).acquire(["evaluate", str(run)])  # flock: a second descriptor conflicts
    first.release()
    with runs.RunLock(run).acquire(["evaluate", str(run)]) as again:
        assert again.held and "command: metadqn evaluate" in layout.lock_path(run).read_text()
    assert not again.held


_HOLDER = r"""
import os, signal, sys
from metadqn_jax import cli
from metadqn_jax.runs import folder as runs
from metadqn_jax.checkpoint import Checkpointer

acquire, save = runs.RunLock.acquire, Checkpointer.save

def acquire_then_stop(self, *a, **k):  # freeze while holding the new folder's lock (no config.yaml yet)
    out = acquire(self, *a, **k)
    os.kill(os.getpid(), signal.SIGSTOP)
    return out

def save_then_stop(self, *a, **k):  # freeze again after the first checkpoint (still holding the lock)
    out = save(self, *a, **k)
    os.kill(os.getpid(), signal.SIGSTOP)
    return out

runs.RunLock.acquire, Checkpointer.save = acquire_then_stop, save_then_stop
sys.exit(cli.main(sys.argv[1:]))
"""


def _wait_stopped(p: subprocess.Popen, log: Path) -> None:
    """Waits until ``p`` stops itself (SIGSTOP); fails if it exits instead."""
    deadline = time.monotonic() + HANG_GUARD_S
    while time.monotonic() < deadline:
        pid, status = os.waitpid(p.pid, os.WUNTRACED | os.WNOHANG)
        if pid and os.WIFSTOPPED(status):
            return
        if pid:
            pytest.fail(f"the holder exited ({status}):\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    pytest.fail("the holder never stopped")


def test_two_writers_and_kill_9(capsys, tmp_path):
    """Two ``train`` runs with the same --name: the second is refused naming the first's PID,
    before it writes anything; so are ``--resume`` and ``evaluate`` while it trains. After a
    ``kill -9`` of the first, nothing stale remains: the run resumes."""
    out = tmp_path / "out"
    run = out / "busy"
    log = tmp_path / "holder.log"
    argv = ["train", "--quick", "--out", str(out), "--name", "busy", "--no-progress", "--baselines", "none"]
    with log.open("w") as f:
        p = subprocess.Popen([sys.executable, "-c", _HOLDER, *argv], stdout=f, stderr=subprocess.STDOUT, env=_env())
    try:
        _wait_stopped(p, log)  # 1: the folder exists and is locked, nothing written yet
        assert sorted(x.name for x in run.iterdir()) == ["lock"]
        holder = f"is in use by process {p.pid} (metadqn train --quick --out {out} --name busy"
        rc, o, err = run_main(capsys, [*argv])  # the same command, started at the same time
        assert rc == 2 and o == "" and _one_error_line(err) and f"error: run folder '{run}' {holder}" in err, err
        assert sorted(x.name for x in run.iterdir()) == ["lock"]
        os.kill(p.pid, signal.SIGCONT)
        _wait_stopped(p, log)  # 2: training, its first checkpoint saved
        assert (run / "checkpoints" / "context" / "10").is_dir()
        metrics = (run / "metrics.csv").read_bytes()
        for other in (["train", "--resume", str(run), "--no-progress"], ["evaluate", str(run)]):
            rc, o, err = run_main(capsys, other)
            assert rc == 2 and _one_error_line(err) and holder in err, (other, err)
        assert (run / "metrics.csv").read_bytes() == metrics  # not truncated under the running job
    finally:
        p.kill()  # kill -9 (works on a stopped process)
        p.wait()
    # no stale lock: the lock is taken (the refusal below comes after it), then the run resumes
    rc, _, err = run_main(capsys, ["train", "--resume", str(run), "--meta-steps", "5"])
    assert rc == 2 and err.startswith("error: --resume: meta.num_meta_steps is 5 but the context checkpoint "
                                      "(meta-step 10) is past it"), err
    rc, o, err = run_main(capsys, ["train", "--resume", str(run), "--no-progress"])
    assert rc == 0, err
    assert "context: resuming from the checkpoint at meta-step 10" in err and "| context |" in o
    assert (run / "policy" / "context").is_dir()


# --------------------------------------------------------------- operating-system errors
@contextlib.contextmanager
def _read_only(path: Path):
    """``path`` read-only: mode 0555, or for root (whom modes do not stop) the immutable
    attribute; skips the test where neither is possible."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("running as root on a file system without chattr +i: cannot make a folder read-only")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def _fake_run(capsys, run: Path) -> Path:
    """A train run folder holding only its config.yaml (enough to reach the folder checks)."""
    rc, text, _ = run_main(capsys, ["train", "--quick", "--print-config"])
    assert rc == 0
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(text)
    return run


def test_read_only_folders_are_one_line_before_any_work(capsys, tmp_path):
    run = _fake_run(capsys, tmp_path / "ro" / "run")
    with _read_only(run):
        for argv in (["train", "--resume", str(run), "--no-progress"], ["evaluate", str(run)]):
            rc, out, err = run_main(capsys, argv)
            assert rc == 2 and out == "" and _one_error_line(err), (argv, err)
            assert err.startswith(f"error: run folder '{run}' is not writable"), err
        assert sorted(x.name for x in run.iterdir()) == ["config.yaml"]
    runs.RunLock(run).acquire().release()  # with a lock file already there: the write check still fails
    with _read_only(run):
        rc, _, err = run_main(capsys, ["evaluate", str(run)])
        assert rc == 2 and err.startswith(f"error: run folder '{run}' is not writable"), err
    parent = tmp_path / "ro"
    with _read_only(parent):  # a new run in a read-only --out
        rc, out, err = run_main(capsys, ["train", "--quick", "--out", str(parent), "--name", "new"])
        assert rc == 2 and out == "" and _one_error_line(err), err
        assert err.startswith(f"error: cannot create the run folder '{parent / 'new'}' ("), err
    assert not (parent / "new").exists()


def test_not_a_folder_and_long_names_are_one_line(capsys, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = [
        (["train", "--quick", "--out", str(afile)], f"error: --out '{afile}' is not a folder"),
        (["train", "--quick", "--out", str(afile / "sub")], f"error: --out '{afile / 'sub'}' is not a folder"),
        (["train", "--resume", str(afile)], f"error: '{afile}' is not a run folder (it is a file)"),
        (["evaluate", str(afile)], f"error: '{afile}' is not a run folder (it is a file)"),
        (["train", "--quick", "--out", str(tmp_path), "--name", "n" * 300],
         "error: --name is too long for a folder name (300 bytes; at most 255)"),
        (["dqn", "--quick", "--out", str(tmp_path), "--name", "n" * 300],
         "error: --name is too long for a folder name (300 bytes; at most 255)"),
    ]
    for argv, message in cases:
        rc, out, err = run_main(capsys, [*argv, "--no-compile-cache"])
        assert rc == 2 and out == "" and _one_error_line(err) and err.startswith(message), (argv, err)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["afile"]


def test_os_error_during_a_command_is_one_line(capsys, tmp_path, monkeypatch):
    """An OSError that no check could foresee (e.g. the disk filling up) is one line too."""
    from metadqn_jax.app import families

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "x"))

    monkeypatch.setattr(families, "cmd_families", full)
    parser_func = cli.build_parser  # the parser binds cmd_families when it is built

    def build(*a, **k):
        p = parser_func(*a, **k)
        sub = next(x for x in p._actions if x.__class__.__name__ == "_SubParsersAction")
        sub.choices["families"].set_defaults(func=full)
        return p

    monkeypatch.setattr(cli, "build_parser", build)
    rc, _, err = run_main(capsys, ["families"])
    assert rc == 2 and err == f"error: No space left on device: '{tmp_path / 'x'}'\n"


# ------------------------------------------------------------------------------ divergence
DIVERGE = ["train", "--quick", "--baselines", "scratch", "--meta-lr", "1e6", "--inner-lr", "1e6", "--no-progress"]


def test_divergence_stops_with_status_3_and_writes_nothing_downstream(capsys, tmp_path):
    rc, out, err = run_main(capsys, [*DIVERGE, "--out", str(tmp_path), "--name", "div"])
    assert rc == 3 and out == ""
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith("error: context: meta-training diverged at meta-step "), err
    assert "no policy or results were written" in lines[0] and "Traceback" not in err
    run = tmp_path / "div"
    assert not (run / "policy").exists() and not list(run.glob("few_shot*"))
    assert not (run / "checkpoints" / "context").exists() or \
        not any(p.name.isdigit() for p in (run / "checkpoints" / "context").iterdir())
    # the option to keep going: the run ends and reports what it got
    rc, out, err = run_main(capsys, [*DIVERGE, "--out", str(tmp_path), "--name", "on",
                                     "--keep-going-on-divergence"])
    assert rc == 0, err
    assert "warning: context: meta-training diverged at meta-step " in err and "Traceback" not in err
    assert "| context |" in out and (tmp_path / "on" / "policy" / "context").is_dir()


def test_divergence_keeps_the_last_good_checkpoint(capsys, tmp_path, monkeypatch):
    """When the guard fires after a checkpoint, that checkpoint stays the latest, the line
    names it, and the run resumes from it (the guard itself is simulated at meta-step 12)."""
    import metadqn_jax.driver as driver

    real = driver.first_divergence

    def fake(checks, start_step):
        if start_step == 10:
            return 12, "query_loss", float("inf")
        return real(checks, start_step)

    monkeypatch.setattr(driver, "first_divergence", fake)
    rc, out, err = run_main(capsys, ["train", "--quick", "--baselines", "none", "--no-progress", "--out",
                                     str(tmp_path), "--name", "late"])
    assert rc == 3 and out == ""
    assert ("error: context: meta-training diverged at meta-step 12: query_loss is inf; its last good checkpoint "
            "(meta-step 10) is the latest; no policy or results were written for it") in err, err
    run = tmp_path / "late"
    from metadqn_jax.checkpoint import Checkpointer

    assert Checkpointer(run / "checkpoints" / "context").steps() == [10] and not (run / "policy").exists()
    assert [r.split(",")[1] for r in (run / "metrics.csv").read_text().splitlines()[1:]] == ["5", "10"]
