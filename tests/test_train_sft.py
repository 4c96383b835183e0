"""SFT of action models end to end: the issue-#5 quality bar, 2-process DDP on CPU, resume, LoRA, labels.

The bar: a tiny model (< 1M parameters, its BPE tokenizer trained on the training rows' text) fine-tuned for 300 steps
on synthetic function-calling data (`actions.synth.generate_dataset`, exploded into training rows in the tiny chat
template's `<tool_call>` style) writes tool-call JSON that `agentlab.llm.parsing.parse_tool_calls` parses for at least
95% of held-out prompts whose answer is a tool call, mostly calling offered tools, while the same model untrained does
not (so a broken pipeline that never trains cannot pass). Measured over seeds 0-2 (2-core CPU): JSON rate 1.0 each,
offered-tool rate 0.69-0.93, about 1-2 minutes of training. Without the domain tokenizer the JSON rate varied 0.73-0.99
across seeds (the generic tokenizer splits JSON keys into many tokens).
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from agentlab.actions.converters import explode
from agentlab.actions.data import render_example, verify_batch
from agentlab.actions.synth import generate_dataset
from agentlab.actions.train import ActionSFTConfig, ActionSFTTrainer, generate_replies, tool_call_metrics
from agentlab.core.runs import JsonlRecords
from agentlab.actions.tools import ToolRegistry, default_registry
from agentlab.models.tiny import BUILTIN_CORPUS, build_tiny_model, train_tokenizer

ROOT = Path(__file__).resolve().parents[1]
STYLE = "tool_call_tags"  # what the tiny chat template renders for an assistant tool call
KINDS = ("simple", "multiple", "parallel", "parallel_multiple", "irrelevance")
# The bar's data: the synthetic generator restricted to six tools with numeric / city / unit arguments and to the four
# tool-calling kinds (the spec's feasibility run, section 6.2, used a 3-tool toy set). Free-text arguments and relevance
# detection need more steps than a ~2-minute CPU test allows; the notebooks show them on the full registry.
BAR_TOOLS = ("add", "multiply", "is_prime", "fibonacci", "convert_length", "get_current_weather")
BAR_KINDS = ("simple", "multiple", "parallel", "parallel_multiple")


def synth_rows(n, seed, kinds=KINDS, tools=None, **explode_kwargs):
    registry = default_registry()
    if tools:
        registry = ToolRegistry([registry.get(name) for name in tools])
    trajs = generate_dataset(n, seed=seed, kinds=kinds, registry=registry, verify=False).trajectories
    return [row for t in trajs for row in explode(t, target_style=STYLE, **explode_kwargs)]


@pytest.fixture(scope="module")
def rows():
    return synth_rows(300, seed=0)


def test_labels_are_exactly_target_plus_eos(rows):
    _, tok = build_tiny_model("llama-tiny")
    kinds = set()
    for row in rows[:60]:
        ex = render_example(tok, row)
        labelled = [t for t, l in zip(ex["input_ids"], ex["labels"]) if l != -100]
        assert tok.decode(labelled) == row.target + tok.eos_token, row.id
        n_prompt = ex["labels"].count(-100)
        assert ex["labels"][:n_prompt] == [-100] * n_prompt and -100 not in ex["labels"][n_prompt:]  # prompt span, then target span
        kinds.add(row.meta["kind"])
    assert kinds == {"tool_calls", "text"}
    report = verify_batch(tok, [render_example(tok, r) for r in rows[:4]], max_rows=4)
    assert report.count("--- labels ---") == 4


@pytest.mark.timeout(900)
def test_issue_bar_valid_tool_call_json(tmp_path):
    """ISSUE BAR: >= 95% valid tool-call JSON on held-out synthetic prompts after 300 steps; untrained far lower."""
    train = synth_rows(800, seed=0, kinds=BAR_KINDS, tools=BAR_TOOLS, format_instruction="")
    held = synth_rows(80, seed=1, kinds=BAR_KINDS, tools=BAR_TOOLS, format_instruction="")
    assert {r.meta["kind"] for r in held} == {"tool_calls"}
    seen = {r.messages[-1]["content"] for r in train}
    assert sum(r.messages[-1]["content"] in seen for r in held) <= 2  # held-out requests are new
    generic = train_tokenizer()  # renders the training text once so that the model's own tokenizer can learn its pieces
    texts = [BUILTIN_CORPUS] + [generic.apply_chat_template(r.messages, tools=r.tools, add_generation_prompt=True, tokenize=False)
                                + r.target for r in train]
    model, tok = build_tiny_model("llama-tiny", seed=0, texts=texts)
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    untrained = tool_call_metrics(held, generate_replies(model, tok, held, max_new_tokens=48))
    cfg = ActionSFTConfig(output_dir=str(tmp_path / "sft"), max_steps=300, per_device_train_batch_size=8, learning_rate=5e-3,
                          warmup_steps=20, logging_steps=50, max_length=1024, group_by_length=True, save_final_model=False)
    trainer = ActionSFTTrainer(model, tok, cfg, train, eval_rows=held)
    metrics = trainer.train()
    scores = tool_call_metrics(held, generate_replies(trainer.model, tok, held, max_new_tokens=200))
    print("\nuntrained:", untrained, "\ntrained:", scores, "\nmetrics:",
          {k: metrics[k] for k in ("train_loss", "eval_loss", "train_runtime", "train_tokens_per_second", "train_padded_tokens_per_second")})
    assert metrics["global_step"] == 300 and metrics["eval_loss"] < 1.0
    assert scores["n_call_rows"] >= 75
    assert scores["json_rate"] >= 0.95, scores   # the bar: parses as tool-call JSON
    assert scores["valid_rate"] >= 0.5, scores   # ... and mostly calls offered tools only
    assert untrained["json_rate"] <= 0.1, untrained


def _tiny_rows(n=64):
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object",
              "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}}}]
    return [{"id": f"r{i}", "tools": tools, "messages": [{"role": "user", "content": f"{i} plus {i + 1}?"}],
             "target": "<tool_call>" + json.dumps({"name": "add", "arguments": {"a": i, "b": i + 1}}) + "</tool_call>"} for i in range(n)]


@pytest.mark.timeout(300)
def test_two_process_ddp_on_cpu(tmp_path):
    """`accelerate launch --config_file configs/accelerate/cpu_ddp.yaml` (2 processes) runs the same trainer with gloo DDP on the CPU."""
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _tiny_rows()))
    script = tmp_path / "run_sft.py"
    script.write_text("import argparse, sys\nfrom agentlab.actions.train import sft_arguments, sft_command\n"
                      "sys.exit(sft_command(sft_arguments(argparse.ArgumentParser()).parse_args()))\n")
    with socket.socket() as sock:  # a free port for the rendezvous (parallel test runs must not collide on 29500)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "AGENTLAB_CACHE": str(tmp_path / "cache")}
    cmd = [str(ROOT / ".venv" / "bin" / "accelerate"), "launch", "--config_file", str(ROOT / "configs" / "accelerate" / "cpu_ddp.yaml"),
           "--main_process_port", str(port), str(script),
           "--model", "tiny:llama-tiny", "--data", str(data), "--out", str(tmp_path / "run"), "--max-steps", "4",
           "--batch-size", "4", "--grad-accum", "2", "--lr", "3e-3", "--logging-steps", "2", "--save-steps", "2"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert metrics["world_size"] == 2 and metrics["global_step"] == 4
    assert "MULTI_CPU" in config["distributed_type"]
    log = [r for r in JsonlRecords(tmp_path / "run" / "log.jsonl").read() if r["id"].startswith("train")]
    assert [r["step"] for r in log] == [2, 4]  # only the main process writes the log
    assert (tmp_path / "run" / "checkpoint-4" / "random_states_1.pkl").exists()  # both ranks' RNG saved
    assert (tmp_path / "run" / "final" / "config.json").exists()


def test_ranks_partition_the_stream(tmp_path):
    model, tok = build_tiny_model("llama-tiny")
    cfg = ActionSFTConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4)
    trainer = ActionSFTTrainer(model, tok, cfg, _tiny_rows(16))
    trainer.world = 2  # as if launched on 2 processes
    a = [i for k in range(4) for i in trainer.micro_batch_rows(k, rank=0)]
    b = [i for k in range(4) for i in trainer.micro_batch_rows(k, rank=1)]
    assert sorted(a + b) == sorted(list(range(16)) * 2)  # 2 epochs, each row once per epoch
    assert not set(a[:8]) & set(b[:8])  # first epoch: disjoint halves


def test_resume_continues_step_count(tmp_path):
    def run(max_steps, **kw):
        model, tok = build_tiny_model("llama-tiny")
        cfg = ActionSFTConfig(output_dir=str(tmp_path / "run"), max_steps=max_steps, per_device_train_batch_size=4,
                              learning_rate=3e-3, logging_steps=2, save_steps=2, save_final_model=False, **kw)
        return ActionSFTTrainer(model, tok, cfg, _tiny_rows()).train()
    first = run(4)
    second = run(6, resume_from_checkpoint=True)
    assert first["global_step"] == 4 and second["global_step"] == 6
    assert Path(second["resumed_from"]).name == "checkpoint-4"
    steps = [r["step"] for r in JsonlRecords(tmp_path / "run" / "log.jsonl").read() if r["id"].startswith("train")]
    assert steps == [2, 4, 6]


def test_lora_changes_only_adapter_weights(tmp_path):
    model, tok = build_tiny_model("llama-tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = ActionSFTConfig(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-2,
                          lora=True, lora_r=4, lora_alpha=8)
    trainer = ActionSFTTrainer(model, tok, cfg, _tiny_rows())
    metrics = trainer.train()
    after = trainer.accelerator.unwrap_model(trainer.model).state_dict()
    changed = {k for k, v in after.items() if "lora_" in k and not torch.equal(v, torch.zeros_like(v))}
    assert any("lora_B" in k for k in changed)
    for k, v in after.items():
        if "lora_" in k:
            continue
        base = k.replace("base_model.model.", "").replace(".base_layer", "")
        assert torch.equal(v, before[base]), k
    assert metrics["trainable_parameters"] < 0.2 * metrics["num_parameters"]
    assert (tmp_path / "adapter" / "adapter_config.json").exists()
