"""Every file of the official UserRL data folder loads, and the gyms run episodes on the loaded tasks.

The folder (../shared/data/userrl: gym JSON files and verl parquet train splits) is optional; the tests skip with
the reason when it is absent. TauGym's files (tau_train.json, tau_multiturn.parquet) are read as verl rows here;
the gym itself comes with the tool-domain issue.
"""
import importlib
from pathlib import Path

import pytest

from agentlab.gyms import GYMS, make_gym
from agentlab.gyms.agents import RandomAgent, ScriptedExpertAgent
from agentlab.gyms.data import find_userrl_data, read_verl_parquet
from agentlab.gyms.harness import arun_episode
from agentlab.llm.base import run_sync

# data_source of the verl rows -> the gym whose loader reads them
SOURCES = {"interact_travelgym": "travel", "interact_function": "function", "interact_telepathygym": "telepathy",
           "interact_turtlegym": "turtle", "interact_intention": "intention", "interact_persuade": "persuade",
           "interact_searchgym": "search"}
JSON_FILES = {"functions.json": "function", "all_entities_refined.json": "telepathy",
              "all_stories_refined.json": "turtle", "all_intentions_train.json": "intention", "questions.json": "search"}


@pytest.fixture(scope="module")
def root(shared_data):
    r = find_userrl_data(shared_data / "userrl")
    if r is None: pytest.skip(f"{shared_data / 'userrl'} is absent")
    return r


def loader(gym):
    return importlib.import_module("agentlab.gyms.travel_data" if gym == "travel" else GYMS[gym].partition(":")[0]).load_tasks


def test_every_parquet_file_reads(root):
    files = sorted((root / "train").glob("*.parquet"))
    assert len(files) >= 10
    for f in files:
        rows = read_verl_parquet(f)
        assert rows, f
        assert all(r.prompt and r.prompt[0]["role"] == "system" for r in rows), f
        sources = {r.data_source for r in rows}
        assert sources <= set(SOURCES) | {"interact_taugym"}, (f.name, sources)


@pytest.mark.parametrize("name", ["function_multiturn", "telepathy_multiturn", "turtle_multiturn", "intention_multiturn",
                                  "persuasion_multiturn", "travel22_multiturn_onechoice", "travel2222_multiturn_onechoice"])
def test_parquet_rows_become_tasks_and_the_expert_solves_one(root, name):
    path = root / "train" / f"{name}.parquet"
    if not path.is_file(): pytest.skip(f"{path} is absent")
    gym = SOURCES[read_verl_parquet(path)[0].data_source]
    tasks = loader(gym)(path)
    assert len(tasks) == len(read_verl_parquet(path))
    env = make_gym(gym, tasks=tasks, max_steps=20)
    rec = run_sync(arun_episode(env, ScriptedExpertAgent(), seed=0, options={"index": 0}))
    assert rec["score"] > 0, (gym, rec["history"][-3:])
    rec = run_sync(arun_episode(env, RandomAgent(seed=0), seed=0, options={"index": 1}))
    assert 0 <= rec["score"] <= 10


@pytest.mark.parametrize("fname", sorted(JSON_FILES))
def test_every_gym_json_file_loads(root, fname):
    path = root / "gyms" / fname
    if not path.is_file(): pytest.skip(f"{path} is absent")
    gym = JSON_FILES[fname]
    tasks = loader(gym)(path)
    assert len(tasks) > 50
    ids = [t.task_id for t in tasks]
    assert len(set(ids)) == len(ids)
    env = make_gym(gym, tasks=tasks)
    obs, info = env.reset(seed=0)
    assert obs["feedback"] and info["gym"] == gym


def test_alltrain_mix_has_the_documented_sources(root):
    path = root / "train" / "alltrain_multiturn.parquet"
    if not path.is_file(): pytest.skip(f"{path} is absent")
    from collections import Counter
    counts = Counter(r.data_source for r in read_verl_parquet(path))
    # UserRL's RL mix (spec §3.2): travel, tau, turtle, persuade, function — never intention/telepathy/search
    assert set(counts) == {"interact_travelgym", "interact_taugym", "interact_turtlegym", "interact_persuade", "interact_function"}
