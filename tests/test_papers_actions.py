"""The xLAM (papers/xlam, arXiv 2409.03215) and ActionStudio (papers/actionstudio, arXiv 2503.22673) folders run
end to end at scale `smoke`.

Runs both papers through the `agentlab.reproduce` Python API into a temporary folder and checks that every notebook
succeeded, that each one wrote its tables, figures and metrics, and that the tables have the shape the papers'
layouts need (the 2x2 ablation arms, the BFCL Table-5 columns with the reported rows, the throughput settings) and
that captions say tiny model / synthetic data.
"""
import json
from pathlib import Path

import pandas as pd
import pytest

from agentlab.reproduce.runner import reproduce

PAPERS = Path(__file__).resolve().parents[1] / "papers"

ARTIFACTS = {
    "xlam": {"tables": ["data_pipeline", "verifier_recall", "verification_stages", "ablation_2x2", "ablation_deltas",
                        "bfcl_per_category", "table5_bfcl"],
             "figures": ["data_pipeline", "ablation_2x2", "table5_bfcl"],
             "metrics": {"01_data_pipeline": "synth_pass_rate", "02_ablation": "augmentation_gain", "03_bfcl_table": "oracle_ast_overall"}},
    "actionstudio": {"tables": ["conversion_stats", "mixture", "throughput"], "figures": ["tokens_per_row", "throughput"],
                     "metrics": {"01_conversion_stats": "training_rows", "02_throughput": "tokens_per_s_full_unpadded"}},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    res = reproduce(["xlam", "actionstudio"], scale="smoke", papers_dir=PAPERS, out=out, run_id="smoke", progress=False)
    return res, {p: out / p / "smoke" for p in ARTIFACTS}


def test_every_notebook_succeeds(runs):
    res, dirs = runs
    assert res.ok, [(r.notebook, r.error) for r in res.failed]
    assert {r.notebook for r in res.runs} == {"01_data_pipeline", "02_ablation", "03_bfcl_table", "01_conversion_stats", "02_throughput"}
    for d in dirs.values(): assert (d / "REPORT.md").is_file()


@pytest.mark.parametrize("paper", list(ARTIFACTS))
def test_artifacts_exist(runs, paper):
    _, dirs = runs
    d, want = dirs[paper], ARTIFACTS[paper]
    for t in want["tables"]:
        assert (d / "tables" / f"{t}.csv").is_file() and (d / "tables" / f"{t}.md").is_file(), t
    for f in want["figures"]: assert (d / "figures" / f"{f}.png").stat().st_size > 1000, f
    metrics = json.loads((d / "metrics.json").read_text())
    for nb, key in want["metrics"].items(): assert key in metrics[nb], (nb, key)


def test_xlam_tables(runs):
    _, dirs = runs
    d = dirs["xlam"]
    pipe = pd.read_csv(d / "tables" / "data_pipeline.csv").set_index("source")
    assert "synthetic APIGen-style" in pipe.index and any("BFCL" in s for s in pipe.index)
    assert (pipe["records_in"] == pipe["rejected_at_conversion"] + pipe["rejected_at_verification"] + pipe["kept"]).all()
    ab = pd.read_csv(d / "tables" / "ablation_2x2.csv")
    assert list(ab["arm"]) == ["raw", "verified", "augmented", "augmented + verified"]
    assert ab["steps"].nunique() == 1  # same step budget for every arm
    t5 = pd.read_csv(d / "tables" / "table5_bfcl.csv").set_index("model")
    assert t5.filter(like="oracle", axis=0)["AST overall (6-number mean, not official)"].iloc[0] == 100.0
    assert "xLAM-8x22b-r (FC)" in t5.index and t5.loc["xLAM-8x22b-r (FC)", "Overall (official)"] == 87.31


def test_actionstudio_tables(runs):
    _, dirs = runs
    d = dirs["actionstudio"]
    stats = pd.read_csv(d / "tables" / "conversion_stats.csv").set_index("source")
    assert (stats["records_in"] == stats["trajectories_out"] + stats["rejected"]).all()
    assert (stats["tokens_mean"] > 0).all()
    tp = pd.read_csv(d / "tables" / "throughput.csv")
    assert {"1p-full-unpadded", "1p-full-padded", "1p-lora-unpadded", "1p-lora-padded"} <= set(tp["run"])
    assert (tp["padded_tokens_per_s"].dropna() >= tp["tokens_per_s"].dropna()).all()
    lora = tp.set_index("run").loc["1p-lora-unpadded"]
    assert lora["trainable_parameters"] < lora["parameters"] / 10


def test_captions_are_honest(runs):
    _, dirs = runs
    for d in dirs.values():
        text = (d / "REPORT.md").read_text()
        assert "tiny" in text and "synthetic" in text and "CPU" in text
