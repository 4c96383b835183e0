"""The UserRL paper folder (papers/userrl, arXiv 2509.19736) runs end to end at scale `smoke`.

Runs the notebooks through the `agentlab.reproduce` Python API into a temporary folder and checks that every
notebook succeeded, that the gym table has a row per baseline agent and a column per gym plus the weighted average,
and that captions say the agents are heuristics with rule-based users.
"""
import json
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
