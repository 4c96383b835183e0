"""TravelGym (UserBench) across modules: synthetic tasks from `agentlab.gyms.travel_data` driven through
`agentlab.gyms.travel.TravelGym` with the rule-based roles.

Covered: the scripted expert reaches 1.0 on every synthetic test task of a configuration (and on official parquet
tasks), one-choice vs multi-choice answering, passive elicitation on the 3rd consecutive off-target action, the
failure of every 5th search, the faithful (reference) termination option, random-action fuzzing (rewards in [0, 1],
malformed actions change nothing), determinism of task generation across processes, the Gymnasium registry, and
loading every official TravelGym parquet file in ../shared/data/userrl/train (skipped when the folder is absent).
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from agentlab.core.seeding import as_generator
from agentlab.gyms.travel import (SEARCH_FAILURE, TYPE3_REPLY, TravelGym, preference_question, search_query)
from agentlab.gyms.travel_data import (CONFIGS, TEST_SIZES, TravelTask, check_aspect, generate_tasks, load_tasks,
                                       parse_task_id)

ROOT = Path(__file__).resolve().parents[1]


def play(env, task, policy, seed=0, rng=None):
    env.reset(seed=seed, options={"task": task})
    while not (env.terminated or env.truncated):
        env.step(policy(env) if rng is None else policy(env, rng))
    return env.score()


def oracle(env):
    return env.oracle_action()


# ------------------------------------------------------------------------------------------ synthetic benchmark

def test_synthetic_sizes_and_labels():
    tasks = generate_tasks()
    assert len(tasks) == 471 and len({t.task_id for t in tasks}) == 471
    for cfg in CONFIGS:
        assert sum(t.config == cfg for t in tasks) == TEST_SIZES[cfg]
    for t in tasks[::7]:
        assert [p[1] for p in parse_task_id(t.task_id)] == [len(a.preferences) for a in t.aspects]
        for a in t.aspects:
            check_aspect(a)


@pytest.mark.parametrize("config", ["22", "444"])
def test_oracle_solves_every_task_of_a_config(config):
    tasks = generate_tasks(config=config)
    env = TravelGym(tasks, max_steps=16)
    scores = [play(env, t, oracle) for t in tasks]
    assert scores == [1.0] * TEST_SIZES[config]
    s = env.episode_summary()
    assert s["best_exist"] == 1.0 and s["correct_exist"] == 1.0 and s["passive"] == 0


def test_oracle_elicits_everything_when_steps_allow():
    env = TravelGym(generate_tasks(20), max_steps=30)
    for t in env.tasks:
        assert play(env, t, oracle) == 1.0
        s = env.episode_summary()
        assert s["active"] == s["total_preferences"] == len(t.preferences)
        assert s["n_valid_search"] == s["n_search"] == len(t.aspects)


def test_one_choice_vs_multi_choice():
    task = generate_tasks(1, config="33")[0]
    a = task.aspects[0]
    wrong = a.wrong[0]["id"]
    multi = TravelGym([task], one_choice=False)
    multi.reset(seed=0)
    rewards = [multi.step(f"[answer] {x}")[1] for x in (wrong, a.best_id, a.best_id)]
    assert rewards == [0.0, 1.0, 0.0]            # the best is removed after it is found
    assert multi.score() == 0.5 and len(multi.remaining) == len(task.preferences)
    one = TravelGym([task])
    one.reset(seed=0)
    rewards = [one.step(f"[answer] {x}")[1] for x in (wrong, a.best_id)]
    assert rewards == [0.0, 0.0] and one.history[-1]["answer"] == "repeat_aspect"
    assert one.score() == 0.0
    assert all(one._idx["prefs"][p].aspect != a.aspect for p in one.remaining)   # the aspect's preferences are deleted
    assert one.deleted == [p.pid for p in a.preferences]
    # a search-then-answer-everything agent: multi-choice finds the best eventually, one-choice gets one shot
    multi.reset(seed=1)
    multi.step(f"[search] {search_query(a.aspect, a.arguments)}")
    for o in a.correct + a.wrong:
        if multi.terminated or multi.truncated:
            break
        multi.step(f"[answer] {o['id']}")
    assert multi.aspect_reward[a.aspect] in (0.8, 1.0)


def test_passive_elicitation_on_third_off_target_action():
    task = generate_tasks(1, config="44")[0]
    env = TravelGym([task])
    env.reset(seed=0)
    env.step("[action] Hello there!")                                   # type 1
    env.step("[search] something unrelated")                            # searches do not reset the counter
    env.step(f"[action] Any preferences for the {task.dimensions[0]}?")  # type 4
    assert env.passive == [] and env.nonpreference_times == 2
    obs, reward, *_ = env.step("[action] Lovely weather.")              # 3rd off-target action
    assert len(env.passive) == 1 and reward == 0.0 and env.nonpreference_times == 0
    assert env.history[-1]["passive_elicited_preferences"] == env.passive
    assert obs["feedback"].startswith("By the way")
    # a concrete question about a real preference resets the counter
    env.step("[action] hi"); env.step("[action] hi")
    p = env._idx["prefs"][env.remaining[0]]
    _, reward, *_ = env.step(f"[action] {preference_question(p)}")
    assert reward == 0.2 and env.active == [p.pid] and len(env.passive) == 1
    env.step("[action] hi"); env.step("[action] hi")
    assert len(env.passive) == 1
    env.step("[action] hi")
    assert len(env.passive) == 2


def test_type3_question_counts_as_off_target():
    task = generate_tasks(1, config="22")[0]
    env = TravelGym([task])
    env.reset(seed=0)
    mine = {p.subcategory for p in task.aspects[0].preferences}
    from agentlab.gyms.travel_data import CATALOGUE
    other = next(s for n, s in CATALOGUE[task.dimensions[0]].items() if n not in mine)
    obs, *_ = env.step(f"[action] {other.question}")
    assert obs["feedback"] == TYPE3_REPLY and env.history[-1]["utterance_type"] == 3


def test_every_fifth_search_fails():
    task = generate_tasks(1, config="333")[0]
    env = TravelGym([task], max_steps=20)
    env.reset(seed=0)
    queries = [search_query(a.aspect, a.arguments) for a in task.aspects]
    outcomes = []
    for i in range(12):
        obs, r, *_ = env.step(f"[search] {queries[i % 3]}")
        outcomes.append(env.history[-1]["search"])
    assert [i + 1 for i, o in enumerate(outcomes) if o == "backend_error"] == [5, 10]
    assert outcomes[:3] == ["True"] * 3 and set(outcomes) == {"True", "repeat", "backend_error"}
    assert env.history[4]["feedback"] == SEARCH_FAILURE and env.history[4]["reward"] == 0.0
    never = TravelGym([task], search_failure_interval=0, max_steps=20)
    never.reset(seed=0)
    for i in range(10):
        never.step(f"[search] {queries[0]}")
    assert "backend_error" not in [h["search"] for h in never.history]


def test_faithful_async_termination():
    task = generate_tasks(1, config="22")[0]
    wrongs = [a.wrong[0]["id"] for a in task.aspects]
    fixed = TravelGym([task])
    fixed.reset(seed=0)
    results = [fixed.step(f"[answer] {w}") for w in wrongs]
    assert results[-1][2] is True and fixed.terminated           # every aspect answered: the episode ends
    faithful = TravelGym([task], faithful_async_termination=True, max_steps=6)
    faithful.reset(seed=0)
    results = [faithful.step(f"[answer] {w}") for w in wrongs]
    assert not any(r[2] for r in results)                       # the reference's async step runs on ...
    while not faithful.truncated:
        faithful.step("[action] anything else?")
    assert faithful.step_count == 6 and not faithful.terminated    # ... to max_steps
    # finding every best option ends the episode in both modes
    faithful.reset(seed=0)
    for a in task.aspects:
        faithful.step(f"[answer] {a.best_id}")
    assert faithful.terminated and faithful.score() == 1.0


def test_reward_presets():
    task = generate_tasks(1)[0]
    a, p = task.aspects[0], task.aspects[0].preferences[0]
    for preset, (sr, pr) in {"userbench": (0.2, 0.2), "userrl_train": (0.0, 0.8), "userrl_eval": (0.2, 0.6)}.items():
        env = TravelGym([task], reward_preset=preset)
        env.reset(seed=0)
        assert env.step(f"[search] {search_query(a.aspect, a.arguments)}")[1] == sr
        assert env.step(f"[action] {preference_question(p)}")[1] == pr
        assert env.step(f"[answer] {a.best_id}")[1] == 1.0
    env = TravelGym([task], best_reward=2.0, wrong_penalty=0.5)
    env.reset(seed=0)
    assert env.step(f"[answer] {a.wrong[0]['id']}")[1] == 0.0          # clipped to [0, 1]
    env.reset(seed=0)
    assert env.step(f"[answer] {a.best_id}")[1] == 1.0


def test_random_fuzz_and_malformed_actions():
    env = TravelGym(generate_tasks(40), max_steps=20, one_choice=False)
    rng = as_generator(0)
    garbage = ["", "no tag", "[book] H1", "[answer]", "[answer] H1, H2", "[answer] hotel", "[search]", None, 42,
               "[action]", "[ACTION] hi", "[answer] Z3"]
    for i, task in enumerate(env.tasks):
        env.reset(seed=i, options={"task": task})
        while not (env.terminated or env.truncated):
            if rng.random() < 0.2:
                x = garbage[int(rng.integers(len(garbage)))]
                before = {k: v for k, v in env.state_dict().items() if k != "dialogue"}
                obs, r, term, trunc, info = env.step(x)
                after = {k: v for k, v in env.state_dict().items() if k != "dialogue"}
                if info.get("format_error") or (env.history[-1].get("answer") in ("multiple", "format")):
                    assert before == after and r == 0.0
            else:
                obs, r, term, trunc, info = env.step(env.random_action(rng))
            assert 0.0 <= r <= 1.0 and isinstance(obs["feedback"], str)
        s = env.episode_summary()
        assert 0.0 <= s["score"] <= 1.0 and s["steps"] <= 20
        assert s["active"] + s["passive"] <= s["total_preferences"]
        json.dumps(env.history)                          # history is JSON-able
    obs, r, term, trunc, info = env.step("[action] after the end")
    assert obs["feedback"].startswith("The episode has ended") and r == 0.0


def test_generation_is_stable_across_processes():
    here = [(t.task_id, t.best_ids, t.initial_description) for t in generate_tasks(5, config="334")]
    code = ("import json; from agentlab.gyms.travel_data import generate_tasks; "
            "print(json.dumps([(t.task_id, t.best_ids, t.initial_description) for t in generate_tasks(5, config='334')]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""}, cwd=ROOT)
    assert [tuple(x[:1]) + (tuple(x[1]),) + tuple(x[2:]) for x in json.loads(out.stdout)] == here


def test_registry_makes_travelgym():
    from agentlab.gyms import make_gym
    env = make_gym("travel", one_choice=False, max_steps=20, reward_preset="userrl_eval")
    assert isinstance(env, TravelGym) and len(env.tasks) == 471 and not env.one_choice
    obs, info = env.reset(seed=0)
    assert info["gym"] == "travel" and obs["feedback"].endswith("cheapest option for each.")


# ------------------------------------------------------------------------------------------ official files

def travel_parquets(shared_data):
    files = sorted((shared_data / "userrl" / "train").glob("travel*.parquet"))
    if not files:
        pytest.skip("no TravelGym parquet files under ../shared/data/userrl/train")
    return files


def test_load_every_official_travel_parquet(shared_data):
    import pyarrow.parquet as pq
    files = travel_parquets(shared_data)
    total = 0
    for path in files:
        tasks = load_tasks(path)
        table = pq.read_table(path, columns=["prompt", "reward_model"]).to_pylist()
        assert len(tasks) == len(table), path.name
        total += len(tasks)
        cfg = path.name.split("_")[0].removeprefix("travel")
        for t, row in zip(tasks, table):
            assert isinstance(t, TravelTask) and t.source == "parquet+synthetic"
            assert t.task_id == row["reward_model"]["id"]
            assert sorted(t.best_ids) == sorted(eval(row["reward_model"]["ground_truth"]))   # a literal list of strings
            assert t.initial_description == next(m["content"] for m in row["prompt"] if m["role"] == "user")
            if cfg:
                assert t.config == cfg, (path.name, t.task_id)
            assert all(a.arguments for a in t.aspects)
    assert total >= 2107


def test_oracle_on_official_tasks(shared_data):
    files = travel_parquets(shared_data)
    tasks = [t for path in files for t in load_tasks(path)[:12]]
    env = TravelGym(tasks, max_steps=16)
    scores = [play(env, t, oracle) for t in tasks]
    assert scores == [1.0] * len(tasks)
    # the natural search request built from each task's arguments is accepted by the rule judge
    for t in tasks[:30]:
        env.reset(seed=0, options={"task": t})
        for a in t.aspects:
            env.step(f"[search] {search_query(a.aspect, a.arguments)}")
            assert env.history[-1]["search"] == "True", (t.task_id, a.aspect, a.arguments)
