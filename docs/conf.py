"""Sphinx configuration of the agentlab documentation site.

Built by `agentlab docs` / `make docs` (see `agentlab.docsite`): the source folder is a staging copy of nbs/ and
papers/ notebooks (docs/_generated/src), rendered with their stored outputs by myst-nb, plus autodoc API pages.
Everything here works offline: no notebook execution, no intersphinx, no remote assets are fetched at build time.
"""
import agentlab

project = "agentlab"
author = "agentlab developers"
copyright = "agentlab developers"
release = version = agentlab.__version__

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]

# Notebooks are rendered as committed (nbdev keeps their outputs); they are never executed by the docs build.
nb_execution_mode = "off"
nb_merge_streams = True
nb_output_stderr = "show"
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints", "**/_runs/**"]
templates_path = []

# API reference: autodoc over the exported modules (they define __all__).
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
add_module_names = False
default_role = "literal"  # nbdev docstrings use Markdown `code`; render single backticks as code, not as citations

# Notebook headings often skip levels and outputs carry mime types Sphinx does not render; neither is an error.
suppress_warnings = ["myst.header", "mystnb.unknown_mime_type", "myst.xref_missing", "misc.highlighting_failure"]

html_theme = "sphinx_book_theme"
html_title = f"agentlab {release}"
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "navigation_with_keys": False,
}
html_static_path = []
html_copy_source = False
html_show_sourcelink = False
