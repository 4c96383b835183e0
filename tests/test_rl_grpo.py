"""Multi-turn GRPO (agentlab.rl.rollout + agentlab.rl.grpo) on a tiny policy.

The issue's bar: a tiny policy's mean training reward on a simple gym rises over a short run. The setting is chosen
so that only the reward can teach the policy: one FunctionGym rule whose value on the test case is 3, two answers
per episode. A format warm start (SFT on scripted episodes that answer a *uniformly random* digit 1-4 each turn)
teaches the tool-call format but not the answer, so the policy starts near chance; GRPO must find the answer from
rewards alone. The first and last three steps are 3 x 32 episodes each. Tiny model + synthetic task: this checks
that the machinery learns, nothing about LLM capability.

Also: the policy mask covers exactly the generated tokens; resuming from a checkpoint continues the step count and
reproduces the uninterrupted run; a LoRA run changes only adapter weights; two gloo processes under
`accelerate launch` train in lock-step.
"""
import json
import os
import socket
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch

from agentlab.gyms.function import FunctionGym, FunctionTask

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASK = FunctionTask("f3", "a + b + c + d", (1, 1, 0, 1), 3)
STEP_KW = dict(prompts_per_step=4, num_generations=8, max_turns=2, max_new_tokens=48, render="compact",
               micro_batch_size=16, save_final_model=False)


def make_env():
    return FunctionGym([TASK], max_steps=2, append_reward=True)


def grpo_config(out, **kw):
    from agentlab.rl.grpo import MultiTurnGRPOConfig
    return MultiTurnGRPOConfig(output_dir=str(out), **{**STEP_KW, **kw})


def load(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    "Tiny models run fastest on one thread of a shared CPU."
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    import transformers
    transformers.logging.set_verbosity_error()
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def warm_model(tmp_path_factory):
    "Path of llama-tiny after the format warm start (SFT on scripted random-digit episodes, 100 steps)."
    from agentlab.actions.train import ActionSFTConfig, ActionSFTTrainer
    from agentlab.gyms.agents import action_message
    from agentlab.llm.base import RuleChat, run_sync
    from agentlab.models.tiny import build_tiny_model
    from agentlab.rl.rollout import episode_rows, rollout_groups
    root = tmp_path_factory.mktemp("rl-warm")
    rng = np.random.default_rng(0)
    policy = RuleChat(lambda messages, tools=None, **g: action_message(f"[answer] {rng.integers(1, 5)}"))
    model, tok = build_tiny_model("llama-tiny", seed=0)
    eps = run_sync(rollout_groups(policy, tok, [(make_env, 0)], 24, max_turns=2, render="compact", seed=0))[0]
    rows = episode_rows(eps)
    assert {r.target[-20:] for r in rows} == {f'": "{d}"}}}}</tool_call>' for d in "1234"}  # all four answers, no hint
    cfg = ActionSFTConfig(output_dir=str(root / "sft"), learning_rate=1e-2, lr_scheduler_type="constant", max_steps=100,
                          per_device_train_batch_size=8, save_final_model=False, verify_batches=0)
    ActionSFTTrainer(model, tok, cfg, rows).train()
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    return root / "model"


def test_masks_cover_exactly_the_generated_tokens(warm_model):
    from agentlab.llm.base import run_sync
    from agentlab.llm.parsing import parse_tool_calls
    from agentlab.rl.rollout import ChatSegmenter, rollout_groups, sequence_logprobs
    model, tok = load(warm_model)
    seg = ChatSegmenter(tok)
    groups = run_sync(rollout_groups(model, tok, [(make_env, 0)] * 2, 8, max_turns=2, max_new_tokens=48, render="compact", seed=5))
    eps = [e for g in groups for e in g]
    assert {e.ended_by for e in eps} & {"terminated", "truncated"}  # real multi-turn episodes
    assert max(e.n_turns for e in eps) == 2
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    canonical = 0
    for e in eps:
        ids, mask, turn = np.array(e.input_ids), np.array(e.policy_mask), np.array(e.turn_index)
        assert len(ids) == len(mask) == len(turn) == len(e.old_logprobs)
        assert mask.sum() == sum(e.turn_lengths) and len(e.rewards) == e.n_turns
        assert ((turn >= 0) == (mask == 1)).all()
        assistant = [m for m in e.messages if m["role"] == "assistant"]
        assert len(assistant) == e.n_turns
        for t in range(e.n_turns):
            tok_t = ids[turn == t]
            assert len(tok_t) == e.turn_lengths[t]
            # the policy tokens of turn t are one contiguous run and decode to exactly what was generated
            pos = np.flatnonzero(turn == t)
            assert (np.diff(pos) == 1).all()
            assert tok.decode(tok_t, skip_special_tokens=True) == e.turn_texts[t]
            calls = parse_tool_calls(e.turn_texts[t]).tool_calls
            want = [c["function"] for c in assistant[t].get("tool_calls", [])]
            assert [c["function"] for c in calls] == want
            if t < e.n_turns - 1:  # a turn ends with its sampled end token, or (cut at max_new_tokens) is closed by one
                assert tok_t[-1] == im_end or (ids[pos[-1] + 1] == im_end and mask[pos[-1] + 1] == 0)
        # canonical replies (the template's own rendering of the parsed call): the whole sequence is the template's
        # rendering of the conversation, so every non-policy segment was glued in exactly
        ks = [k for k, m in enumerate(e.messages) if m["role"] == "assistant"]
        if all(list(ids[turn == t]) == seg.assistant_ids(e.messages[:k], e.messages[k], e.prompt_tools)[0] for t, k in enumerate(ks)):
            canonical += 1
            text, ref = tok.decode(ids), tok.apply_chat_template(e.messages, tools=e.prompt_tools, tokenize=False)
            assert ref.startswith(text) and ref[len(text):] in ("", "\n"), (text, ref)
    assert canonical >= len(eps) // 2
    # old log-probs: on policy tokens only, and equal to a fresh forward pass
    lp = sequence_logprobs(model, [e.input_ids for e in eps], [e.policy_mask for e in eps], batch_size=5)
    for e, l in zip(eps, lp):
        np.testing.assert_allclose(e.old_logprobs, l, atol=1e-4)
        assert all(x == 0 for x, m in zip(e.old_logprobs, e.policy_mask) if not m)
        assert all(x <= 0 for x in e.old_logprobs)


def test_grpo_reward_rises(warm_model, tmp_path):
    "THE BAR: mean training reward of the last 3 steps clearly above the first 3 (3 x 32 episodes each)."
    from agentlab.rl.grpo import MultiTurnGRPOTrainer
    model, tok = load(warm_model)
    cfg = grpo_config(tmp_path / "grpo", steps=12, learning_rate=1.5e-3, warmup_steps=2, seed=0)
    hist = [r for r in MultiTurnGRPOTrainer(model, tok, cfg, {"function": [TASK]}).train() if r["kind"] == "train"]
    rewards = [r["reward"] for r in hist]
    first, last = np.mean(rewards[:3]), np.mean(rewards[-3:])
    print(f"GRPO reward per step: {np.round(rewards, 3).tolist()}; first 3: {first:.3f}, last 3: {last:.3f}")
    assert len(hist) == 12 and all(r["episodes"] == 32 for r in hist)
    assert last - first >= 0.15, (first, last, rewards)
    assert hist[-1]["no_tool_call"] < 0.5  # the format survived
    scores = [r["score"] for r in hist]
    assert np.mean(scores[-3:]) > np.mean(scores[:3])


def test_resume_continues_and_matches_uninterrupted_run(warm_model, tmp_path):
    from agentlab.rl.grpo import MultiTurnGRPOTrainer
    kw = dict(steps=3, prompts_per_step=2, num_generations=4, learning_rate=1e-3, seed=1)
    model, tok = load(warm_model)
    straight = MultiTurnGRPOTrainer(model, tok, grpo_config(tmp_path / "a", **kw), {"function": [TASK]})
    ha = straight.train()
    # interrupted after 2 steps, then resumed for the last one
    m2, t2 = load(warm_model)
    MultiTurnGRPOTrainer(m2, t2, grpo_config(tmp_path / "b", **{**kw, "steps": 2}), {"function": [TASK]}).train()
    assert (tmp_path / "b" / "checkpoint-2" / "trainer_state.json").exists()
    m3, t3 = load(warm_model)  # fresh weights: everything must come from the checkpoint
    resumed = MultiTurnGRPOTrainer(m3, t3, grpo_config(tmp_path / "b", **kw, resume_from_checkpoint=True), {"function": [TASK]})
    hb = resumed.train()
    assert resumed.state["step"] == 3
    assert [r["step"] for r in hb if r["kind"] == "train"] == [1, 2, 3]
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["resumed_from"].endswith("checkpoint-2")
    ra, rb = ha[-1], hb[-1]
    assert ra["step"] == rb["step"] == 3 and ra["reward"] == rb["reward"] and ra["response_length"] == rb["response_length"]
    for (na, pa), (nb, pb) in zip(straight.policy.named_parameters(), resumed.policy.named_parameters()):
        assert na == nb
        torch.testing.assert_close(pa, pb, atol=1e-6, rtol=1e-5)


def test_lora_changes_only_adapters(warm_model, tmp_path):
    from agentlab.rl.grpo import MultiTurnGRPOTrainer
    model, tok = load(warm_model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = grpo_config(tmp_path / "lora", steps=2, prompts_per_step=2, num_generations=8, lora=True, lora_r=4,
                      learning_rate=1e-3, kl_coef=0.05, seed=2)
    trainer = MultiTurnGRPOTrainer(model, tok, cfg, {"function": [TASK]})
    hist = [r for r in trainer.train() if r["kind"] == "train"]
    assert all("kl" in r for r in hist) and hist[-1]["kl"] >= 0
    assert any(r["zero_adv_frac"] < 1 for r in hist)  # there was a gradient
    changed, lora_changed = [], []
    for n, p in trainer.policy.named_parameters():
        if "lora_" in n:
            if "lora_B" in n: lora_changed.append(bool(p.detach().abs().sum() > 0))  # B starts at 0
            continue
        base = n.replace("base_model.model.", "").replace(".base_layer", "")
        assert base in before, n
        if not torch.equal(p.detach(), before[base]): changed.append(n)
    assert changed == []
    assert lora_changed and all(lora_changed)


GLOO_SCRIPT = """
import json, sys, torch
torch.set_num_threads(1)
import transformers; transformers.logging.set_verbosity_error()
from transformers import AutoModelForCausalLM, AutoTokenizer
from agentlab.gyms.function import FunctionTask
from agentlab.rl.grpo import MultiTurnGRPOConfig, MultiTurnGRPOTrainer
path, out = sys.argv[1], sys.argv[2]
task = FunctionTask("f3", "a + b + c + d", (1, 1, 0, 1), 3)
cfg = MultiTurnGRPOConfig(output_dir=out, steps=2, prompts_per_step=2, num_generations=8, max_turns=2, max_new_tokens=48,
                          render="compact", micro_batch_size=4, learning_rate=1e-3, save_final_model=False, seed=3)
trainer = MultiTurnGRPOTrainer(AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path), cfg,
                               {"function": [task]}, eval_gyms={"function": [task]})
trainer.train()
total = sum(float(p.detach().double().sum()) for p in trainer.policy.parameters())
with open(f"{out}/rank{trainer.rank}.json", "w") as f: json.dump({"world": trainer.world, "param_sum": total}, f)
"""


def test_two_gloo_processes_under_accelerate_launch(warm_model, tmp_path):
    script = tmp_path / "grpo_ddp.py"
    script.write_text(textwrap.dedent(GLOO_SCRIPT))
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    launch = os.path.join(os.path.dirname(sys.executable), "accelerate")
    with socket.socket() as s:  # a free rendezvous port (other test runs may use the default 29500)
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    # `--multi_gpu` picks accelerate's torchrun launcher; without a GPU the trainer's Accelerator(cpu=True) makes it
    # gloo DDP. (configs/accelerate/cpu_ddp.yaml, distributed_type MULTI_CPU, starts a single process on one machine.)
    cmd = [launch, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", str(port), str(script), str(warm_model), str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["param_sum"] == pytest.approx(ranks[1]["param_sum"], abs=1e-9)  # DDP kept the replicas identical
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    train = [r for r in log if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2]
    assert all(r["episodes"] == 16 for r in train)  # 2 prompts x 8, one prompt per process, gathered
    assert any(r["kind"] == "eval" and r["eval_episodes"] == 1 for r in log)
    assert json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["world_size"] == 2
