"""DPO on corrupted tool calls: TRL's DPOTrainer (full and LoRA) raises the chosen-vs-rejected log-prob margin."""
import json

import pytest

from agentlab.actions.dpo import ActionDPOConfig, CORRUPTION_OPS, preference_margin, preference_pairs, train_dpo
from agentlab.actions.synth import generate_dataset
from agentlab.actions.train import ActionSFTConfig, ActionSFTTrainer
from agentlab.models.tiny import build_tiny_model


@pytest.fixture(scope="module")
def pairs():
    trajs = generate_dataset(40, seed=5, kinds=("simple", "multiple", "parallel", "irrelevance"), verify=False).trajectories
    return preference_pairs(trajs, seed=5)


def test_pairs_cover_the_operators(pairs):
    ops = {p.operator for p in pairs}
    assert ops <= set(CORRUPTION_OPS) | {"spurious_call"} and "spurious_call" in ops and len(ops) >= 4
    assert all(p.chosen != p.rejected for p in pairs)


def test_full_dpo_raises_margin(pairs, tmp_path):
    model, tok = build_tiny_model("llama-tiny", seed=0)
    before = preference_margin(model, tok, pairs)
    cfg = ActionDPOConfig(output_dir=str(tmp_path), max_steps=6, per_device_train_batch_size=8, learning_rate=1e-3, logging_steps=3)
    metrics = train_dpo(model, tok, cfg, pairs)
    after = preference_margin(model, tok, pairs)
    assert metrics["global_step"] == 6
    assert after > before + 1.0, (before, after)
    assert json.loads((tmp_path / "metrics.json").read_text())["n_pairs"] == len(pairs)


def test_lora_dpo_after_sft_raises_margin(pairs, tmp_path):
    """ActionStudio's recipe: SFT, then DPO with LoRA (reference = the SFT model, i.e. the adapter switched off)."""
    model, tok = build_tiny_model("llama-tiny", seed=0)
    sft_rows = [{"id": p.id, "messages": p.messages, "tools": p.tools, "target": p.chosen} for p in pairs]
    ActionSFTTrainer(model, tok, ActionSFTConfig(output_dir=str(tmp_path / "sft"), max_steps=30, per_device_train_batch_size=8,
                                                 learning_rate=5e-3, save_final_model=False), sft_rows).train()
    before = preference_margin(model, tok, pairs)
    cfg = ActionDPOConfig(output_dir=str(tmp_path / "dpo"), max_steps=6, per_device_train_batch_size=8, learning_rate=5e-3,
                          lora=True, lora_r=8, lora_alpha=16, logging_steps=3)
    train_dpo(model, tok, cfg, pairs)
    policy = train_dpo.trainer.accelerator.unwrap_model(train_dpo.trainer.model)
    after = preference_margin(policy, tok, pairs)
    assert after > before, (before, after)
    assert (tmp_path / "dpo" / "adapter" / "adapter_config.json").exists()
    assert (tmp_path / "dpo" / "final" / "config.json").exists()
