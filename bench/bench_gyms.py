"""Steps per second of every built gym with rule-based roles (one core, single process).

`bench_env_steps`: for each gym module that exists, runs episodes for a fixed time with (a) random actions
(`env.random_action`), (b) the scripted expert (`env.oracle_action`) and (c) a fixed malformed action (the
format-error path, i.e. the base-class overhead alone), resetting when an episode ends, and prints steps/s. The time
to produce each action and the resets are included, since an RL loop pays them too.
`bench_travel_steps`: TravelGym in more detail: the same policies split into env.step time alone vs. the whole loop,
per action type, over the synthetic test set (471 tasks), one-choice and multi-choice.
Bounded: 3 x `--seconds` per gym plus ~4 x `--seconds` for the TravelGym detail (~12 s by default).

    python bench/bench_gyms.py                 # default: 1 s per cell
    python bench/bench_gyms.py --seconds 0.3   # quicker
"""
import argparse
import importlib
import os
import platform
import time

import numpy as np

GYMS = ["agentlab.gyms.function:FunctionGym", "agentlab.gyms.travel:TravelGym", "agentlab.gyms.telepathy:TelepathyGym",
        "agentlab.gyms.turtle:TurtleGym", "agentlab.gyms.search:SearchGym", "agentlab.gyms.intention:IntentionGym",
        "agentlab.gyms.persuade:PersuadeGym"]


def rate(env, policy, seconds):
    "Steps/s of `policy()` actions for `seconds`, resetting whenever an episode ends."
    steps, seed = 0, 0
    env.reset(seed=seed)
    t0 = time.perf_counter()
    while True:
        for _ in range(100):
            if env.terminated or env.truncated:
                seed += 1
                env.reset(seed=seed)
            env.step(policy())
            steps += 1
        if (elapsed := time.perf_counter() - t0) >= seconds: return steps / elapsed


# ---------------------------------------------------------------------------------------- env steps, every gym

def bench_env_steps(seconds: float = 1.0) -> dict:
    "Rule-based env steps/s of every importable gym: random actions, the scripted expert, the format-error path."
    print(f"{'gym':14s} {'random steps/s':>15s} {'expert steps/s':>15s} {'format-error steps/s':>21s}")
    out = {}
    for spec in GYMS:
        module_name, cls_name = spec.split(":")
        try: cls = getattr(importlib.import_module(module_name), cls_name)
        except ModuleNotFoundError:
            print(f"{cls_name:14s} (module not built yet)")
            continue
        env, rng = cls(max_steps=16), np.random.default_rng(0)
        cells = [rate(env, lambda: env.random_action(rng), seconds),
                 rate(env, env.oracle_action, seconds),
                 rate(env, lambda: "no tag here", seconds)]
        out[cls_name] = dict(zip(("random", "expert", "format_error"), cells))
        print(f"{cls_name:14s} {cells[0]:15,.0f} {cells[1]:15,.0f} {cells[2]:21,.0f}")
    return out


# ---------------------------------------------------------------------------------------- TravelGym in detail

def travel_rates(env, policy, seconds, rng):
    "(loop steps/s, env.step-only steps/s, steps per action type) over the env's tasks, round-robin."
    steps, stepping, by_choice, i = 0, 0.0, {}, 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        env.reset(seed=i, options={"index": i % len(env.tasks)}); i += 1
        while not (env.terminated or env.truncated):
            action = env.oracle_action() if policy == "expert" else env.random_action(rng)
            t1 = time.perf_counter()
            env.step(action)
            stepping += time.perf_counter() - t1
            steps += 1
            c = env.history[-1]["choice"]
            by_choice[c] = by_choice.get(c, 0) + 1
    return steps / (time.perf_counter() - t0), steps / stepping, by_choice, i


def bench_travel_steps(seconds: float = 1.0) -> dict:
    "TravelGym (rule roles, synthetic test set): loop vs env.step-only steps/s, one-choice and multi-choice."
    try:
        from agentlab.gyms.travel import TravelGym
    except ModuleNotFoundError:
        print("TravelGym (module not built yet)")
        return {}
    out = {}
    print(f"\nTravelGym, 471 synthetic test tasks, rule roles, max_steps 16 (synthetic data; not the benchmark's)")
    print(f"{'mode':12s} {'policy':8s} {'loop steps/s':>13s} {'env.step steps/s':>17s} {'episodes':>9s}  actions")
    for one_choice in (True, False):
        env = TravelGym(one_choice=one_choice, max_steps=16)
        for policy in ("random", "expert"):
            loop, step_only, by_choice, episodes = travel_rates(env, policy, seconds, np.random.default_rng(0))
            mode = "one-choice" if one_choice else "multi-choice"
            out[(mode, policy)] = dict(loop=loop, step_only=step_only, episodes=episodes)
            mix = ", ".join(f"{k} {v}" for k, v in sorted(by_choice.items()))
            print(f"{mode:12s} {policy:8s} {loop:13,.0f} {step_only:17,.0f} {episodes:9d}  {mix}")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = p.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; python {platform.python_version()}")
    bench_env_steps(args.seconds)
    bench_travel_steps(args.seconds)


if __name__ == "__main__":
    main()
