"""Crash-safety and resumption of `agentlab.core.runs` across real processes.

A writer subprocess appends records slowly through `run_items` and is killed with SIGKILL mid-run; the file must
read cleanly, a hand-truncated last line must be dropped with a warning, and resuming must compute exactly the
missing ids. Also: manifest fields, `resumed_at`, git sha, and refusal of changed parameters.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from agentlab.core.runs import JsonlRecords, RunStore, git_sha, run_items

ROOT = Path(__file__).resolve().parents[1]
N_ITEMS = 200

WRITER = """
import os, sys, time
from agentlab.core.runs import RunStore, run_items
store = RunStore(sys.argv[1], params={"n": int(sys.argv[2])}, seeds={"base": 0})
def slow_square(x):
    time.sleep(0.02)
    return {"y": x * x, "pid": os.getpid(), "pad": "x" * 2000}
run_items([(i, i) for i in range(int(sys.argv[2]))], slow_square, store, progress=False)
store.finish()
"""


def _raw_lines(path: Path) -> list:
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _start_writer(run_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", WRITER, str(run_dir), str(N_ITEMS)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_lines(path: Path, n: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= n: return
        if proc.poll() is not None:
            raise AssertionError(f"writer exited early ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.01)
    raise AssertionError(f"writer did not write {n} lines within {timeout}s")


def test_killed_writer_then_truncated_line_then_resume(tmp_path):
    run_dir = tmp_path / "run"
    path = run_dir / "records.jsonl"
    proc = _start_writer(run_dir)
    try:
        _wait_for_lines(path, 8, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None: proc.kill(); proc.wait()
    assert proc.returncode == -signal.SIGKILL

    # 1. the file a SIGKILLed writer leaves reads cleanly: every line is whole (single os.write per record)
    records = JsonlRecords(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        before = records.read()
    assert path.read_bytes().endswith(b"\n")
    ids_before = [r["id"] for r in before]
    assert 8 <= len(ids_before) < N_ITEMS, "kill the writer mid-run"
    assert ids_before == list(range(len(ids_before)))
    writer_pid = before[0]["pid"]
    assert writer_pid == proc.pid
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "running" and manifest["end_time"] is None   # it never got to finish()

    # 2. what a non-atomic writer could leave: half a line. Reading drops it with a warning naming file:line.
    with open(path, "ab") as f: f.write(b'{"id": %d, "y": 12' % len(ids_before))
    with pytest.warns(UserWarning, match=rf"records\.jsonl:{len(ids_before) + 1}: dropped a truncated last line"):
        assert [r["id"] for r in records] == ids_before

    # 3. resume in this process: the fragment is cut (one warning), only missing ids are computed
    calls = []
    def square(x):
        calls.append(x)
        return {"y": x * x, "pid": os.getpid(), "pad": ""}
    store = RunStore(run_dir, params={"n": N_ITEMS}, seeds={"base": 0})
    with pytest.warns(UserWarning, match="removed a truncated last line") as caught:
        out = run_items([(i, i) for i in range(N_ITEMS)], square, store, progress=False)
    assert len([w for w in caught if "truncated" in str(w.message)]) == 1
    store.finish()

    assert calls == list(range(len(ids_before), N_ITEMS))                    # earlier results not recomputed
    assert [r["id"] for r in out] == list(range(N_ITEMS))
    assert [r["y"] for r in out] == [i * i for i in range(N_ITEMS)]
    assert all(r["pid"] == writer_pid for r in out[:len(ids_before)])
    assert all(r["pid"] == os.getpid() for r in out[len(ids_before):])
    raw = _raw_lines(path)                                                   # every line valid JSON, each id once
    assert sorted(r["id"] for r in raw) == list(range(N_ITEMS))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "finished" and len(manifest["resumed_at"]) == 1

    # 4. a second resume has nothing to do
    calls.clear()
    assert run_items([(i, i) for i in range(N_ITEMS)], square, RunStore(run_dir), progress=False) == out
    assert calls == []


def test_corrupt_middle_line_is_an_error(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": 1}\n{"id": 2\n{"id": 3}\n')
    with pytest.raises(ValueError, match=r"r\.jsonl:2: corrupt record"):
        JsonlRecords(path).read()


def _git(*args, cwd):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_manifest_fields_and_resumed_at(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git("init", "-q", cwd=repo)
    (repo / "a.txt").write_text("a")
    _git("add", "a.txt", cwd=repo)
    _git("commit", "-q", "-m", "init", cwd=repo)
    sha = _git("rev-parse", "HEAD", cwd=repo)
    monkeypatch.chdir(repo)
    assert git_sha() == sha
    assert git_sha(tmp_path) is None                                         # not a repository

    run_dir = tmp_path / "runs" / "exp1"
    params = {"lr": np.float32(0.5), "n": np.int64(3), "data": Path("data/x.jsonl"), "tags": ["a"]}
    with RunStore(run_dir, params=params, seeds=[0, 1]) as store:
        store.records().append("a", {"score": np.float64(1.5)})
    m = json.loads((run_dir / "manifest.json").read_text())
    for key in ["run_id", "status", "params", "seeds", "git_sha", "git_dirty", "python", "platform", "packages",
                "argv", "start_time", "end_time", "resumed_at", "wall_time_s"]:
        assert key in m, key
    assert m["run_id"] == "exp1" and m["status"] == "finished"
    assert m["git_sha"] == sha and m["git_dirty"] is False
    assert m["params"] == {"lr": 0.5, "n": 3, "data": "data/x.jsonl", "tags": ["a"]}
    assert m["seeds"] == [0, 1]
    assert m["packages"]["numpy"] == np.__version__
    assert m["python"] == sys.version.split()[0]
    assert m["end_time"] >= m["start_time"] and m["resumed_at"] == []
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]

    first_start = m["start_time"]
    store = RunStore(run_dir, params=params, seeds=[0, 1])
    assert store.resumed
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["status"] == "running" and m["end_time"] is None
    assert m["start_time"] == first_start and len(m["resumed_at"]) == 1 and m["resumed_at"][0] >= first_start
    store.finish("finished")
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["status"] == "finished" and m["end_time"] >= m["resumed_at"][0]

    with pytest.raises(RuntimeError):
        with RunStore(run_dir):
            raise RuntimeError("boom")
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["status"] == "failed" and "boom" in m["error"] and len(m["resumed_at"]) == 2


def test_param_mismatch_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    RunStore(run_dir, params={"n": 10, "model": "rule:echo"}, seeds={"base": 0}).finish()
    with pytest.raises(ValueError, match=r"cannot resume with different parameters \(params: n: 10 -> 20\)"):
        RunStore(run_dir, params={"n": 20, "model": "rule:echo"})
    with pytest.raises(ValueError, match=r"model: 'rule:echo' -> \(missing\)"):
        RunStore(run_dir, params={"n": 10})
    with pytest.raises(ValueError, match=r"seeds: base: 0 -> 1"):
        RunStore(run_dir, seeds={"base": 1})
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["params"] == {"n": 10, "model": "rule:echo"} and m["resumed_at"] == []   # refused opens change nothing
    store = RunStore(run_dir, params={"n": 20, "model": "rule:echo"}, allow_param_change=True)
    assert store.manifest["params"]["n"] == 20
    assert store.manifest["param_changes"][0]["old"] == {"n": 10, "model": "rule:echo"}
