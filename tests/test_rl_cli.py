"""`agentlab train userrl`: the whole pipeline at tiny sizes through the real CLI entry point, then a resume."""
import json

import pandas as pd
import pytest
import torch

from agentlab.cli import main


@pytest.fixture
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_train_userrl_runs_and_resumes(tmp_path, tiny_cache, one_thread, capsys):
    out = tmp_path / "run"
    argv = ["train", "userrl", "--model", "tiny:llama-tiny", "--out", str(out), "--gyms", "turtle,function",
            "--eval-gyms", "turtle,telepathy", "--sft-episodes", "2", "--sft-epochs", "1", "--steps", "2",
            "--prompts-per-step", "2", "--num-generations", "2", "--max-turns", "8", "--max-new-tokens", "24",
            "--eval-episodes", "2", "--micro-batch-size", "4", "--turn-credit", "em", "--trajectory-score", "sum",
            "--threads", "1", "-q"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "== UserRL table" in printed and "| Avg" in printed
    for f in ("manifest.json", "sft_data.jsonl", "sft/cold_start.json", "sft/final/model.safetensors", "grpo/log.jsonl",
              "grpo/final/model.safetensors", "grpo/metrics.json", "table.md", "table.csv", "summary.json"):
        assert (out / f).exists(), f
    for stage in ("base", "sft", "grpo"):
        for gym in ("turtle", "telepathy"):
            assert len((out / "eval" / stage / gym / "episodes.jsonl").read_text().splitlines()) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["grpo"]["global_step"] == 2
    assert summary["settings"]["turn_credit"] == "em"
    assert {json.loads(l)["meta"]["gym"] for l in (out / "sft_data.jsonl").read_text().splitlines()} == {"turtle", "function"}
    grpo_cfg = json.loads((out / "grpo" / "config.json").read_text())
    assert grpo_cfg["shaping"] == "EM/Sum" and grpo_cfg["config"]["render"] == "compact"
    table = pd.read_csv(out / "table.csv", index_col=0)
    assert list(table.columns) == ["base", "sft", "grpo"] and list(table.index) == ["turtle", "telepathy", "Avg"]

    # the same command again: every stage is found done, nothing is retrained, the table is unchanged
    stamps = {k: (out / k / "final" / "model.safetensors").stat().st_mtime_ns for k in ("sft", "grpo")}
    assert main(argv) == 0
    assert {k: (out / k / "final" / "model.safetensors").stat().st_mtime_ns for k in ("sft", "grpo")} == stamps
    assert pd.read_csv(out / "table.csv", index_col=0).equals(table)

    # other settings in the same folder are refused with a clear message
    assert main(argv[:-3] + ["--steps", "3", "-q"]) == 2
    assert "cannot resume with different parameters" in capsys.readouterr().err


def test_train_userrl_refuses_held_out_training_gyms(tmp_path, capsys):
    assert main(["train", "userrl", "--out", str(tmp_path / "x"), "--gyms", "turtle,telepathy"]) == 2
    assert "telepathy held out" in capsys.readouterr().err
