"""Training throughput of `ActionSFTTrainer` against a bare PyTorch loop and TRL's `SFTTrainer`, on the same rows.

All three train the same tiny random-init model (`llama-tiny` preset, < 1M parameters) with AdamW, batch 8, fp32, on the
same toy function-calling rows rendered by `agentlab.actions.data` (chat template, loss on the target + EOS only):

- **plain**: a bare loop (`model(**batch).loss.backward(); opt.step()`) over the batches `ActionSFTTrainer` would draw
  (same rows, same order, same dynamic padding); the ceiling for any trainer.
- **ours**: `ActionSFTTrainer` (accelerate, warm-up + cosine schedule, clipping, logging, data verifier on batch 1);
  again with `group_by_length=True` (batches of similar-length rows: less padding, so more real tokens/s).
- **trl**: TRL `SFTTrainer` with CPU-appropriate settings (`bf16=False`, `activation_checkpointing=False`,
  prompt-completion data, `completion_only_loss=True`); `--trl-defaults` adds a run with TRL's own defaults
  (`bf16=True`, activation checkpointing on), which spec §6.2 measured 8-10x slower on a CPU.

Tokens/s are real (non-pad) tokens over summed step times (forward + backward + optimizer step + collation; start-up,
checkpoint saving and evaluation are excluded). TRL's real token count is estimated from the mean row length (its row
order differs). Targets (issue #5): ours >= 0.8x plain. Bounded: about 4 x `--steps` steps (~25 s on 2 free cores).

    python bench/bench_train.py               # 40 steps each
    python bench/bench_train.py --steps 20 --trl-defaults
"""
import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from functools import partial

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore")

import datasets
import numpy as np
import torch

from agentlab.actions.data import collate
from agentlab.actions.train import ActionSFTConfig, ActionSFTTrainer, lr_factor
from agentlab.models.tiny import build_tiny_model

TOOLS = {
    "get_weather": {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
    "add": {"type": "function", "function": {"name": "add", "description": "Add two numbers.",
        "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}}},
    "convert": {"type": "function", "function": {"name": "convert", "description": "Convert a value to a unit.",
        "parameters": {"type": "object", "properties": {"value": {"type": "number"}, "unit": {"type": "string"}}, "required": ["value", "unit"]}}},
}


def toy_rows(n: int, seed: int = 0) -> list:
    """Single-turn tool-call rows: 1-3 offered tools, one call as the target (tiny chat template format)."""
    rng, rows = np.random.default_rng(seed), []
    for i in range(n):
        offered = list(rng.choice(list(TOOLS), size=int(rng.integers(1, 4)), replace=False))
        name = str(rng.choice(offered))
        if name == "get_weather":
            city = str(rng.choice(["Paris", "Oslo", "Tokyo", "Lima"]))
            q, args = f"Weather in {city}?", {"city": city}
        elif name == "add":
            a, b = (int(x) for x in rng.integers(0, 100, 2))
            q, args = f"What is {a} plus {b}?", {"a": a, "b": b}
        else:
            v, u = int(rng.integers(1, 500)), str(rng.choice(["km", "kg"]))
            q, args = f"Convert {v} to {u}.", {"value": v, "unit": u}
        rows.append({"id": f"r{i}", "tools": [TOOLS[t] for t in offered],
                     "messages": [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": q}],
                     "target": "<tool_call>" + json.dumps({"name": name, "arguments": args}) + "</tool_call>"})
    return rows


def run_ours(rows, steps, bs, lr, out, **kw):
    model, tok = build_tiny_model("llama-tiny", seed=0)
    cfg = ActionSFTConfig(output_dir=out, max_steps=steps, per_device_train_batch_size=bs, learning_rate=lr,
                          warmup_steps=5, logging_steps=steps, save_final_model=False, **kw)
    trainer = ActionSFTTrainer(model, tok, cfg, rows)
    m = trainer.train()
    return {"tokens_per_s": m["train_tokens_per_second"], "padded_tokens_per_s": m["train_padded_tokens_per_second"],
            "s_per_step": m["train_runtime"] / steps, "mean_loss": m["train_loss"]}, trainer


def run_plain(trainer_for_batches, steps, bs, lr):
    """A bare loop over exactly the batches ActionSFTTrainer draws (collation included in the timing)."""
    model, tok = build_tiny_model("llama-tiny", seed=0)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, partial(lr_factor, total=steps, warmup=5))  # the same schedule as ours
    ex = trainer_for_batches.train_examples
    total = tokens = padded = 0.0
    losses = []
    for k in range(steps):
        t0 = time.perf_counter()
        batch = collate([ex[i] for i in trainer_for_batches.micro_batch_rows(k, rank=0)], tok.pad_token_id)
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        total += time.perf_counter() - t0
        losses.append(loss.item())
        tokens += batch["num_tokens"]
        padded += batch["num_padded_tokens"]
    return {"tokens_per_s": tokens / total, "padded_tokens_per_s": padded / total, "s_per_step": total / steps,
            "mean_loss": float(np.mean(losses))}


def run_trl(rows, steps, bs, lr, out, defaults=False):
    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    model, tok = build_tiny_model("llama-tiny", seed=0)
    prompts = [tok.apply_chat_template(r["messages"], tools=r["tools"], add_generation_prompt=True, tokenize=False) for r in rows]
    ds = Dataset.from_dict({"prompt": prompts, "completion": [r["target"] + tok.eos_token for r in rows]})
    mean_len = np.mean([len(tok(p + c, add_special_tokens=False)["input_ids"]) for p, c in zip(prompts, ds["completion"])])

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.total, self.t0 = 0.0, None
        def on_step_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()
        def on_step_end(self, args, state, control, **kw):
            self.total += time.perf_counter() - self.t0

    kw = {} if defaults else {"bf16": False, "activation_checkpointing": False}
    cfg = SFTConfig(output_dir=out, max_steps=steps, per_device_train_batch_size=bs, learning_rate=lr, warmup_steps=5,
                    lr_scheduler_type="cosine", logging_steps=steps, save_strategy="no", report_to="none", disable_tqdm=True,
                    use_cpu=True, completion_only_loss=True, packing=False, max_length=2048, dataloader_num_workers=0, **kw)
    timer = StepTimer()
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok, callbacks=[timer])
    trainer.remove_callback(PrinterCallback)
    res = trainer.train()
    return {"tokens_per_s": mean_len * bs * steps / timer.total, "padded_tokens_per_s": float("nan"),
            "s_per_step": timer.total / steps, "mean_loss": res.training_loss}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rows", type=int, default=400)
    ap.add_argument("--trl-defaults", action="store_true", help="also time TRL with its defaults (bf16 + activation checkpointing)")
    args = ap.parse_args(argv)
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"load avg {os.getloadavg()[0]:.1f}")
    datasets.disable_progress_bars()
    rows, lr, out = toy_rows(args.rows), 3e-3, tempfile.mkdtemp()
    results = {}
    try:
        results["ours (ActionSFTTrainer)"], trainer = run_ours(rows, args.steps, args.batch_size, lr, os.path.join(out, "ours"))
        results["plain PyTorch loop"] = run_plain(trainer, args.steps, args.batch_size, lr)
        results["ours + group_by_length"] = run_ours(rows, args.steps, args.batch_size, lr, os.path.join(out, "grouped"), group_by_length=True)[0]
        results["TRL SFTTrainer (bf16=False, no ckpt)"] = run_trl(rows, args.steps, args.batch_size, lr, os.path.join(out, "trl"))
        if args.trl_defaults:
            results["TRL SFTTrainer (defaults)"] = run_trl(rows, max(5, args.steps // 4), args.batch_size, lr, os.path.join(out, "trl2"), defaults=True)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    plain = results["plain PyTorch loop"]["tokens_per_s"]
    print(f"\nllama-tiny (random init), batch {args.batch_size}, {args.steps} steps, {len(rows)} toy rows; mean loss = mean over all steps")
    print(f"{'trainer':40s} {'tokens/s':>10s} {'padded/s':>10s} {'s/step':>8s} {'vs plain':>9s} {'mean loss':>9s}")
    for name, r in results.items():
        print(f"{name:40s} {r['tokens_per_s']:10.0f} {r['padded_tokens_per_s']:10.0f} {r['s_per_step']:8.3f} "
              f"{r['tokens_per_s'] / plain:8.2f}x {r['mean_loss']:9.3f}")
    ratio = results["ours (ActionSFTTrainer)"]["tokens_per_s"] / plain
    print(f"\nours / plain = {ratio:.2f} (target >= 0.8): {'OK' if ratio >= 0.8 else 'BELOW TARGET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
