"""Progress of long operations: a bar in terminals and notebooks, a summary at the end.

Every loop a user waits on (EM iterations, epochs, AIS temperatures, the chunks of a
large evaluation) reports through :class:`Progress`. What it shows follows the
estimator's ``verbose``, as in scikit-learn:

- ``0``: nothing;
- ``1``: a progress bar with the current loss or bound, and a one-line summary at the
  end (iterations, best iteration, time);
- ``2`` and more: also one line per iteration (the bar is not drawn then).

The bar is tqdm's (``tqdm.auto``: a widget in Jupyter, text in a terminal) when tqdm
is installed, which most scientific Python environments are; otherwise a single line
redrawn in place on a terminal, and nothing but the summary where stderr is not one
(log files stay clean). tqdm is optional: nothing else here needs it.
"""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


def _tqdm():
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    return tqdm


class Progress:
    """Progress of one loop of ``total`` steps (``None`` when unknown).

    Parameters
    ----------
    owner : str
        Who works (the estimator's class name), prefixed to every line.
    what : str
        What the steps are ("epoch", "EM iteration", "chunk").
    total : int or None
    verbose : int
    """

    def __init__(self, owner: str, what: str, total: int | None, verbose: int):
        self.owner, self.what, self.total = owner, what, total
        self.verbose = int(verbose or 0)
        self.start = time.perf_counter()
        self.steps = 0
        self._bar = None
        self._inline = False
        if self.verbose == 1:
            tqdm = _tqdm()
            if tqdm is not None:
                self._bar = tqdm(total=total, desc=f"[{owner}] {what}", unit=what.split()[-1],
                                 leave=False, dynamic_ncols=True)
            else:
                self._inline = bool(getattr(sys.stderr, "isatty", lambda: False)())

    def update(self, message: str = "", **values) -> None:
        """One step done; ``values`` (e.g. ``loss=...``) are shown beside the bar."""
        self.steps += 1
        if self.verbose <= 0:
            return
        text = message or "  ".join(f"{k} {_format(v)}" for k, v in values.items())
        if self.verbose >= 2:
            total = f"/{self.total}" if self.total else ""
            print(f"[{self.owner}] {self.what} {self.steps}{total}  {text}", flush=True)
        elif self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)
            self._bar.update(1)
        elif self._inline:
            total = f"/{self.total}" if self.total else ""
            sys.stderr.write(f"\r[{self.owner}] {self.what} {self.steps}{total}  {text}\033[K")
            sys.stderr.flush()

    def close(self, summary: str = "") -> None:
        """End the loop; print ``summary`` with the step count and the time taken."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._inline:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self._inline = False
        if self.verbose > 0:
            seconds = time.perf_counter() - self.start
            plural = "" if self.steps == 1 else "s"
            line = f"[{self.owner}] {self.steps} {self.what}{plural} in {seconds:.2f}s"
            print(line + (f"; {summary}" if summary else ""), flush=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:  # an exception: drop the bar, no summary
            self._bar.close()
        if self._inline:
            sys.stderr.write("\r\033[K")


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.4e}"
    return str(value)
