"""The UserRL paper folder (papers/userrl, arXiv 2509.19736) runs end to end at scale `smoke`.

Runs the five notebooks through the `agentlab.reproduce` Python API into a temporary folder (about a minute) and
checks that every notebook succeeded; that the gym table has a row per baseline agent and a column per gym plus the
weighted average; that the reward-shaping grid trained six GRPO arms from ONE shared SFT cold start with validation
at step 0 and later, and that the reference's zero-credit rule pushes no failure down while the corrected default
does; that RL from an untrained model gets no learning signal (no tool call, every group zero-advantage); that the
user-strength cross-evaluation really ran each policy with the other user; that the trained-policy table sits in
Table 1's layout beside the baselines; and that captions say tiny model, rule-based users, not comparable. Checks
that only mean something at `small` (the SFT'd policy calls tools, an arm beats the cold start) are reported by the
notebooks, not asserted at smoke.
"""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agentlab.gyms import GYMS

from conftest import PAPERS, artifacts

PAPER = "userrl"


def test_every_notebook_succeeds(run):
    res, run_dir = run
    assert res.ok, [r.error for r in res.runs]
    assert (run_dir / "REPORT.md").is_file()


def test_gym_table(run):
    _, run_dir = run
    tab = pd.read_csv(run_dir / "tables" / "table1_gym_scores.csv").set_index("agent")
    assert list(tab.columns) == [*GYMS, "Avg"]
    assert set(tab.index) >= {"random", "answer-immediately", "expert"}
    # the privileged expert solves every synthetic task; the random agent does not
    assert tab.loc["expert", "Avg"] > tab.loc["random", "Avg"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert any("avg_expert" in json.dumps(v) for v in metrics.values()) or "avg_expert" in json.dumps(metrics)


def test_captions_are_honest(run):
    _, run_dir = run
    text = (run_dir / "REPORT.md").read_text()
    assert "rule-based" in text and "not comparable" in text


def test_user_strength(run):
    _, run_dir = run
    grid = pd.read_csv(run_dir / "tables" / "user_strength_2x2.csv").set_index("policy")
    assert list(grid.index) == ["base", "SFT", "GRPO (trained: weak)", "GRPO (trained: strong)"]
    assert list(grid.columns) == ["evaluated: weak user", "evaluated: strong user"]
    assert np.isfinite(grid.to_numpy()).all() and (grid.to_numpy() >= 0).all()
    per_gym = pd.read_csv(run_dir / "tables" / "user_strength_per_gym.csv")
    assert len(per_gym) == 8 and per_gym.columns[-1] == "Avg"            # 4 policies x 2 evaluation users
    # the cross-evaluation really used the other user: every episode record names the user it ran with
    for label, name in (("weak", "rule-weak"), ("strong", "rule-strong")):
        eps = list((run_dir / "04_user_strength" / f"eval_{label}" / "eval").glob("*/*/episodes.jsonl"))
        assert len(eps) >= 4
        assert {json.loads(l)["user"] for f in eps for l in f.read_text().splitlines() if l.strip()} == {name}
    # both GRPO arms trained (from the one shared cold start)
    for label in ("weak", "strong"):
        assert (run_dir / "04_user_strength" / f"grpo_{label}" / "grpo" / "final" / "model.safetensors").is_file()
    assert len(list((run_dir / "04_user_strength").glob("*/sft/final"))) == 1
    m = json.loads((run_dir / "metrics.json").read_text())["04_user_strength"]
    assert {"train_strong_eval_strong", "train_weak_eval_strong", "train_strong_eval_weak", "train_weak_eval_weak",
            "first_call_rate_sft", "expert_episodes_differing", "findings"} <= set(m)
    assert m["first_call_rate_base"] == 0.0                               # an untrained model never calls the tool


def test_trained_table(run):
    _, run_dir = run
    tab = pd.read_csv(run_dir / "tables" / "table1_trained.csv").set_index("agent")
    assert list(tab.columns) == [*GYMS, "Avg"]
    assert set(tab.index) == {"random", "answer-immediately", "expert", "base (untrained)", "SFT cold start", "SFT + GRPO"}
    assert tab.loc["expert", "Avg"] > tab.loc["random", "Avg"]
    assert tab.loc["base (untrained)", "Avg"] == 0.0
    summary = json.loads((run_dir / "05_trained_table" / "run" / "summary.json").read_text())
    assert set(summary["models"]) == {"base", "sft", "grpo"}
    m = json.loads((run_dir / "metrics.json").read_text())["05_trained_table"]
    assert {"avg_base", "avg_sft", "avg_grpo", "avg_expert", "first_call_rate", "findings"} <= set(m)


def test_trained_captions_are_honest(run):
    _, run_dir = run
    recs = [json.loads(l) for l in (run_dir / "artifacts.jsonl").read_text().splitlines() if l.strip()]
    for r in recs:
        if r.get("notebook") in ("04_user_strength", "05_trained_table") and r["kind"] in ("table", "figure"):
            text = (r.get("caption", "") + " " + (r.get("note") or "")).lower()
            assert "tiny" in text and "rule-based" in text, r["name"]


ARMS = [f"{c}/{t}" for c in ("Equalized", "R2G", "EM") for t in ("Sum", "R2G")]

def test_reward_shaping_grid(run):
    _, run_dir = run
    final = pd.read_csv(run_dir / "tables" / "shaping_final_table.csv").set_index("shaping")
    assert list(final.index) == ["cold start (SFT)", *ARMS]
    assert list(final.columns[-3:]) == ["train avg", "held-out avg", "Avg"]
    assert np.isfinite(final.to_numpy()).all() and (final.to_numpy() >= 0).all()
    curves = pd.read_csv(run_dir / "tables" / "shaping_validation_curves.csv")
    assert set(curves.arm) == set(ARMS)
    steps = curves.groupby("arm").step.apply(list)
    assert all(s == steps.iloc[0] and s[0] == 0 and len(s) >= 2 for s in steps)   # validation at step 0 and later
    m = json.loads((run_dir / "metrics.json").read_text())["02_reward_shaping"]
    assert m["step0_identical"] is True                                      # every arm starts from the same cold start
    assert m["arms"] == ARMS and {"r2g_beats_sum", "best_turn_credit", "heldout_improves", "any_arm_above_cold_start"} <= set(m)
    # each arm trained from the one shared cold start (no SFT of its own), with the shaping it names
    shapings = {json.loads(p.read_text())["shaping"] for p in (run_dir / "training" / "smoke").glob("grpo-*/grpo/config.json")}
    assert set(ARMS) <= shapings
    assert len(list((run_dir / "training" / "cold_starts").glob("*/sft/final/model.safetensors"))) == 1
    # the reference's zero-credit rule: failures with a negative group advantage are never pushed down
    rule = pd.read_csv(run_dir / "tables" / "zero_credit_rule.csv").set_index("shaping")
    ref, cor = rule.loc["R2G/R2G (reference: faithful_zero_credit)"], rule.loc["R2G/R2G (corrected default)"]
    assert ref["zero-advantage groups"] >= cor["zero-advantage groups"]
    assert math.isnan(ref["of them pushed down"]) or ref["of them pushed down"] == 0.0
    assert math.isnan(cor["of them pushed down"]) or cor["of them pushed down"] == 1.0


def test_cold_start_vs_none(run):
    _, run_dir = run
    final = pd.read_csv(run_dir / "tables" / "cold_start_final_table.csv").set_index("policy")
    assert list(final.index) == ["RL from scratch: untrained", "RL from scratch: after GRPO", "RL after SFT: cold start (SFT)",
                                 "RL after SFT: after GRPO"]
    assert final.loc["RL from scratch: untrained", "Avg"] == 0.0
    curves = pd.read_csv(run_dir / "tables" / "cold_start_validation_curves.csv")
    assert set(curves.arm) == {"RL from scratch", "RL after SFT"}
    m = json.loads((run_dir / "metrics.json").read_text())["03_cold_start"]
    # an untrained model never writes a usable tool call, so GRPO from it has no learning signal at all
    assert m["tool_call_rate_untrained"] == 0.0
    assert m["zero_adv_frac_scratch"] == 1.0 and m["no_tool_call_scratch"] == 1.0
    assert {"sft_beats_scratch", "scratch_rl_improves", "gain_sft", "tool_call_rate_sft"} <= set(m)


def test_shaping_captions_are_honest(run):
    _, run_dir = run
    recs = [json.loads(l) for l in (run_dir / "artifacts.jsonl").read_text().splitlines() if l.strip()]
    mine = [r for r in recs if r.get("notebook") in ("02_reward_shaping", "03_cold_start") and r["kind"] in ("table", "figure")]
    assert len(mine) >= 10
    for r in mine:
        text = (r.get("caption", "") + " " + (r.get("note") or "")).lower()
        assert "tiny" in text and "rule-based" in text and "not comparable" in text, r["name"]
