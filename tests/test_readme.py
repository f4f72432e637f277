"""The README's Python examples run, in order, as one script."""

import re
import warnings
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 3
    namespace = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile("\n".join(blocks), str(README), "exec"), namespace)
    assert set(namespace["labels"]) <= {-1, 1}
    assert namespace["X_filled"].shape == namespace["X_missing"].shape
    assert namespace["draws"].shape == (5,) + namespace["X_missing"].shape
