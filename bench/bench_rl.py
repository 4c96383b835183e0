"""Multi-turn GRPO throughput: rollout episodes/s and trainer tokens/s against a plain PyTorch loop.

A tiny Llama (agentlab.models.tiny, ~0.2M parameters) gets a short format warm start (SFT on scripted FunctionGym
episodes) so that it plays real multi-turn episodes, then:

1. **Rollouts** (`agentlab.rl.rollout.rollout_groups`): G groups x n episodes of FunctionGym, every turn one batched
   `generate` over all unfinished episodes, versus the same episodes generated one prompt at a time
   (`batch_size=1`). Prints episodes/s and the batching speed-up.
2. **Update** (`MultiTurnGRPOTrainer.update`): the PPO-clip update on one rollout batch, versus a plain PyTorch loop
   doing the same forward/backward/AdamW steps on the same micro-batches (same tensors, same loss, no accelerate,
   no metrics). Prints real (unpadded) tokens/s of both and their ratio (target >= 0.8).

Tiny-model numbers measure framework overhead, not what a real LLM would do; rerun with --model llama-small or a
bigger checkpoint (hf:PATH) for compute-bound numbers.

    python bench/bench_rl.py                  # ~1 min on 2 CPU cores
    python bench/bench_rl.py --groups 16 --generations 8 --repeats 5
"""
import argparse
import copy
import os
import platform
import shutil
import tempfile
import time
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")


def warm_start(model, tok, make_env, steps, out, render="compact"):
    "Teach the tool-call format: SFT on scripted episodes answering a uniformly random digit each turn."
    from agentlab.actions.train import ActionSFTConfig, ActionSFTTrainer
    from agentlab.gyms.agents import action_message
    from agentlab.llm.base import RuleChat, run_sync
    from agentlab.rl.rollout import episode_rows, rollout_groups
    rng = np.random.default_rng(0)
    policy = RuleChat(lambda messages, tools=None, **g: action_message(f"[answer] {rng.integers(1, 5)}"))
    eps = run_sync(rollout_groups(policy, tok, [(make_env, 0)], 24, max_turns=2, render=render, seed=0))[0]
    cfg = ActionSFTConfig(output_dir=out, learning_rate=1e-2, lr_scheduler_type="constant", max_steps=steps,
                          per_device_train_batch_size=8, save_final_model=False, verify_batches=0)
    ActionSFTTrainer(model, tok, cfg, episode_rows(eps)).train()
    return model


def plain_update(model, optimizer, batches, temperature, clip_eps, dual_clip, scale):
    "The same update as MultiTurnGRPOTrainer.update, written as a bare PyTorch loop."
    model.train()
    for b in batches:
        ids, att, sel = b["input_ids"], b["attention_mask"], b["policy_mask"].clone()
        sel[:, 0] = False
        logits = model(input_ids=ids, attention_mask=att).logits[:, :-1][sel[:, 1:]].float() / temperature
        logp = logits.gather(-1, ids[:, 1:][sel[:, 1:]].unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, -1)
        adv, old = b["advantages"][sel], b["old_logprobs"][sel]
        ratio = torch.exp(logp - old)
        loss = torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - clip_eps, 1 + clip_eps))
        loss = torch.where(adv < 0, torch.minimum(loss, -adv * dual_clip), loss)
        (loss.sum() * scale).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="llama-tiny", help="tiny preset (llama-tiny, llama-small)")
    p.add_argument("--groups", type=int, default=8, help="tasks per rollout batch")
    p.add_argument("--generations", type=int, default=8, help="episodes per task")
    p.add_argument("--max-turns", type=int, default=2)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--micro-batch-size", type=int, default=16)
    p.add_argument("--warm-steps", type=int, default=80, help="SFT steps of the format warm start")
    p.add_argument("--repeats", type=int, default=3, help="timed repetitions (after one warm-up)")
    p.add_argument("--unbatched-episodes", type=int, default=8, help="episodes for the one-at-a-time baseline")
    p.add_argument("--render", default="compact", choices=["compact", "full"], help="episode rendering (full: harness prompt + tool block)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from agentlab.gyms.function import FunctionGym, FunctionTask
    from agentlab.llm.base import run_sync
    from agentlab.models.tiny import build_tiny_model
    from agentlab.rl.grpo import MultiTurnGRPOConfig, MultiTurnGRPOTrainer
    from agentlab.rl.rewards import shape_group
    from agentlab.rl.rollout import rollout_groups
    import transformers
    transformers.logging.set_verbosity_error()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"load average {os.getloadavg()[0]:.1f}")
    tmp = tempfile.mkdtemp()
    try:
        task = [FunctionTask("f3", "a + b + c + d", (1, 1, 0, 1), 3)]
        make = lambda: FunctionGym(task, max_steps=args.max_turns, append_reward=True)
        model, tok = build_tiny_model(args.model, seed=0)
        n_params = sum(q.numel() for q in model.parameters())
        t0 = time.perf_counter()
        warm_start(model, tok, make, args.warm_steps, tmp + "/warm", args.render)
        print(f"model {args.model} ({n_params / 1e6:.2f}M params), format warm start {args.warm_steps} steps: {time.perf_counter() - t0:.1f}s")

        # ---- rollouts
        G, n = args.groups, args.generations
        kw = dict(max_turns=args.max_turns, max_new_tokens=args.max_new_tokens, render=args.render, logprob_batch_size=args.micro_batch_size)
        run_sync(rollout_groups(model, tok, [(make, 0)] * 2, 2, seed=99, **kw))  # warm-up
        times, groups = [], None
        for r in range(args.repeats):
            t0 = time.perf_counter()
            groups = run_sync(rollout_groups(model, tok, [(make, 0)] * G, n, seed=r, **kw))
            times.append(time.perf_counter() - t0)
        eps = [e for g in groups for e in g]
        batched = G * n / np.median(times)
        t0 = time.perf_counter()
        single = run_sync(rollout_groups(model, tok, [(make, 0)], args.unbatched_episodes, seed=0, batch_size=1, **kw))[0]
        unbatched = len(single) / (time.perf_counter() - t0)
        print(f"rollout: {G} groups x {n} episodes, {np.mean([e.n_turns for e in eps]):.2f} turns and "
              f"{np.mean([e.n_policy_tokens for e in eps]):.0f} policy tokens per episode, reward {np.mean([sum(e.rewards) for e in eps]):.2f}")
        print(f"  batched (one generate per turn): {batched:8.1f} episodes/s   (median of {args.repeats})")
        print(f"  one prompt at a time:            {unbatched:8.1f} episodes/s   -> batching speed-up {batched / unbatched:.1f}x")

        # ---- update: trainer vs plain loop on the same micro-batches
        cfg = MultiTurnGRPOConfig(output_dir=tmp + "/grpo", steps=1, prompts_per_step=G, num_generations=n, max_turns=args.max_turns,
                                  max_new_tokens=args.max_new_tokens, render=args.render, learning_rate=1e-5,
                                  micro_batch_size=args.micro_batch_size, save_final_model=False)
        trainer = MultiTurnGRPOTrainer(copy.deepcopy(model), tok, cfg, {"function": task})
        trainer._setup()
        adv = [a for g in groups for a in shape_group([e.rewards for e in g], [e.turn_lengths for e in g], cfg.shaping)]
        full = []
        for e, a in zip(eps, adv):
            f = np.zeros(len(e.input_ids), dtype=np.float32); f[np.flatnonzero(e.policy_mask)] = a; full.append(f)
        batches = trainer._micro_batches(eps, list(range(len(eps))), full, None)
        tokens = sum(b["tokens"] for b in batches)
        n_pol = sum(int(b["policy_mask"][:, 1:].sum()) for b in batches)
        plain_model = copy.deepcopy(model)
        opt = torch.optim.AdamW([q for q in plain_model.parameters() if q.requires_grad], lr=1e-5, weight_decay=0.0)

        def t_trainer():
            t0 = time.perf_counter(); trainer.update(eps, adv, None, np.random.default_rng(0)); return time.perf_counter() - t0

        def t_plain():
            t0 = time.perf_counter(); plain_update(plain_model, opt, batches, 1.0, 0.2, 3.0, 1.0 / max(n_pol, 1)); return time.perf_counter() - t0

        t_trainer(); t_plain()  # warm-up
        tt, tp = [], []
        for _ in range(args.repeats):  # interleaved, so load changes hit both
            tt.append(t_trainer()); tp.append(t_plain())
        tr, pl = tokens / np.median(tt), tokens / np.median(tp)
        print(f"update: {len(eps)} episodes, {tokens} tokens ({n_pol} policy tokens) in {len(batches)} micro-batches of <= {args.micro_batch_size}")
        print(f"  MultiTurnGRPOTrainer.update: {tr:10.0f} tokens/s")
        print(f"  plain PyTorch loop:          {pl:10.0f} tokens/s   -> trainer / plain = {tr / pl:.2f} (target >= 0.8)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
