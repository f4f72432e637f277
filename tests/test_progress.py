"""Progress: a bar where someone watches, one summary line in a log, never an empty line (#24)."""

from __future__ import annotations

import re
import time

import pytest

from skgenerative import _progress
from skgenerative._progress import Progress


def _loop(verbose, steps=5, line=lambda i: f"step {i}", **kwargs):
    progress = Progress("Model", "epoch", steps, verbose, **kwargs)
    with progress:
        for i in range(steps):
            progress.update(line(i), loss=-1.5 * i)
        progress.close("best epoch 3")


@pytest.mark.parametrize("verbose", [0, 1])
def test_a_log_gets_at_most_the_summary_line_at_verbose_1(verbose, capsys):
    _loop(verbose)
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = captured.out.splitlines()
    if verbose == 0:
        assert lines == []
    else:
        assert len(lines) == 1
        assert re.fullmatch(r"\[Model\] done: 5 epochs in \d+\.\d\ds; best epoch 3", lines[0])


def test_verbose_2_prints_a_line_per_step_and_never_an_empty_one(capsys):
    _loop(2, line=lambda i: f"step {i}" if i % 2 else "")
    lines = capsys.readouterr().out.splitlines()
    assert lines[:-1] == ["[Model] step 1", "[Model] step 3"]
    assert lines[-1].startswith("[Model] done: 5 epochs")


def test_fine_grained_steps_never_print_a_line(capsys):
    # chunks and AIS temperatures: line_level=None, even at verbose=2 in a log
    _loop(2, line=lambda i: "", line_level=None)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("[Model] done: 5 epochs")


def test_a_watched_stream_gets_a_bar_redrawn_in_place_then_the_summary(monkeypatch, capsys):
    monkeypatch.setattr(_progress, "_watched", lambda: True)
    progress = Progress("Model", "epoch", 3, 1)
    with progress:
        for i in range(3):
            time.sleep(0.15)  # tqdm redraws at most every 0.1 s
            progress.update("a line", train_loss=-1.5 * i)
        progress.close("best epoch 3")
    captured = capsys.readouterr()
    # tqdm's bar on stderr: redrawn with carriage returns, no new line, removed at the end
    assert captured.err.count("\r") >= 3 and "\n" not in captured.err
    assert "[Model]" in captured.err and "3/3" in captured.err and "train loss -3" in captured.err
    assert captured.err.endswith("\r") and captured.err.rsplit("\r", 2)[-2].strip() == ""
    lines = captured.out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("[Model] done: 3 epochs")


def test_a_watched_stream_at_verbose_2_gets_lines_not_a_bar(monkeypatch, capsys):
    monkeypatch.setattr(_progress, "_watched", lambda: True)
    _loop(2)
    captured = capsys.readouterr()
    assert captured.err == ""
    assert len(captured.out.splitlines()) == 6


def test_a_loop_left_by_an_exception_removes_its_bar_and_prints_no_summary(monkeypatch, capsys):
    monkeypatch.setattr(_progress, "_watched", lambda: True)
    with pytest.raises(ValueError, match="diverged"):
        with Progress("Model", "epoch", 10, 1) as progress:
            progress.update(loss=1.0)
            raise ValueError("diverged")
    captured = capsys.readouterr()
    assert captured.out == "" and "\n" not in captured.err
    assert progress._bar is None
