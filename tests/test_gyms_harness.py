"""The evaluation harness across modules: the CLI, resumable run folders, and LLM agents over real HTTP.

An LLM agent (a tiny random-init model served by `agentlab serve` on 127.0.0.1, reached through the `openai:` spec)
plays FunctionGym and TravelGym through the same harness as the baselines: its replies are poor, but every episode
must finish cleanly with a valid record. A rule 'model' behind the same server shows the tool-call path end to end.
"""
import json
from pathlib import Path

import pytest

from agentlab.cli import main
from agentlab.core.messages import assistant_message, make_tool_call
from agentlab.gyms.harness import episode_to_trajectory, evaluate
from agentlab.llm.base import RuleChat
from agentlab.serve.server import start_server


def prober(messages, tools=None, **gen):
    "FunctionGym: fetch the test case, then answer 0 (a wrong answer unless f(test) = 0)."
    n = sum(m["role"] == "assistant" for m in messages)
    args = {"choice": "search", "content": "test"} if n == 0 else {"choice": "answer", "content": "0"}
    return assistant_message(None, [make_tool_call("interact_with_env", args)])


@pytest.fixture(scope="module")
def server(tiny_cache):
    from agentlab.llm import hf
    from agentlab.models.tiny import tiny_model_path
    path = tiny_model_path("llama-tiny", seed=0, cache_dir=tiny_cache)
    models = {"tiny": hf.HFChat(str(path), max_new_tokens=24, name="tiny"), "prober": RuleChat(prober, name="prober")}
    with start_server(models) as srv:
        yield srv


def test_cli_eval_gyms_is_resumable(tmp_path, capsys):
    args = ["eval", "gyms", "--gym", "travel22", "--gym", "function", "--agent", "expert", "--episodes", "4",
            "--out", str(tmp_path), "-q"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "UserRL table" in out and "best_exist" in out
    lines = (tmp_path / "function" / "episodes.jsonl").read_text().splitlines()
    assert len(lines) == 4
    assert main(args) == 0  # resumes: nothing new is run
    assert (tmp_path / "function" / "episodes.jsonl").read_text().splitlines() == lines
    assert json.loads((tmp_path / "travel22" / "metrics.json").read_text())["score"] == 1.0
    assert (tmp_path / "table.md").is_file()


def test_cli_rejects_unknown_gym(capsys):
    assert main(["eval", "gyms", "--gym", "chess", "-q"]) == 2
    assert "unknown gym 'chess'" in capsys.readouterr().err


def test_rule_model_over_http_plays_function_gym(server):
    res = evaluate("function", f"openai:prober@{server.base_url}", episodes=4, max_turns=4, concurrency=4, progress=False)
    # a wrong answer does not end the episode: it runs to the turn limit unless f(test case) happens to be 0
    assert all(r["steps"] == 4 or r["score"] == 1.0 for r in res.records)
    ids = [c["id"] for m in res.records[0]["messages"] if m["role"] == "assistant" for c in m["tool_calls"]]
    assert len(ids) == len(set(ids))   # repeated identical calls get distinct ids
    assert all(r["history"][0]["feedback"].startswith("The test case is") for r in res.records)
    traj = episode_to_trajectory(res.records[0])
    assert traj.conversation[1]["tool_calls"][0]["function"]["arguments"] == {"choice": "search", "content": "test"}


@pytest.mark.parametrize("gym", ["function", "travel22"])
def test_tiny_llm_agent_episodes_stay_valid(server, gym):
    res = evaluate(gym, f"openai:tiny@{server.base_url}", episodes=2, max_turns=3, concurrency=2, progress=False)
    assert len(res.records) == 2
    for r in res.records:
        assert r["ended_by"] in ("no_tool_call", "terminated", "truncated", "max_turns")
        assert 0.0 <= r["score"] <= 1.0
        assert r["messages"][-1]["role"] in ("assistant", "tool")
