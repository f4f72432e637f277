"""``python -m skgenerative``: the README's main job runs, reports every estimator, and reads well.

The quick demo runs twice, as a user runs it: in a terminal (a pseudo-terminal: progress
bars drawn in place) and into a pipe (what a log or CI captures). Both outputs must fit
on about two screens, with one summary line per fit and never an empty ``[Name]`` line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest

import skgenerative
from skgenerative._png import text
from skgenerative.__main__ import main

NAMES = ("GaussianMixtureDensity", "PPCADensity", "VariationalAutoencoder", "FlowVAE", "BernoulliRBM")
FITS_AT_VERBOSE = ("VariationalAutoencoder", "FlowVAE", "BernoulliRBM")
TWO_SCREENS = 48  # lines: two 24-line terminals
TIMEOUT = 900  # seconds; the quick demo takes about 15 s on a quiet 2-core machine


def _command(png):
    return [sys.executable, "-m", "skgenerative", "--device", "cpu", "--png", str(png), "--quick"]


def _environment():
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQDM_")}
    env.pop("PYTHONWARNINGS", None)
    return env


@pytest.fixture(scope="module")
def piped(tmp_path_factory):
    """The quick demo into a pipe, stdout and stderr together (as ``make demo > log 2>&1``)."""
    png = tmp_path_factory.mktemp("piped") / "grid.png"
    done = subprocess.run(_command(png), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          env=_environment(), timeout=TIMEOUT)
    output = done.stdout.decode()
    assert done.returncode == 0, output
    return output, png


def _run_in_terminal(command, rows=24, columns=100):
    """Run ``command`` on a pseudo-terminal of ``rows`` x ``columns``; its exit code and output."""
    fcntl, pty, select, termios, struct = (pytest.importorskip(m) for m in
                                           ("fcntl", "pty", "select", "termios", "struct"))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    process = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave,
                               env=_environment(), close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + TIMEOUT
    try:
        while True:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the demo did not finish in {TIMEOUT} s on a terminal")
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    return process.wait(), b"".join(chunks).decode()


@pytest.fixture(scope="module")
def in_terminal(tmp_path_factory):
    png = tmp_path_factory.mktemp("terminal") / "grid.png"
    code, output = _run_in_terminal(_command(png))
    assert code == 0, output
    return output


def _screen_lines(output):
    """The lines a terminal shows: each line as its last carriage return left it."""
    return [line.rstrip("\r").split("\r")[-1] for line in output.split("\n")[:-1]]


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--device", "--seed", "--png", "--quick", "--quiet", "--calibration"):
        assert option in out


def test_demo_fits_every_estimator_and_reports_what_it_found(piped):
    out, _ = piped
    for name in NAMES:
        assert name in skgenerative.__all__
        row = re.search(rf"^{name}\s+(-?\d+\.\d+)\s+\d+\.\d+s  \w", out, re.M)
        assert row, f"no result row for {name}"
    assert "device=cpu" in out
    rmse, baseline = map(float, re.search(r"RMSE (\d\.\d+) vs (\d\.\d+)", out).groups())
    assert rmse < 0.8 * baseline


def test_the_calibrated_threshold_gives_the_false_alarm_rate_asked(piped):
    out, _ = piped
    level = float(re.search(r"contamination=(0\.\d+)", out).group(1))
    assert re.search(r"^Why calibrate: ", out, re.M)
    # 108 calibration and 486 test images: the binomial spread the demo states (about 3 points)
    chance = float(re.search(r"measured on 486 new normal images, 108 held out: chance alone "
                             r"moves\s+a rate by about \+-(\d+\.\d) points \(1 sd\)", out).group(1))
    assert chance == pytest.approx(100 * np.sqrt(level * (1 - level) * (1 / 108 + 1 / 486)), abs=0.05)
    for name in NAMES:
        anomaly = re.search(rf"^  {name}\s+(\d\.\d+)\s+(\d+\.\d)%\s+(\d+\.\d)%\s+\((\d+\.\d)%\)$",
                            out, re.M)
        assert anomaly, f"no anomaly line for {name}"
        auc, nines, calibrated, quantile = (float(v) for v in anomaly.groups())
        assert auc > 0.7  # 9s among unseen digits stand out
        assert abs(calibrated - 100 * level) < 3 * chance, (name, calibrated)
        if name == "GaussianMixtureDensity":
            # the mixture fits its training images closely: its training quantile flags far
            # more new normal images than asked, the calibrated threshold does not
            assert quantile > calibrated + 15


def test_the_sample_grid_is_written_where_the_demo_says_and_labels_each_row(piped):
    out, png = piped
    said = re.search(r"^Samples, one labelled row per model: (.+)$", out, re.M).group(1)
    assert os.path.isabs(said) and os.path.samefile(said, png)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    raw = zlib.decompress(data[data.index(b"IDAT") + 4 : data.index(b"IEND") - 8])
    image = np.frombuffer(raw, dtype=np.uint8).reshape(height, width + 1)[:, 1:]
    assert width > height > 0  # 10 samples across, one row per model
    # each model's name, drawn in the built-in font (2 pixels a dot), in the order of the rows
    tops = []
    for name in NAMES:
        ink = np.kron(text(name), np.ones((2, 2))).astype(bool)
        left = image[:, 6 : 6 + ink.shape[1]]
        found = [y for y in range(height - ink.shape[0] + 1)
                 if np.array_equal(left[y : y + ink.shape[0]] == 0, ink)]
        assert len(found) == 1, f"{name} is not written once in the grid's label column"
        tops.append(found[0])
    assert tops == sorted(tops)


def _check_lines(lines):
    assert len(lines) <= TWO_SCREENS, "\n".join(lines)
    empty = [line for line in lines if re.fullmatch(r"\[\w+\]\s*", line)]
    assert not empty, f"{len(empty)} empty progress lines"
    for name in FITS_AT_VERBOSE:  # verbose=1: one summary line per fit, no line per epoch
        assert sum(line.startswith(f"[{name}] ") for line in lines) == 1, name
    assert not any(" epoch " in line and "done:" not in line for line in lines)


def test_a_log_gets_two_screens_and_one_line_per_fit(piped):
    out, _ = piped
    assert "\r" not in out and "\x1b" not in out  # no bar in a log
    _check_lines(out.splitlines())


def test_a_terminal_gets_bars_redrawn_in_place_and_the_same_lines(in_terminal, piped):
    for name in FITS_AT_VERBOSE:  # tqdm's bar, redrawn on one line with carriage returns
        assert re.search(rf"\r\[{name}\]: +\d+%\|", in_terminal), name
    assert "\x1b[" not in in_terminal  # no cursor movement: no stacked bars
    lines = _screen_lines(in_terminal)
    _check_lines(lines)
    # the bars leave nothing behind: the terminal shows the log's lines (timings and paths aside)
    def plain(lines):
        return [re.sub(r"\d+\.\d+s|row per model: .*", "", line) for line in lines]

    assert plain(lines) == plain(piped[0].splitlines())
