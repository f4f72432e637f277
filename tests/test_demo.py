"""``python -m skgenerative``: the README's main job runs and reports every estimator."""

from __future__ import annotations

import re
import zlib

import pytest

import skgenerative
from skgenerative.__main__ import main


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--device" in out and "--seed" in out and "--png" in out and "--quick" in out


def test_demo_fits_every_estimator_and_writes_the_sample_grid(tmp_path, capsys):
    png = tmp_path / "grid.png"
    # --quick: the same demo with small models (the full one is the README's first command)
    assert main(["--device", "cpu", "--png", str(png), "--quick"]) == 0
    out = capsys.readouterr().out
    for name in ("GaussianMixtureDensity", "PPCADensity", "BernoulliRBM", "VariationalAutoencoder", "FlowVAE"):
        assert name in skgenerative.__all__
        row = re.search(rf"^{name}\s+(continuous|binary)\s+(-?\d+\.\d+)\s+\d+\.\d+s\s+cpu", out, re.M)
        assert row, f"no result row for {name}"
        auc = re.search(rf"^\s+{name}\s+AUCROC (\d\.\d+)", out, re.M)
        assert auc and float(auc.group(1)) > 0.7  # 9s among unseen digits stand out
    rmse, baseline = map(float, re.search(r"RMSE (\d\.\d+) vs (\d\.\d+)", out).groups())
    assert rmse < 0.8 * baseline
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > height > 0  # 10 samples across, one row per model
    idat = data[data.index(b"IDAT") + 4 :]
    assert zlib.decompressobj().decompress(idat)  # a real compressed image stream
