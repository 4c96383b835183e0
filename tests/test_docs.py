"""`agentlab docs`: the offline Sphinx + myst-nb site, built from nbs/ and a papers folder into a temporary folder.

One full build (about 10-20 s: Sphinx start-up and autodoc importing every module) is shared by the tests.
"""
import json
import re
from pathlib import Path

import pytest

from agentlab.docsite import build_site, notebook_title, package_modules

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "papers"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("docs")
    index = build_site(out=tmp / "site", staging=tmp / "stage", papers_dir=FIXTURES)
    return index.parent


def title_of(html_path: Path) -> str:
    return re.search(r"<title>(.*?)</title>", html_path.read_text(encoding="utf-8"), re.S).group(1)


def module_notebooks():
    return sorted(p for p in (ROOT / "nbs").rglob("*.ipynb") if not any(s.startswith(("_", ".")) for s in p.relative_to(ROOT / "nbs").parts))


def test_index(site):
    index = (site / "index.html").read_text(encoding="utf-8")
    assert "agentlab" in title_of(site / "index.html")
    assert "Reproducing papers" in index and "Papers" in index and "API reference" in index


def test_every_module_notebook_has_a_page_with_its_title(site):
    nbs = module_notebooks()
    assert any(p.relative_to(ROOT / "nbs").as_posix() == "core/00_messages.ipynb" for p in nbs)
    for nb_path in nbs:
        page = site / "modules" / nb_path.relative_to(ROOT / "nbs").with_suffix(".html")
        assert page.is_file(), page
        title = notebook_title(json.loads(nb_path.read_text(encoding="utf-8")))
        assert title and title.split("`")[0].strip() in page.read_text(encoding="utf-8"), (page, title)


def test_module_page_is_cleaned(site):
    html = (site / "modules" / "reproduce" / "01_artifacts.html").read_text(encoding="utf-8")
    assert "Artifacts" in title_of(site / "modules" / "reproduce" / "01_artifacts.html")
    assert "#| export" not in html and "default_exp" not in html and "nbdev_export" not in html
    assert "from fastcore.test import" not in html  # a #| hide cell
    assert "class Artifacts" in re.sub(r"<[^>]+>", "", html)  # exported code is shown
    assert "API reference:" in html


def test_paper_pages(site):
    paper = site / "papers" / "demo" / "index.html"
    assert "A demo paper: Monte Carlo estimates" in title_of(paper)
    html = paper.read_text(encoding="utf-8")
    assert "Figure 1, Table 1" in html and "pi = 3.14159" in html and "0000.00000" in html
    assert "Estimating pi by throwing darts" in title_of(site / "papers" / "demo" / "01_pi.html")
    assert "The central limit theorem" in title_of(site / "papers" / "demo" / "02_clt.html")


def test_api_reference(site):
    mods = package_modules()
    assert "agentlab.reproduce.artifacts" in mods
    for mod in mods:
        assert (site / "api" / f"{mod}.html").is_file(), mod
    html = (site / "api" / "agentlab.reproduce.artifacts.html").read_text(encoding="utf-8")
    assert "Artifacts" in html and "figure" in html and ".. automodule" not in html


def test_no_remote_fetch_configured():
    conf = (ROOT / "docs" / "conf.py").read_text()
    assert "sphinx.ext.intersphinx" not in conf and 'nb_execution_mode = "off"' in conf
