"""Progress of long operations: a bar where someone watches, a summary line everywhere.

Every loop a user waits on (EM iterations, epochs, AIS temperatures, the chunks of a
large evaluation) reports through :class:`Progress`. What it shows follows the
estimator's ``verbose``, as the ecosystem's tools do (tqdm bars in a terminal, one line
per task in a log):

- ``0``: nothing;
- ``1``: where someone watches (a terminal, or a Jupyter notebook) a progress bar with
  the current loss or bound, redrawn in place and removed when the loop ends; then,
  everywhere, one summary line (steps, time, and what the loop reports: best epoch,
  final bound). A log file or a captured stream gets that one line and nothing else;
- ``2`` and more: one line per step, for loops whose steps are worth a line (epochs,
  EM iterations), then the summary; fine-grained loops (chunks, temperatures) keep
  the bar.

The bar is tqdm's (``tqdm.auto``: a widget in Jupyter, text in a terminal), a
dependency of the package. Nothing ever prints an empty line.
"""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


def _tqdm():
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - installed without its dependencies
        return None  # then the summary line alone, as in a log
    return tqdm


def _watched() -> bool:
    """Whether output goes to a person: a terminal, or a notebook kernel."""
    if "ipykernel" in sys.modules:
        return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class Progress:
    """Progress of one loop of ``total`` steps (``None`` when unknown).

    Parameters
    ----------
    owner : str
        Who works (the estimator's class name), prefixed to every line.
    what : str
        What a step is ("epoch", "EM iteration", "chunk"), for the summary.
    total : int or None
    verbose : int
    line_level : int or None, default=2
        The ``verbose`` level from which each step prints a line (instead of the bar);
        ``None``: never, for fine-grained steps. Lines need ``verbose >= 2`` whatever
        ``line_level`` says: at ``verbose=1`` a loop prints at most its summary.
    log : callable or None, default=None
        Prints a line (the estimator's ``_log``, which prefixes its name); ``None``
        prints ``[owner] line``.
    """

    def __init__(self, owner: str, what: str, total: int | None, verbose: int,
                 line_level: int | None = 2, log=None):
        self.owner, self.what, self.total = owner, what, total
        self._print = log or (lambda line: print(f"[{owner}] {line}", flush=True))
        self.verbose = int(verbose or 0)
        self.start = time.perf_counter()
        self.steps = 0
        self._bar = None
        self._lines = line_level is not None and self.verbose >= max(line_level, 2)
        if self.verbose >= 1 and not self._lines and _watched():
            tqdm = _tqdm()
            if tqdm is not None:
                self._bar = tqdm(total=total, desc=f"[{owner}]", unit=what.split()[-1],
                                 leave=False, dynamic_ncols=True, file=sys.stderr)

    def update(self, line: str = "", **values) -> None:
        """One step done: ``line`` is its log line, ``values`` are shown beside the bar."""
        self.steps += 1
        if self._bar is not None:
            figures = (f"{name.replace('_', ' ')} {_format(v)}" for name, v in values.items())
            self._bar.set_postfix_str("  ".join(figures), refresh=False)
            self._bar.update(1)
        elif self._lines and line.strip():
            self._print(line)

    def close(self, summary: str = "") -> None:
        """End the loop: remove the bar; at ``verbose >= 1`` print the summary line."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.verbose >= 1:
            seconds = time.perf_counter() - self.start
            plural = "" if self.steps == 1 else "s"
            line = f"done: {self.steps} {self.what}{plural} in {seconds:.2f}s"
            self._print(line + (f"; {summary}" if summary else ""))
            self.verbose = 0  # once

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:  # left early (an exception): remove the bar, no summary
            self._bar.close()
            self._bar = None


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.4e}"
    return str(value)
