"""agentlab.rl.sft: expert data from the training gyms, the assistant-only mask, and a cold start that works.

The cold-start test trains a tiny random model (llama-tiny, 220k parameters) for 288 TRL updates on one CPU thread
(about a minute) and compares it with the untrained model on tasks it has not seen. Numbers are printed (`pytest -s`)."""
import json
import time

import pytest

from agentlab.actions.trajectory import read_jsonl
from agentlab.gyms.harness import evaluate
from agentlab.llm.hf import HFChat
from agentlab.models.tiny import CHAT_TEMPLATE, build_tiny_model, train_tokenizer
from agentlab.rl.sft import (HELD_OUT_GYMS, SUCCESS_SCORE, TRAIN_GYMS, RenderedAgent, assistant_spans,
                             collect_expert_trajectories, render_trajectory, sft_cold_start, sft_rows,
                             strip_generation_markers, tool_call_rate, training_tasks, with_generation_markers)


def test_collection_is_deterministic_and_only_keeps_successes_from_training_gyms(tmp_path):
    a = collect_expert_trajectories(list(TRAIN_GYMS), 3, out_path=tmp_path / "a.jsonl")
    b = collect_expert_trajectories(list(TRAIN_GYMS), 3)
    assert [t.to_dict() for t in a] == [t.to_dict() for t in b]
    assert [t.to_dict() for t in read_jsonl(tmp_path / "a.jsonl")] == [t.to_dict() for t in a]
    assert {t.meta["gym"] for t in a} == set(TRAIN_GYMS)
    assert all(t.meta["score"] >= SUCCESS_SCORE and t.meta["gym"] not in HELD_OUT_GYMS for t in a)
    assert all(t.tools[0]["function"]["name"] == "interact_with_env" for t in a)
    # failures are dropped: three turns leave the function expert no time to answer
    assert collect_expert_trajectories("function", 4, max_turns=3) == []
    kept = collect_expert_trajectories("function", 4, max_turns=3, min_score=0.0)
    assert len(kept) == 4 and all(t.meta["score"] == 0.0 for t in kept)
    for gym in HELD_OUT_GYMS:
        with pytest.raises(ValueError, match=f"gym '{gym}' is held out"):
            collect_expert_trajectories(["turtle", gym], 1)
    # training tasks come from the train splits, which the evaluation (test splits) never uses
    assert {t.task_id for t in training_tasks("turtle", 5)}.isdisjoint(
        {r["task_id"] for r in evaluate("turtle", "random", episodes=48, max_turns=1, progress=False).records})


@pytest.mark.parametrize("render", ["compact", "full"])
def test_assistant_mask_covers_only_assistant_turns(render):
    tok = train_tokenizer()
    trajs = collect_expert_trajectories(["function", "turtle", "travel22"], 2)
    assert trajs
    for row, traj in zip(sft_rows(trajs, render), trajs):
        tools = json.loads(row["tools"]) if row["tools"] else None
        spans = assistant_spans(tok, row["messages"], tools)
        calls = [m["tool_calls"][0]["function"]["arguments"] for m in row["messages"] if m["role"] == "assistant"]
        assert spans == [f'<tool_call>{{"name": "interact_with_env", "arguments": {c}}}</tool_call><|im_end|>' for c in calls]
        masked = "".join(spans)
        for m in row["messages"]:
            if m["role"] != "assistant": assert m["content"] not in masked
    # the markers: present in the tiny template, restored when stripped
    assert with_generation_markers(CHAT_TEMPLATE) == CHAT_TEMPLATE
    assert with_generation_markers(strip_generation_markers(CHAT_TEMPLATE)) == CHAT_TEMPLATE


def test_trl_trains_on_assistant_tokens_only(tmp_path, one_thread):
    model, tok = build_tiny_model("llama-tiny")
    trajs = [render_trajectory(t, "compact") for t in collect_expert_trajectories(["turtle", "function"], 2)]
    res = sft_cold_start(model, tok, trajs, output_dir=tmp_path, max_steps=2, learning_rate=1e-3, threads=1)
    assert res.metrics["global_step"] == 2 and res.path.is_dir()
    from trl import SFTConfig, SFTTrainer
    from agentlab.rl.sft import _quiet_datasets, sft_dataset
    with _quiet_datasets(): trainer = SFTTrainer(model=build_tiny_model("llama-tiny")[0], processing_class=tok, train_dataset=sft_dataset(trajs),
                         args=SFTConfig(output_dir=str(tmp_path / "x"), assistant_only_loss=True, report_to="none",
                                        use_cpu=True, bf16=False, activation_checkpointing=False))
    for ex, row in zip(trainer.train_dataset, sft_rows(trajs)):
        labelled = tok.decode([t for t, l in zip(ex["input_ids"], ex["labels"]) if l != -100])
        assert labelled == "".join(assistant_spans(tok, row["messages"]))
        assert "Gym:" not in labelled and "<|im_start|>" not in labelled


def _measure(model, tok, probe, unseen):
    t0 = time.perf_counter()
    rate = tool_call_rate(HFChat(model, tok, batch_size=32), probe, turns="all", max_tokens=160)
    t1 = time.perf_counter()
    agent = lambda: RenderedAgent(HFChat(model, tok, max_new_tokens=160), render="compact")
    scores = {g: evaluate(g, agent, t, max_turns=4, progress=False).metrics["score"] for g, t in unseen.items()}
    print(f"\n  tool_call_rate {t1 - t0:.1f}s, evaluate {time.perf_counter() - t1:.1f}s")
    return rate, scores


def test_cold_start_teaches_a_tiny_model_the_protocol(tmp_path, one_thread):
    t0 = time.perf_counter()
    data = collect_expert_trajectories(["turtle", "function"], 24, render="compact")
    # unseen tasks: the end of the train splits (the 24 training tasks are the first ones); scores on TurtleGym only
    # (FunctionGym's answer needs arithmetic a 220k-parameter model does not do, so it stays at 0 and costs time)
    unseen = {"turtle": training_tasks("turtle", 300)[-24:]}
    assert not {t.meta["task_id"] for t in data} & {t.task_id for t in unseen["turtle"]}
    probe = collect_expert_trajectories({g: training_tasks(g, 300)[-8:] for g in ("turtle", "function")}, 8, render="compact")
    model, tok = build_tiny_model("llama-tiny", seed=0)
    rate_before, before = _measure(model, tok, probe, unseen)
    t1 = time.perf_counter()
    cold = sft_cold_start(model, tok, data, output_dir=tmp_path / "sft", num_train_epochs=12, learning_rate=5e-3,
                          per_device_train_batch_size=2, seed=0)
    train_s = time.perf_counter() - t1
    rate_after, after = _measure(cold.model, tok, probe, unseen)
    print(f"\ncold start: {cold.metrics['global_step']} steps in {train_s:.1f}s (loss {cold.metrics['train_loss']:.3f}); "
          f"usable tool calls {rate_before:.3f} -> {rate_after:.3f}; scores {before} -> {after}; "
          f"test {time.perf_counter() - t0:.1f}s")
    assert cold.metrics["global_step"] == 288
    assert rate_before == 0.0
    assert rate_after >= rate_before + 0.5, (rate_before, rate_after)
    assert any(after[g] > before[g] for g in unseen), (before, after)
