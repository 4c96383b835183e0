"""The multi-resolution subsampling paper (papers/subsampling, arXiv 2407.05691) runs end to end at scale `smoke`.

One run of the five notebooks through the `agentlab.reproduce` Python API into a temporary folder (about half a
minute, mostly kernel start-ups); the checks read what the run left behind: every notebook succeeded, each wrote
figures, tables and metrics, and every caption says that the multi-resolution method is a reconstruction.
"""
import json
from pathlib import Path

import pytest

from agentlab.reproduce.paper import load_paper

from conftest import PAPERS, artifacts

PAPER = "subsampling"
NOTEBOOKS = ["01_mse_vs_r", "02_coverage", "03_focus_and_passes", "04_cost", "05_real_data"]


def test_paper_yaml_is_honest():
    paper = load_paper(PAPERS / "subsampling")
    assert paper.arxiv == "2407.05691"
    assert [nb.name for nb in paper.notebooks] == NOTEBOOKS
    assert "RECONSTRUCTION" in paper.description and "NO paper-reported numbers" in paper.description
    assert all(not nb.reported for nb in paper.notebooks)   # the paper's numbers are unknown: none are claimed


def test_every_notebook_succeeds(run):
    res, run_dir = run
    assert [(r.notebook, r.status) for r in res.runs] == [(n, "ok") for n in NOTEBOOKS], [r.error for r in res.runs]
    assert res.ok
    assert (run_dir / "REPORT.md").is_file()


def test_figures_tables_metrics_exist(run):
    _, run_dir = run
    arts = artifacts(run_dir)
    for nb in NOTEBOOKS:
        mine = [a for a in arts if a["notebook"] == nb]
        kinds = {a["kind"] for a in mine}
        assert {"figure", "table", "metrics"} <= kinds, (nb, kinds)
        for a in mine:
            for f in a["files"]:
                assert (run_dir / f).is_file() and (run_dir / f).stat().st_size > 0, f
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(NOTEBOOKS) <= set(metrics)
    assert set(metrics["01_mse_vs_r"]["mse_ratio_mr_vs_mvc_mean"]) == {"mzNormal", "nzNormal", "ueNormal", "mixNormal", "T3", "EXP"}
    assert 0 <= metrics["02_coverage"]["coverage_osmac_mvc"] <= 1


def test_captions_say_reconstruction(run):
    _, run_dir = run
    for a in artifacts(run_dir):
        if a["kind"] in ("figure", "table"):
            assert "reconstruction" in a["caption"], (a["notebook"], a["name"], a["caption"])
            assert a["note"] and "reconstruction" in a["note"]      # the honesty note stamped on figures and tables
    spec_tables = [a for a in artifacts(run_dir) if "spec6" in a["name"]]
    assert spec_tables and all("not the paper's numbers" in a["caption"] for a in spec_tables)
