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
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

autosummary_generate = True
# document what skgenerative defines or inherits from its own base classes, not the
# scikit-learn mixins' internals (whose cross-references live in sklearn's docs)
_SKLEARN_BASES = "BaseEstimator, TransformerMixin, DensityMixin, OutlierMixin, MetaEstimatorMixin, ClassNamePrefixFeaturesOutMixin, _MetadataRequester, _SetOutputMixin"
autodoc_default_options = {"members": True, "inherited-members": _SKLEARN_BASES}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()
numpydoc_xref_param_type = False

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
exclude_patterns = ["_build", "examples", "auto_examples/*.ipynb", "**/*.md5", "**/*.py", "**/*.zip"]
html_theme = "pydata_sphinx_theme"
html_title = "skgenerative"
html_static_path = []
html_theme_options = {"show_toc_level": 2, "navigation_with_keys": False}
suppress_warnings = ["config.cache"]

warnings.filterwarnings("ignore", category=UserWarning, message="Matplotlib is currently using agg")
