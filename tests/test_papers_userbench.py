"""The UserBench paper (papers/userbench, arXiv 2507.22034) runs end to end at scale `smoke`.

One run of the five notebooks through the `agentlab.reproduce` Python API into a temporary folder (under a minute,
mostly kernel start-ups); the checks read what the run left behind: every notebook succeeded, each wrote figures,
tables and metrics, every caption says heuristic agents / rule-based user / synthetic tasks, and the paper's values
sit in paper.yaml labelled as secondary-source numbers for LLM agents.
"""
import json
import math
from pathlib import Path

import pytest

from agentlab.reproduce.paper import load_paper

from conftest import PAPERS, artifacts

PAPER = "userbench"
NOTEBOOKS = ["01_leaderboard", "02_choice_modes", "03_concentration", "04_max_turns", "05_elicitation"]


def test_paper_yaml_is_honest():
    paper = load_paper(PAPERS / "userbench")
    assert paper.name == "userbench" and paper.arxiv == "2507.22034"
    assert [nb.name for nb in paper.notebooks] == NOTEBOOKS
    for word in ("HEURISTIC", "RULE-BASED", "SYNTHETIC", "secondary", "different agent population"):
        assert word in paper.description, word
    lead = paper.notebook("01_leaderboard").reported
    assert lead["best_exist/GPT-4o"]["value"] == pytest.approx(0.204)
    assert all("secondary" in r["note"] for r in lead.values())
    assert paper.notebook("02_choice_modes").reported["one_multi_ratio"]["value"] == pytest.approx(0.6)
    for nb in paper.notebooks:   # scale + out_dir + the optional LLM agent and user in every parameters cell
        assert {"scale", "out_dir", "seed", "model", "user"} <= set(nb.declared), nb.name


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
        assert {"figure", "table", "metrics"} <= {a["kind"] for a in mine}, nb
        for a in mine:
            for f in a["files"]:
                assert (run_dir / f).is_file() and (run_dir / f).stat().st_size > 0, f
    m = json.loads((run_dir / "metrics.json").read_text())
    assert set(NOTEBOOKS) <= set(m)
    assert m["01_leaderboard"]["score/expert (privileged)"] == 1.0        # the oracle solves every task
    assert m["01_leaderboard"]["score/search-then-cheapest"] == 0.0      # the cheapest shown option is never correct
    assert 0 < m["02_choice_modes"]["one_multi_ratio"] <= 1              # a second answer never hurts
    assert isinstance(m["03_concentration"]["harder_44_than_2222"], bool)
    assert m["04_max_turns"]["turns"][-1] > 20 and isinstance(m["04_max_turns"]["more_turns_help"], bool)
    assert 0 <= m["05_elicitation"]["active_elicitation_max_competitor"] <= 1
    assert not math.isnan(m["05_elicitation"]["valid_search_min"])


def test_captions_are_honest_and_compare_with_the_paper(run):
    _, run_dir = run
    for a in artifacts(run_dir):
        if a["kind"] not in ("figure", "table"): continue
        if a["name"] == "table1b_paper_reported":   # the paper's own numbers: labelled as another population
            assert "secondary source" in a["caption"] and "different agent" in a["caption"]
            continue
        text = a["caption"] + " " + (a["note"] or "")
        for word in ("heuristic agents", "rule-based user", "synthetic"):
            assert word in text, (a["name"], word)
    main = {a["name"]: a["caption"] for a in artifacts(run_dir)}
    assert "ratio = " in main["table2_choice_modes"] and "paper: ~0.6" in main["table2_choice_modes"]
    assert "paper:" in main["fig3_concentration"] and "ours " in main["fig3_concentration"]
    assert "paper: more turns" in main["fig4_max_turns"]
    assert "paper: < 30%" in main["fig5_elicitation"]
