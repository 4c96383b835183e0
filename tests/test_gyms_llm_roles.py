"""TravelGym's LLM roles over real HTTP: `agentlab serve` (in-process, on 127.0.0.1) runs a tiny random-weight
Hugging Face model, and every role of the gym talks to it through `agentlab.llm.openai.OpenAIChat`.

The tiny model's replies are noise, so the roles' JSON parsing fails and they fall back: the episode must stay
valid (no exception, rewards in [0, 1], nothing revealed by a failed user), and the fallbacks must be counted.
A second, rule-based model served the same way answers in the expected JSON, to show the happy path over HTTP.
"""
import asyncio
import json

import pytest

from agentlab.gyms.travel import (JUDGE_FAILURE, NEUTRAL_FALLBACK, LLMNeutralUser, LLMPreferenceUser, LLMProactiveUser,
                                  LLMSearchJudge, LLMUtteranceClassifier, TravelGym, preference_question, search_query)
from agentlab.gyms.travel_data import generate_tasks
from agentlab.llm.base import RuleChat
from agentlab.serve.server import start_server

TASK = generate_tasks(1, config="22")[0]


def json_roles_policy(messages, tools=None, **gen):
    "A well-behaved judge/user: valid JSON for every role prompt."
    system = messages[0]["content"]
    if system.startswith("You check search"):
        return json.dumps({"thought": "ok", "alignment_judgement": "True", "alignment_aspect": TASK.dimensions[0]})
    if system.startswith("You analyse"):
        return json.dumps({"thought": "concrete", "type": 2, "preference_id": "P1"})
    return json.dumps({"thought": "reply", "response": "Well, I do get restless on long travel days."})


@pytest.fixture(scope="module")
def server(tiny_cache):
    hf = pytest.importorskip("agentlab.llm.hf")
    from agentlab.models.tiny import tiny_model_path
    path = tiny_model_path("llama-tiny", seed=0, cache_dir=tiny_cache)
    models = {"tiny": hf.HFChat(str(path), max_new_tokens=16, name="tiny"),
              "json-roles": RuleChat(json_roles_policy, name="json-roles")}
    with start_server(models) as srv:
        yield srv


def client(server, model):
    from agentlab.llm.openai import OpenAIChat
    return OpenAIChat(model, base_url=server.base_url, max_retries=1, timeout=60)


def test_tiny_model_roles_fall_back_and_episode_stays_valid(server):
    model = client(server, "tiny")
    roles = {"search_judge": LLMSearchJudge(model, retries=2, max_tokens=16),
             "utterance_classifier": LLMUtteranceClassifier(model, retries=2, max_tokens=16),
             "preference_user": LLMPreferenceUser(model, retries=2, max_tokens=16),
             "proactive_user": LLMProactiveUser(model, retries=2, max_tokens=16),
             "neutral_user": LLMNeutralUser(model, retries=2, max_tokens=16)}
    env = TravelGym([TASK], max_steps=6, **roles)
    assert env.uses_llm
    obs, info = env.reset(seed=0)
    a = TASK.aspects[0]
    actions = [f"[search] {search_query(a.aspect, a.arguments)}", f"[action] {preference_question(a.preferences[0])}",
               "[action] hello", "[action] how are you?", f"[answer] {a.best_id}", "[answer] not an id"]
    rewards = []
    for x in actions:
        obs, r, term, trunc, info = env.step(x)
        rewards.append(r)
        assert 0.0 <= r <= 1.0 and isinstance(obs["feedback"], str) and obs["feedback"]
    assert env.history[0]["feedback"] == JUDGE_FAILURE and rewards[0] == 0.0      # a failed judge = backend error
    assert env.history[1]["feedback"] == NEUTRAL_FALLBACK and rewards[1] == 0.0   # classifier -> type 1 -> neutral fallback
    assert env.history[3]["passive_elicited_preferences"] == []                    # a failed proactive user reveals nothing
    assert rewards[4] == 1.0                                                       # answers need no LLM
    assert env.active == [] and env.passive == []
    assert env.search_judge.fallbacks == 1 and env.utterance_classifier.fallbacks == 3
    assert env.neutral_user.fallbacks == 2 and env.proactive_user.fallbacks == 1
    assert all(r.calls >= r.fallbacks for r in env.roles.values())
    assert model.usage_total.total_tokens > 0
    s = env.episode_summary()
    assert s["score"] == 0.5 and s["n_valid_action"] == 0 and s["steps"] == 6


def test_user_model_argument_builds_every_llm_role(server):
    model = client(server, "tiny")
    env = TravelGym([TASK], user_model=model, max_steps=2)
    assert {type(r).__name__ for r in env.roles.values()} == {
        "LLMSearchJudge", "LLMUtteranceClassifier", "LLMPreferenceUser", "LLMProactiveUser", "LLMNeutralUser"}
    for role in env.roles.values():
        role.retries, role.max_tokens = 1, 8      # keep the noisy tiny model short
    env.reset(seed=0)
    obs, r, term, trunc, _ = env.step("[action] hi")
    obs, r2, term, trunc, _ = env.step("[search] hotel")
    assert (r, r2, trunc) == (0.0, 0.0, True)


def test_json_roles_over_http(server):
    env = TravelGym([TASK], user_model=client(server, "json-roles"), max_steps=4)
    env.reset(seed=0)
    obs, r, *_ = env.step("[search] whatever the judge says")
    assert r == 0.2 and env.history[-1]["search_aspect"] == TASK.dimensions[0] and "Search succeeded" in obs["feedback"]
    obs, r, *_ = env.step("[action] a question")
    assert (r, obs["feedback"], env.active) == (0.2, "Well, I do get restless on long travel days.", ["P1"])
    assert sum(role.fallbacks for role in env.roles.values()) == 0


def test_astep_runs_concurrently_in_one_loop(server):
    "Several episodes stepped concurrently with asyncio (what the evaluation harness does)."
    model = client(server, "json-roles")

    async def episode(seed):
        env = TravelGym([TASK], user_model=model, max_steps=3)
        env.reset(seed=seed)
        out = [await env.astep("[action] question?") for _ in range(3)]
        return [o[1] for o in out]

    async def main():
        return await asyncio.gather(*(episode(s) for s in range(4)))

    results = asyncio.run(main())
    # P1 is revealed once; afterwards the classifier's P1 is no longer remaining -> fallback -> neutral reply
    assert all(r[0] == 0.2 and all(0 <= x <= 1 for x in r) for r in results)
