"""Sphinx configuration for coaptcp's documentation.

Build it (warnings are errors) with::

    pip install '.[docs]'
    python -m sphinx -W -b html docs docs/_build/html

The Markdown pages are read by MyST-Parser; the API reference (``api/``) is generated
from the docstrings by ``_ext/coaptcp_api.py``; diagrams are Mermaid, drawn by the
browser (sphinxcontrib-mermaid), so the build needs no system packages.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Document the checkout these pages belong to, whatever copy is installed.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE / "_ext"))

from coaptcp.core.version import __version__  # noqa: E402

project = "coaptcp"
author = "the coaptcp authors"
copyright = "the coaptcp authors"
release = __version__
version = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinxcontrib.mermaid",
    "coaptcp_api",
    "coaptcp_site",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
nitpicky = False

# -- MyST: the Markdown pages stay plain GitHub-readable Markdown ------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 4  # "#who-is-calling" style links between and within pages
# ```mermaid fences (as GitHub renders them) become Sphinx's mermaid directive.
myst_fence_as_directive = ["mermaid"]

# -- diagrams: Mermaid in the pages, drawn by the reader's browser ----------------------
mermaid_height = "auto"  # the diagram's own height, not a fixed 500px box
mermaid_fullscreen = False

# -- autodoc ----------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
autodoc_preserve_defaults = True
autosummary_generate = False
add_module_names = False
python_display_short_literal_types = True

# -- intersphinx ------------------------------------------------------------------------
# Twisted's API reference is made by pydoctor, which writes its own objects.inv under
# api/.  When an inventory cannot be fetched (no network), references to it stay plain
# text and the build goes on: see _ext/coaptcp_site.py.
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "twisted": ("https://docs.twisted.org/en/stable/api/", None),
    "autobahn": ("https://autobahn.readthedocs.io/en/latest/", None),
}
intersphinx_timeout = 10

# -- HTML -------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"coaptcp {release}"
html_static_path: list[str] = []
