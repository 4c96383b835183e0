"""Run every notebook under nbs/ with nbdev's in-process runner, one pytest test per notebook.

This is the `nbdev-test` of the nbdev3 CI, wrapped so the run ends on a pytest summary line. Cells flagged with a
`tst_flags` flag (notest, slow, gpu, llm) are skipped, as nbdev-test does; `.notest` folders are honoured.
"""
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from nbdev.config import get_config  # noqa: E402
from nbdev.doclinks import nbglob  # noqa: E402
from nbdev.test import test_nb as run_notebook  # noqa: E402  (aliased so pytest does not collect it)

CFG = get_config(path=Path(__file__).resolve().parents[2])
NBS_PATH = Path(CFG.config_path) / CFG.nbs_path


def _kept(path: Path) -> bool:
    """nbdev skips a notebook when a `.notest` file sits in its folder or any folder above it inside nbs/."""
    for folder in [path.parent, *path.parent.parents]:
        if (folder / ".notest").exists():
            return False
        if folder == NBS_PATH:
            break
    return True


NOTEBOOKS = [p for p in sorted(nbglob(NBS_PATH, as_path=True)) if _kept(p)]
FLAGS = CFG.tst_flags.split() if isinstance(CFG.tst_flags, str) else list(CFG.tst_flags)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[str(p.relative_to(NBS_PATH)) for p in NOTEBOOKS])
def test_notebook(notebook):
    ok, seconds = run_notebook(notebook, skip_flags=FLAGS, basepath=CFG.config_path, do_print=False)
    assert ok, f"{notebook.relative_to(NBS_PATH)} failed (see the cell traceback above)"
