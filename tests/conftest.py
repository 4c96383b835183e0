"""Shared pytest setup: offline Hugging Face, headless matplotlib, and paths to the project and shared data."""
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it lives beside the project root)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """One cache folder for tiny models per test session, so they are built once."""
    path = tmp_path_factory.mktemp("agentlab-cache")
    os.environ["AGENTLAB_CACHE"] = str(path)
    return path


PAPERS = ROOT / "papers"


@pytest.fixture(scope="module")
def run(request, tmp_path_factory):
    """One `scale=smoke` run of the paper named by the test module's `PAPER`: `(ReproduceResult, run folder)`."""
    from agentlab.reproduce.runner import reproduce
    paper = request.module.PAPER
    out = tmp_path_factory.mktemp("runs")
    res = reproduce(paper, scale="smoke", papers_dir=PAPERS, out=out, run_id="smoke", progress=False)
    return res, out / paper / "smoke"


def artifacts(run_dir: Path) -> list[dict]:
    """The latest record of every artifact a paper run wrote (figures, tables)."""
    from agentlab.reproduce.report import latest_records
    return list(latest_records(run_dir / "artifacts.jsonl").values())


@pytest.fixture
def one_thread():
    """Tiny models train and generate several times faster on one thread of a shared CPU."""
    import torch
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
