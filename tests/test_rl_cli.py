"""`agentlab train userrl`: the whole pipeline at tiny sizes through the real CLI entry point, then a resume."""
import json

import pandas as pd
import pytest

from agentlab.cli import main


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


def test_shared_cold_start_arms_and_validation_curves(tmp_path, tiny_cache, one_thread):
    """Several GRPO arms from one SFT model (trained once), with validation curves and a chosen final evaluation."""
    from agentlab.rl.cli import UserRLSettings, _manifest_params, grpo_history, shared_cold_start, train_userrl
    base = dict(model="tiny:llama-tiny", gyms=["turtle"], eval_gyms=["turtle", "telepathy"], sft_episodes=2, sft_epochs=1,
                max_turns=4, max_new_tokens=24, eval_episodes=1, prompts_per_step=1, num_generations=2, micro_batch_size=2)
    sft = shared_cold_start(UserRLSettings(**base), tmp_path / "shared", threads=1)
    stamp = (sft / "model.safetensors").stat().st_mtime_ns
    # other GRPO settings: the same cold start, not retrained
    assert shared_cold_start(UserRLSettings(**base, turn_credit="em", steps=3), tmp_path / "shared") == sft
    assert (sft / "model.safetensors").stat().st_mtime_ns == stamp
    assert len(list((tmp_path / "shared").iterdir())) == 1

    out = tmp_path / "arm"
    argv = ["train", "userrl", "--model", "tiny:llama-tiny", "--out", str(out), "--gyms", "turtle", "--eval-gyms", "turtle,telepathy",
            "--cold-start", str(sft), "--steps", "2", "--prompts-per-step", "1", "--num-generations", "2", "--max-turns", "4",
            "--max-new-tokens", "24", "--eval-episodes", "1", "--micro-batch-size", "2", "--grpo-eval-steps", "1",
            "--eval-stages", "grpo", "--turn-credit", "r2g", "--faithful-zero-credit", "--threads", "1", "-q"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [r["step"] for r in summary["curves"]] == [0, 1, 2]
    assert all({"eval/turtle", "eval/telepathy", "eval_score"} <= set(r) for r in summary["curves"])
    assert summary["models"]["sft"] == str(sft) and summary["sft"]["global_step"] >= 1
    assert not (out / "sft").exists() and not (out / "sft_data.jsonl").exists()
    assert list(pd.read_csv(out / "table.csv", index_col=0).columns) == ["grpo"]
    assert sorted(p.name for p in (out / "eval").iterdir()) == ["grpo"]
    cfg = json.loads((out / "grpo" / "config.json").read_text())
    assert cfg["shaping"] == "R2G/R2G" and cfg["config"]["faithful_zero_credit"] is True
    assert cfg["config"]["eval_steps"] == 1 and cfg["config"]["eval_episodes"] == 1 and set(cfg["eval_gyms"]) == {"turtle", "telepathy"}
    assert [r["step"] for r in grpo_history(out) if r["kind"] == "train"] == [1, 2]

    # a second arm from the same checkpoint: its step-0 validation is the same greedy evaluation of the cold start
    arm2 = train_userrl(out=tmp_path / "arm2", threads=1, **base, cold_start=str(sft), steps=1, grpo_eval_steps=1, eval_stages=[])
    strip = lambda r: {k: v for k, v in r.items() if k not in ("eval_s", "id")}
    assert strip(arm2.summary["curves"][0]) == strip(summary["curves"][0])
    assert arm2.table.empty and arm2.history == grpo_history(arm2.out)

    # settings added later stay out of the manifest at their defaults: older run folders still resume
    assert not {"cold_start", "grpo_eval_steps", "eval_stages", "faithful_zero_credit"} & set(_manifest_params(UserRLSettings()))
    with pytest.raises(ValueError, match="cold_start and no_sft exclude each other"):
        UserRLSettings(cold_start=str(sft), no_sft=True)
