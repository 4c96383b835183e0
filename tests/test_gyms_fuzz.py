"""Protocol fuzzing of every gym: no action string can crash a gym or change its state through a malformed action.

Every gym class in GYMS is imported if its module has been built (the others are skipped with the reason
"module not built yet"), constructed with its default tasks and rule-based roles, and fed arbitrary actions:
random text, empty and huge strings, unicode, malformed or unknown tags, wrong IDs, non-strings, and actions
after the episode ended. The invariants are those of `agentlab.gyms.base.InteractEnv`.
"""
import functools
import importlib
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentlab.gyms.base import ENDED_FEEDBACK, TAGS, parse_action

GYMS = ["agentlab.gyms.function:FunctionGym", "agentlab.gyms.travel:TravelGym", "agentlab.gyms.telepathy:TelepathyGym",
        "agentlab.gyms.turtle:TurtleGym", "agentlab.gyms.search:SearchGym", "agentlab.gyms.intention:IntentionGym",
        "agentlab.gyms.persuade:PersuadeGym"]

FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])


def load_gym_class(spec: str):
    "The gym class named by 'module:Class'; pytest.skip when its module has not been built yet."
    module_name, cls_name = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):  # the gym's own module (or package) is missing
            pytest.skip("module not built yet")
        raise  # a missing dependency inside a built module is a real failure
    return getattr(module, cls_name)


@functools.lru_cache(maxsize=None)
def make_env(spec: str, max_steps: int = 8):
    "One instance per gym (default tasks, rule-based roles), reused across examples; reset before every use."
    return load_gym_class(spec)(max_steps=max_steps)


@pytest.fixture(params=GYMS, ids=[g.split(":")[1] for g in GYMS])
def gym_spec(request):
    return request.param


@pytest.fixture
def env(gym_spec):
    return make_env(gym_spec)


SPECIAL = ["", " ", "\n\t", "x" * 100_000, "[answer] " + "9" * 100_000, "[action] " + "é" * 50_000,
           "[action]", "[search]", "[answer]", "[finish]", "[finish] bye", "[FINISH]", "[ Answer ] 1",
           "[ask] what?", "[]", "[[answer]] 1", "[answer", "answer] 1", "[answer]]", "[act ion] x",
           "[answer] F99999", "[answer] Z1", "[answer] F1, H2", "[answer] 99999999999999999999999", "[answer] -1e309",
           "[answer] nan", "[answer] inf", "[action] 1 2 3 4", "[action] 999999999 999999999 999999999 999999999",
           "[action] 0 0 0 0", "[search] test", "[search] " + "flight " * 2000, "[search] {\"aspect\": \"flight\"}",
           "[action] 🤖🔥 ∑∫ 中文 العربية", "\x00[answer]\x00", "[answer]\u200b 1", "[answer] \ud800",
           "<tool_call>{\"name\": \"interact_with_env\"}</tool_call>", "ünïcödé [answer] 7", "[action]\n\n\n"]

NON_STRINGS = [None, 42, 3.5, b"[answer] 1", ["[answer] 1"], {"choice": "answer", "content": "1"}]

tagged = st.builds(lambda tag, body: f"[{tag}] {body}",
                   st.sampled_from(list(TAGS) + ["ACTION", "Search", "foo", "", "answer "]), st.text(max_size=200))
actions = st.one_of(st.text(max_size=300), tagged, st.sampled_from(SPECIAL), st.sampled_from(NON_STRINGS))


def check_step(env, action):
    "Step once and check the protocol invariants; returns whether the episode is over."
    was_over = env.terminated or env.truncated
    before, n_hist, n_steps = env.state_dict(), len(env.history), env.step_count
    obs, reward, terminated, truncated, info = env.step(action)
    assert isinstance(obs, dict) and isinstance(obs["feedback"], str) and set(obs) == {"feedback", "step", "done"}
    assert isinstance(reward, float) and math.isfinite(reward)
    assert isinstance(terminated, bool) and isinstance(truncated, bool)
    assert isinstance(info, dict) and info["gym"] == env.gym_name
    if was_over:
        assert (obs["feedback"], reward, terminated) == (ENDED_FEEDBACK, 0.0, True)
        assert env.state_dict() == before and len(env.history) == n_hist and env.step_count == n_steps
        return True
    assert env.step_count == n_steps + 1 and len(env.history) == n_hist + 1
    parsed = parse_action(action)
    accepted = parsed.error is None and (parsed.choice == "finish" or parsed.choice in env.choices)
    if not accepted:
        assert obs["feedback"].startswith("Format error:"), obs["feedback"][:200]
        assert reward == 0.0 and not terminated
        assert env.state_dict() == before, "a malformed action changed the gym state"
    elif parsed.choice == "finish":
        assert terminated and reward == 0.0
    assert truncated == (not terminated and env.step_count >= env.max_steps)
    return terminated or truncated


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), seq=st.lists(actions, min_size=1, max_size=10))
def test_arbitrary_actions_never_crash(env, seed, seq):
    env.reset(seed=seed)
    for a in seq: check_step(env, a)


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), junk=st.lists(actions, min_size=1, max_size=4))
def test_actions_after_the_end_change_nothing(env, seed, junk):
    env.reset(seed=seed)
    check_step(env, "[finish]")
    summary = env.episode_summary()
    for a in junk: assert check_step(env, a)
    assert env.episode_summary() == summary


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), seq=st.lists(actions, min_size=1, max_size=6))
def test_malformed_actions_leave_state_unchanged(env, seed, seq):
    env.reset(seed=seed)
    start = env.state_dict()
    for a in seq:
        parsed = parse_action(a)
        if parsed.error is None: continue  # only malformed actions here
        obs, reward, terminated, _, _ = env.step(a)
        if obs["feedback"] == ENDED_FEEDBACK: break
        assert obs["feedback"].startswith("Format error:") and reward == 0.0 and not terminated
    assert env.state_dict() == start


def test_random_play_is_deterministic(env):
    "The same seed and the same (random) actions give the same episode, history included."
    def play(seed):
        env.reset(seed=seed)
        import numpy as np
        rng = np.random.default_rng(seed)
        while not (env.terminated or env.truncated): env.step(env.random_action(rng))
        return [(h["action"], h["feedback"], h["reward"]) for h in env.history], env.episode_summary()
    for seed in (0, 1, 2):
        assert play(seed) == play(seed)


def test_oracle_solves_with_a_strong_user(gym_spec):
    "The scripted expert (it reads the hidden state) ends a few episodes with a positive score (generous step budget)."
    env = make_env(gym_spec, max_steps=64)
    for i in range(3):
        env.reset(seed=i, options={"index": i % len(env.tasks)})
        while not (env.terminated or env.truncated): env.step(env.oracle_action())
        assert env.terminated and env.score() > 0, (env.current_task_id, env.history[-3:])
