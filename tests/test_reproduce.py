"""`agentlab reproduce` end to end on a real parameterised paper (tests/fixtures/papers/demo).

The demo paper has two notebooks: 01_pi (a Monte Carlo estimate of pi: figure, table, metrics) and 02_clt (a CLT
histogram that raises when run with `fail=True`). Kernel starts dominate the cost, so the whole module executes
7 notebooks: a failing run through the Python API (2) and its resume (1), then through the CLI a failing run (2),
a single-notebook run (1) and its resume (1). Everything else exercises validation without a kernel.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agentlab.cli import main
from agentlab.reproduce.paper import load_paper
from agentlab.reproduce.runner import parse_params, reproduce

FIXTURES = Path(__file__).parent / "fixtures" / "papers"


@pytest.fixture(scope="module")
def papers(tmp_path_factory) -> Path:
    """A private copy of the fixture papers (runs and broken variants never touch the repository)."""
    root = tmp_path_factory.mktemp("papers")
    shutil.copytree(FIXTURES / "demo", root / "demo")
    return root


@pytest.fixture(scope="module")
def api_run(papers, tmp_path_factory):
    """The demo paper run through the Python API with `fail=True`: 01_pi succeeds, 02_clt fails."""
    out = tmp_path_factory.mktemp("runs")
    res = reproduce("demo", papers_dir=papers, out=out, params={"fail": True}, run_id="api", progress=False)
    return res, out / "demo" / "api"


def cli(*args, cwd=None):
    """Run `python -m agentlab.cli ...` in a subprocess (the way a user runs it)."""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "agentlab.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


# ---- Python API -------------------------------------------------------------------------------------------------

def test_api_run_outcomes(api_run):
    res, _ = api_run
    assert [(r.notebook, r.status) for r in res.runs] == [("01_pi", "ok"), ("02_clt", "failed")]
    failed = res.failed[0]
    assert failed.ename == "RuntimeError"
    assert "deliberate failure" in failed.evalue
    assert failed.exec_count is not None and failed.error.startswith(f"cell [{failed.exec_count}] RuntimeError")
    assert "raise RuntimeError" in failed.source
    assert not res.ok


def test_api_run_folder_contents(api_run):
    _, run_dir = api_run
    for rel in ("notebooks/01_pi.ipynb", "notebooks/02_clt.ipynb", "figures/pi_error.png", "tables/pi_estimates.csv",
                "tables/pi_estimates.md", "metrics.json", "manifest.json", "notebooks.jsonl", "artifacts.jsonl", "REPORT.md"):
        assert (run_dir / rel).is_file(), rel
    assert (run_dir / "figures" / "pi_error.png").read_bytes()[:4] == b"\x89PNG"
    # the parameters reached the notebook: papermill's injected cell follows the tagged one
    nb = json.loads((run_dir / "notebooks" / "01_pi.ipynb").read_text())
    tags = [c["metadata"].get("tags", []) for c in nb["cells"]]
    assert ["parameters"] in tags and ["injected-parameters"] in tags
    injected = "".join(nb["cells"][tags.index(["injected-parameters"])]["source"])
    assert 'scale = "smoke"' in injected and str(run_dir.absolute()) in injected
    # the executed notebook keeps its inline figure
    assert any("image/png" in o.get("data", {}) for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"])


def test_api_metrics_and_manifest(api_run):
    _, run_dir = api_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {"01_pi"}  # 02_clt failed before recording its metrics
    assert abs(metrics["01_pi"]["pi"] - 3.14159) < 0.1
    assert -0.8 < metrics["01_pi"]["se_slope"] < -0.3
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["run_id"] == "api" and manifest["status"] == "failed"
    assert manifest["params"] == {"paper": "demo", "scale": "smoke", "parameters": {"fail": True}}
    assert manifest["end_time"] and "papermill" in manifest["packages"]
    records = [json.loads(line) for line in (run_dir / "notebooks.jsonl").read_text().splitlines()]
    assert [(r["id"], r["status"]) for r in records] == [("01_pi", "ok"), ("02_clt", "failed")]
    assert records[1]["ename"] == "RuntimeError" and records[0]["seconds"] > 0


def test_api_report(api_run):
    _, run_dir = api_run
    report = (run_dir / "REPORT.md").read_text()
    assert report.startswith("# Reproduction report: A demo paper: Monte Carlo estimates")
    assert "![pi_error](figures/pi_error.png)" in report
    assert "*(scale=smoke, synthetic darts, seed 0)*" in report  # the honesty note travels with the caption
    assert "| n " in report or "|     n |" in report  # the table is inlined
    assert "| `pi` | 3.1" in report and "| 3.142 |" in report  # ours next to the paper's value
    assert "the 1/sqrt(n) rate" in report  # the reported value's note
    assert "**Failed** in cell [" in report and "deliberate failure requested" in report
    assert "1 ok, 1 failed" in report


def test_api_resume_skips_finished(api_run, papers):
    res, run_dir = api_run
    again = reproduce("demo", papers_dir=papers, out=run_dir.parents[1], params={"fail": True}, run_id="api", progress=False)
    assert [(r.notebook, r.status, r.note) for r in again.runs] == [
        ("01_pi", "ok", "finished earlier in this run"), ("02_clt", "failed", "")]
    records = [json.loads(line) for line in (run_dir / "notebooks.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["01_pi", "02_clt", "02_clt"]  # 01_pi was not executed again
    assert len(json.loads((run_dir / "manifest.json").read_text())["resumed_at"]) == 1
    # a resume with other parameters is refused (before any kernel starts)
    with pytest.raises(ValueError, match="cannot resume with different parameters"):
        reproduce("demo", papers_dir=papers, out=run_dir.parents[1], params={"fail": False}, run_id="api", progress=False)


# ---- CLI ----------------------------------------------------------------------------------------------------------

def test_cli_failure_exit_status_and_summary(papers, tmp_path):
    r = cli("reproduce", "demo", "--papers", papers, "--out", tmp_path, "--run-id", "c1", "-p", "fail=true", "-q")
    assert r.returncode == 1, r.stderr
    assert "02_clt" in r.stdout and "failed" in r.stdout and "deliberate failure" in r.stdout
    assert "FAILED demo/02_clt: cell [" in r.stderr
    assert "1 of 2 notebooks failed" in r.stderr
    assert f"report: " in r.stdout and (tmp_path / "demo" / "c1" / "REPORT.md").is_file()


def test_cli_only_then_resume(papers, tmp_path):
    r = cli("reproduce", "demo", "--papers", papers, "--out", tmp_path, "--run-id", "c2", "--only", "01_pi")
    assert r.returncode == 0, r.stderr
    assert "reproduce: 100%" in r.stderr  # the tqdm bar
    assert json.loads((tmp_path / "demo" / "c2" / "metrics.json").read_text()).keys() == {"01_pi"}
    r = cli("reproduce", "demo", "--papers", papers, "--out", tmp_path, "--run-id", "c2", "-q")
    assert r.returncode == 0, r.stderr
    lines = {line.split()[1]: line for line in r.stdout.splitlines() if line.startswith("demo ")}
    assert "finished earlier in this run" in lines["01_pi"] and " ok " in lines["02_clt"]
    assert json.loads((tmp_path / "demo" / "c2" / "metrics.json").read_text()).keys() == {"01_pi", "02_clt"}
    assert json.loads((tmp_path / "demo" / "c2" / "manifest.json").read_text())["status"] == "finished"


def test_cli_list(papers, capsys):
    assert main(["reproduce", "--list", "--papers", str(papers)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("demo: A demo paper: Monte Carlo estimates (arXiv 0000.00000)")
    assert "01_pi.ipynb" in out and "Figure 1, Table 1" in out and "02_clt.ipynb" in out


def test_cli_list_subprocess(papers):
    r = cli("reproduce", "--list", "--papers", papers)
    assert r.returncode == 0 and "02_clt.ipynb  Figure 2" in r.stdout


def test_cli_all_without_papers(tmp_path, capsys):
    (tmp_path / "papers").mkdir()
    (tmp_path / "papers" / "README.md").write_text("no papers yet")
    assert main(["reproduce", "all", "--papers", str(tmp_path / "papers")]) == 0
    assert "no papers are registered" in capsys.readouterr().out
    # and the default discovery: ./papers relative to the working directory
    r = cli("reproduce", "all", cwd=tmp_path)
    assert r.returncode == 0 and "no papers are registered (papers)" in r.stdout


def test_cli_unknown_paper(papers, capsys):
    assert main(["reproduce", "nosuch", "--papers", str(papers)]) == 2
    assert capsys.readouterr().err.strip() == "agentlab reproduce: error: unknown paper 'nosuch'; known papers: demo"


@pytest.mark.parametrize("param, message", [
    ("foo", "-p 'foo': expected key=value"),
    ("scale=full", "use --scale"),
    ("1n=3", "'1n' is not a valid parameter name"),
    ("nn=3", "-p nn: no notebook of demo has a parameter 'nn'; they declare: fail, k, n, seed"),
])
def test_cli_param_errors(papers, capsys, param, message):
    assert main(["reproduce", "demo", "--papers", str(papers), "-p", param]) == 2
    assert message in capsys.readouterr().err


def test_cli_usage_errors(papers, capsys):
    with pytest.raises(SystemExit) as e:
        main(["reproduce", "demo", "--scale", "huge"])
    assert e.value.code == 2
    assert main(["reproduce", "--papers", str(papers)]) == 2
    assert "name a paper, or 'all'" in capsys.readouterr().err
    assert main(["reproduce", "demo", "--papers", str(papers), "--only", "03_x"]) == 2
    assert main(["reproduce", "demo", "--papers", str(papers / "nope")]) == 2


def test_param_parsing():
    assert parse_params(["n=1000", "lr=3e-4", "fail=true", "xs=[1, 2.5]", "name=qwen", "none=null"]) == dict(
        n=1000, lr=3e-4, fail=True, xs=[1, 2.5], name="qwen", none=None)


# ---- paper.yaml validation ----------------------------------------------------------------------------------------

def broken_copy(papers, tmp_path, yaml_text):
    root = tmp_path / "papers"
    shutil.copytree(papers / "demo", root / "demo")
    (root / "demo" / "paper.yaml").write_text(yaml_text)
    return root


@pytest.mark.parametrize("yaml_text, message", [
    ("title: t\nnotebooks:\n  - {path: 01_pi.ipynb, reproduces: F1}\n  - {path: foo.ipynb, reproduces: F2}\n",
     "demo/paper.yaml: notebooks[1].path: 'foo.ipynb' does not exist"),
    ("title: t\nnotebooks: [\n", "demo/paper.yaml: invalid YAML"),
    ("notebooks:\n  - {path: 01_pi.ipynb, reproduces: F1}\n", "demo/paper.yaml: title: is required"),
    ("title: t\nnotebooks:\n  - {path: 01_pi.ipynb, reproduces: F1, parameters: {m: 3}}\n",
     "notebooks[0].parameters: 'm' is not in the parameters cell of '01_pi.ipynb'"),
    ("title: t\narxiv: 2509.19736\nnotebooks:\n  - {path: 01_pi.ipynb, reproduces: F1}\n", "arxiv: write the id as a quoted string"),
])
def test_bad_paper_yaml(papers, tmp_path, capsys, yaml_text, message):
    root = broken_copy(papers, tmp_path, yaml_text)
    with pytest.raises(ValueError, match="paper.yaml"):
        load_paper(root / "demo")
    assert main(["reproduce", "demo", "--papers", str(root)]) == 2
    assert message in capsys.readouterr().err
    assert main(["reproduce", "--list", "--papers", str(root)]) == 1  # --list shows the invalid paper and fails
    assert "demo: INVALID:" in capsys.readouterr().out


def test_fixture_spec_is_valid():
    spec = load_paper(FIXTURES / "demo")
    assert [nb.name for nb in spec.notebooks] == ["01_pi", "02_clt"]
    assert spec.notebooks[0].reported["pi"] == {"value": 3.14159, "note": None}
    assert set(spec.notebooks[1].declared) == {"scale", "out_dir", "seed", "k", "fail"}
