"""Sphinx configuration for skgenerative's documentation (``make docs``)."""

import os
import sys
import warnings

sys.path.insert(0, os.path.abspath(".."))
os.environ.setdefault("OMP_NUM_THREADS", "2")

import skgenerative  # noqa: E402

project = "skgenerative"
author = "skgenerative developers"
copyright = "2026, skgenerative developers"
release = version = skgenerative.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": True}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()
numpydoc_xref_param_type = False

intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable", None),
    "sklearn": ("https://scikit-learn.org/stable", None),
    "torch": ("https://pytorch.org/docs/stable", None),
}
# the build machines are offline: intersphinx inventories are optional
intersphinx_disabled_reftypes = ["*"]
intersphinx_timeout = 2

sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "min_reported_time": 1,
}

templates_path = ["_templates"]
exclude_patterns = ["_build", "auto_examples/*.ipynb", "**/*.md5", "**/*.py", "**/*.zip"]
html_theme = "pydata_sphinx_theme"
html_title = "skgenerative"
html_static_path = []
html_theme_options = {"show_toc_level": 2, "navigation_with_keys": False}
suppress_warnings = ["config.cache", "intersphinx.external"]

warnings.filterwarnings("ignore", category=UserWarning, message="Matplotlib is currently using agg")
