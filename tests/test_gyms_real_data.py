"""FunctionGym on the real UserRL task files (skipped when ../shared/data/userrl is absent)."""
import json

import numpy as np
import pytest

from agentlab.gyms.data import find_userrl_data, read_verl_parquet
from agentlab.gyms.function import FunctionGym, evaluate_rule, load_tasks, load_userrl_tasks


@pytest.fixture(scope="module")
def userrl(shared_data):
    root = find_userrl_data(shared_data / "userrl")
    if root is None: pytest.skip(f"{shared_data / 'userrl'} is absent")
    for rel in ("gyms/functions.json", "train/function_multiturn.parquet"):
        if not (root / rel).is_file(): pytest.skip(f"{root / rel} is absent")
    return root


def test_every_record_loads_and_checks(userrl):
    records = json.loads((userrl / "gyms" / "functions.json").read_text())
    tasks = load_tasks(userrl / "gyms" / "functions.json")  # evaluates every rule at its test case
    assert len(tasks) == len(records) == len({t.task_id for t in tasks})
    for rec, task in zip(records, tasks):
        assert (task.task_id, task.rule, list(task.test_case)) == (rec["id"], rec["rule"], rec["test_case"])
        assert evaluate_rule(task.rule, task.test_case) == pytest.approx(rec["expected_result"], abs=1e-9)


def test_parquet_rows_match_records(userrl):
    rows = read_verl_parquet(userrl / "train" / "function_multiturn.parquet")
    train = load_tasks(rows, functions=userrl / "gyms" / "functions.json")  # ground truths checked against records
    assert len(train) == len(rows) and all(r.env_name == "FunctionGym" for r in rows)
    assert [t.task_id for t in train] == [r.key for r in rows]
    test = load_userrl_tasks("test", root=userrl)
    every = load_userrl_tasks("all", root=userrl)
    assert {t.task_id for t in train}.isdisjoint(t.task_id for t in test)
    assert len(train) + len(test) == len(every)
    assert [t.task_id for t in load_userrl_tasks("train", root=userrl)] == [t.task_id for t in train]
    # the merged RL mix holds a subset of the FunctionGym train rows
    merged = [t.task_id for t in load_tasks(read_verl_parquet(userrl / "train" / "alltrain_multiturn.parquet"), functions=every)]
    assert merged and set(merged) <= {t.task_id for t in train}


def play(env, policy):
    while not (env.terminated or env.truncated): env.step(policy())
    return env.score()


def test_oracle_solves_and_wrong_answers_score_zero(userrl):
    tasks = load_userrl_tasks("all", root=userrl)
    env = FunctionGym(tasks)
    sample = range(0, len(tasks), 3)  # a third of the 538 rules (all of them take < 1 s too)
    for i in sample:
        env.reset(seed=i, options={"index": i})
        assert play(env, env.oracle_action) == 1.0, env.history
        assert env.step_count <= 7
    for i in sample:
        env.reset(seed=i, options={"index": i})
        expected = env.task.expected
        env.step("[search] test")
        for wrong in (expected + 1, expected - 0.01, -expected - 7):
            _, reward, terminated, _, info = env.step(f"[answer] {wrong!r}")
            assert (reward, terminated, info["correct"]) == (0.0, False, False)
        a, b, c, d = env.task.test_case
        assert "not revealed" in env.step(f"[action] {a} {b} {c} {d}")[0]["feedback"]  # test case protection
        assert env.score() == 0.0


def test_random_agent_rarely_solves(userrl):
    env, rng = FunctionGym(load_userrl_tasks("test", root=userrl)), np.random.default_rng(0)
    scores = []
    for ep in range(100):
        env.reset(seed=ep)
        scores.append(play(env, lambda: env.random_action(rng)))
    assert np.mean(scores) < 0.2
