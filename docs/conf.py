"""Sphinx configuration: MyST pages, furo, autodoc with Google-style docstrings, no network."""

from __future__ import annotations

import sys
from importlib.metadata import version as _version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "txpolicy"
author = "txpolicy developers"
copyright = "txpolicy developers"
release = _version("txpolicy")
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "txpolicy_docs",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
templates_path: list[str] = []

# MyST: fenced directives, ::: blocks, and anchors for ## and ### headings.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# autodoc and napoleon: Google-style docstrings, members in source order.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
add_module_names = False

# `-n` (nitpicky) checks every reference into txpolicy: a public signature that names a type
# txpolicy does not export fails the build. Not checked: references to other projects
# (SQLAlchemy, tenacity, attrs, the standard library beyond builtins and typing), which
# cannot resolve because the build never goes to the network (no intersphinx), and
# txpolicy's own underscore-named helpers (such as the context manager that
# set_testing() returns), which are private by name.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(?!txpolicy\b).*"),
    (r"py:.*", r"txpolicy(\.\w+)*\._\w+"),
]

html_theme = "furo"
html_title = f"txpolicy {release}"
html_static_path = ["_static"]
html_css_files = ["txpolicy.css"]
