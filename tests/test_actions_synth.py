"""Synthetic function-calling data (agentlab.actions.synth) with its verifier (agentlab.actions.verify):
determinism, balanced kinds, valid trajectories, injected errors caught under the right reason, the subprocess
timeout, nothing lost (kept + rejected == generated), and the `agentlab gen synth` command."""
import json
import os
import time
from collections import Counter

import pytest

from agentlab.actions.synth import (CORRUPTIONS, DEFAULT_CORRUPTIONS, KINDS, generate_dataset, generate_trajectories)
from agentlab.actions.tools import ToolRegistry, default_registry
from agentlab.actions.trajectory import Trajectory, read_jsonl
from agentlab.actions.verify import ToolExecutor, VerifyReport, verify_trajectories


def _dicts(trajs):
    return [t.to_dict() for t in trajs]


def test_generation_is_deterministic_and_prefix_stable():
    a, _ = generate_trajectories(60, seed=7)
    b, _ = generate_trajectories(60, seed=7)
    assert _dicts(a) == _dicts(b)
    shorter, _ = generate_trajectories(25, seed=7)
    assert _dicts(shorter) == _dicts(a[:25])           # record i depends only on (seed, i)
    other, _ = generate_trajectories(60, seed=8)
    same = sum(x.conversation[0]["content"] == y.conversation[0]["content"] for x, y in zip(a, other))
    assert same <= 3
    # corrupted runs are deterministic too
    c1 = generate_dataset(80, seed=2, corrupt=0.25)
    c2 = generate_dataset(80, seed=2, corrupt=0.25)
    assert c1.corrupted == c2.corrupted and _dicts(c1.trajectories) == _dicts(c2.trajectories)


@pytest.mark.parametrize("n", [5, 103])
def test_kinds_are_balanced(n):
    res = generate_dataset(n, seed=1)
    counts = Counter(t.meta["kind"] for t in res.trajectories)
    assert set(counts) <= set(KINDS)
    assert sum(counts.values()) == n
    assert max(counts.values()) - min(counts.values()) <= 1 and len(counts) == min(n, len(KINDS))
    sub = generate_dataset(40, seed=1, kinds=("parallel", "irrelevance"))
    assert Counter(t.meta["kind"] for t in sub.trajectories) == {"parallel": 20, "irrelevance": 20}


def test_kept_records_are_valid_trajectories_and_round_trip():
    res = generate_dataset(150, seed=3, with_results=True)
    assert res.report.counts == Counter() and len(res.trajectories) == 150   # clean data passes every check
    for t in res.trajectories:
        assert isinstance(t, Trajectory)
        t.validate()
        back = Trajectory.from_dict(json.loads(json.dumps(t.to_dict())))
        assert back.to_dict() == t.to_dict()
        kind, calls = t.meta["kind"], t.calls()
        if kind == "irrelevance": assert calls == []
        elif kind in ("simple", "multiple"): assert len(calls) == 1
        else: assert len(calls) >= 2
        if calls:   # results attached: one tool message per call, then a final text answer
            assert sum(m["role"] == "tool" for m in t.conversation) == len(calls)
            assert t.conversation[-1]["role"] == "assistant" and not t.conversation[-1].get("tool_calls")


def test_corrupted_records_are_caught_by_reason(tmp_path):
    q = tmp_path / "quarantine.jsonl"
    n = 360
    res = generate_dataset(n, seed=11, corrupt=0.25, quarantine_path=q)
    rep = res.report
    assert len(res.corrupted) == 90
    assert set(res.corrupted.values()) == set(DEFAULT_CORRUPTIONS)
    table = res.corruption_table()
    for op, fates in table.items():
        expected = CORRUPTIONS[op] or "kept"
        assert fates == {expected: sum(fates.values())}, (op, fates)
    # nothing lost, nothing silently dropped, only injected records rejected
    assert len(rep.kept) + len(rep.rejected) == n == rep.total
    assert sum(rep.counts.values()) == len(rep.rejected) == 90 - table["fixable_type"]["kept"]
    lines = [json.loads(line) for line in q.read_text().splitlines()]
    assert len(lines) == len(rep.rejected)
    assert {d["id"] for d in lines} <= set(res.corrupted)
    assert Counter(d["reason"] for d in lines) == rep.counts
    assert all(d["detail"] and d["stage"] in ("format", "execution", "semantic") for d in lines)
    assert rep.fixes.total() >= table["fixable_type"]["kept"]
    summary = res.summary()
    json.dumps(summary)
    assert summary["verification"]["rejected"] + summary["kept"] == n
    # the ablation: without verification every injected record would be kept
    raw = generate_dataset(n, seed=11, corrupt=0.25, verify=False)
    assert len(raw.trajectories) == n and raw.report is None


def test_corrupt_fraction_is_validated():
    with pytest.raises(ValueError, match="corrupt must be a fraction"):
        generate_dataset(10, corrupt=1.5)
    with pytest.raises(ValueError, match="only 0 of 10 have tool calls"):
        generate_dataset(10, corrupt=0.5, kinds=("irrelevance",))
    with pytest.raises(ValueError, match="unknown corruption"):
        generate_dataset(10, corrupt=0.5, corruptions=("nope",))
    with pytest.raises(ValueError, match="kinds must be"):
        generate_dataset(10, kinds=("simple", "chitchat"))


def _sleepy_registry():
    reg = ToolRegistry([default_registry().get("add")])

    @reg.register
    def sleepy(seconds: float,  # how long to sleep
               ) -> str:
        "Sleep, then answer."
        time.sleep(seconds)
        return "awake"

    @reg.register
    def crash() -> str:
        "Kill the worker process."
        os._exit(7)

    return reg


def test_subprocess_timeout_and_crash_recovery():
    reg = _sleepy_registry()
    t0 = time.time()
    with ToolExecutor(reg, timeout=0.5) as ex:
        out = ex.run([("sleepy", {"seconds": 60}), ("add", {"a": 1, "b": 1}), ("crash", {}), ("add", {"a": 2, "b": 2}),
                      ("add", {"a": "x", "b": 1})])
        assert ex.workers_started == 3
    assert time.time() - t0 < 10
    assert [o.status for o in out] == ["timeout", "ok", "crash", "ok", "error"]
    assert (out[1].result, out[3].result) == (2, 4)
    # in verify_trajectories: a hanging call -> "execution timeout", a crashing one -> "execution error"
    from agentlab.actions.trajectory import tool_call
    def traj(tid, name, args):
        return Trajectory(tid, "", reg.schemas([name]), [{"role": "user", "content": f"run {name} with {json.dumps(args)}"},
                          {"role": "assistant", "content": "", "tool_calls": [tool_call(name, args)]}])
    rep = verify_trajectories([traj("hang", "sleepy", {"seconds": 60}), traj("boom", "crash", {}),
                               traj("fine", "sleepy", {"seconds": 0})], reg, timeout=0.5)
    assert {t.id: r for t, r in rep.rejected} == {"hang": "execution timeout", "boom": "execution error"}
    assert [t.id for t in rep.kept] == ["fine"]
    # a long-running generated call is rejected with "execution timeout", the rest still verified
    res = generate_dataset(30, seed=5, corrupt=0.1, corruptions=("timeout",), timeout=0.5)
    assert res.corruption_table() == {"timeout": {"execution timeout": 3}}
    assert len(res.trajectories) == 27
    assert res.seconds["verify"] < 15


def test_verification_uses_one_worker_for_a_batch():
    trajs, _ = generate_trajectories(300, seed=9)
    with ToolExecutor(default_registry(), timeout=2.0) as ex:
        rep = verify_trajectories(trajs, executor=ex)
        assert ex.workers_started == 1
    assert rep.stats["executed_calls"] > 300 and len(rep.kept) == 300


def test_spawn_start_method_works_with_the_default_registry():
    with ToolExecutor(default_registry(), timeout=20, start_method="spawn") as ex:
        out = ex.run([("factorial", {"n": 5}), ("divide", {"a": 1, "b": 0})])
    assert out[0].status == "ok" and out[0].result == 120
    assert out[1].status == "error" and "division by zero" in out[1].error


def test_report_asserts_nothing_is_lost():
    t = generate_trajectories(1, seed=0)[0][0]
    with pytest.raises(AssertionError, match="lost records"):
        VerifyReport(kept=[t], rejected=[], fixes=Counter(), counts=Counter(), total=2)


def test_gen_synth_cli(tmp_path):
    from agentlab.cli import main
    out = tmp_path / "synth"
    rc = main(["gen", "synth", "--n", "40", "--seed", "4", "--out", str(out), "--corrupt", "0.2"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["quarantine.jsonl", "report.json", "trajectories.jsonl"]
    report = json.loads((out / "report.json").read_text())
    kept = read_jsonl(out / "trajectories.jsonl")
    quarantined = (out / "quarantine.jsonl").read_text().splitlines()
    assert len(kept) == report["kept"] and len(kept) + len(quarantined) == 40 == report["generated"]
    assert report["corrupted"] == 8
