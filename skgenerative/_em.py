"""The expectation-maximisation driver, written once for every model fitted by EM.

:class:`EMModel` owns the loop of scikit-learn's ``BaseMixture.fit_predict``:
``n_init`` restarts, convergence when the per-sample log-likelihood (the lower bound)
changes by less than ``tol``, ``warm_start``, the best initialisation by final bound,
a ``ConvergenceWarning`` when that one did not converge, verbose output, and the
attributes ``n_iter_``, ``converged_``, ``lower_bound_`` and ``lower_bounds_``. A model
supplies its mathematics through hooks:

``_em_initialize(data, generator)``
    Starting parameters of one initialisation.
``_em_resume(data)`` (models that offer ``warm_start``)
    The parameters of the previous fit, to continue from.
``_em_expectation_parameters(data, params)`` (optional)
    The form of the parameters the E-step reads, derived once per iteration (by
    default the parameters themselves).
``_em_m_step(data, statistics, params)``
    New parameters from the statistics summed over all the rows.
``_em_set_parameters(data, params)``
    Store the best parameters as fitted attributes.

and its E-step, ``data.e_step``: an :class:`EStep`, that is the data source the rows
come from (:mod:`skgenerative._sources`), the additive sufficient statistics of a chunk
of rows at given parameters (a picklable function ``statistics(chunk, params)``
returning a dict with at least ``"log_likelihood"``, the sum over its rows, and
``"n_samples"``), their combination (a sum by default) and the temporary bytes a row
needs (which size the chunks). ``data`` is whatever else the model prepared for the
fit; the driver only passes it on. The source folds the statistics over its chunks,
in memory or over the blocks of a dask collection where they are (a tree of
combinations across blocks): the driver never knows which.

Reference: Dempster, Laird & Rubin (1977), https://doi.org/10.1111/j.2517-6161.1977.tb01600.x
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from sklearn.exceptions import ConvergenceWarning

from ._progress import Progress
from ._sources import accumulate, add_statistics
from ._torch import refresh_threads

__all__ = ["EMModel", "EStep", "accumulate", "add_statistics", "mean_log_likelihood"]

Statistics = dict


@dataclass(frozen=True)
class EStep:
    """An E-step: ``combine`` of ``statistics(chunk, params)`` over the chunks of ``source``.

    ``statistics`` and ``combine`` travel to where the rows are (dask workers) with
    the parameters: module-level functions, or small picklable objects.
    """

    source: object
    statistics: Callable
    row_bytes: int
    combine: Callable = add_statistics

    def __call__(self, params) -> Statistics:
        return self.source.reduce(self.statistics, params, combine=self.combine, row_bytes=self.row_bytes)


def mean_log_likelihood(statistics: Statistics) -> float:
    """The per-sample log-likelihood of summed statistics (EM's convergence criterion)."""
    return float(statistics["log_likelihood"]) / float(statistics["n_samples"])


class EMModel:
    """Mixin for estimators fitted by EM; see the module docstring for the hooks."""

    #: warning when the best initialisation did not converge (formatted with max_iter)
    _em_convergence_message = (
        "Best performing initialization did not converge. Try different init "
        "parameters, or increase max_iter, tol, or check for degenerate data."
    )
    #: what to change when an E-step gives a non-finite log-likelihood
    _em_divergence_hint = "scale the input"

    def _em_initialize(self, data, generator):  # pragma: no cover
        raise NotImplementedError  # abstract hook

    def _em_resume(self, data):  # pragma: no cover
        raise NotImplementedError  # abstract hook (models with warm_start)

    def _em_m_step(self, data, statistics: Statistics, params):  # pragma: no cover
        raise NotImplementedError  # abstract hook

    def _em_set_parameters(self, data, params) -> None:  # pragma: no cover
        raise NotImplementedError  # abstract hook

    def _em_expectation_parameters(self, data, params):
        return params

    def _em_summary(self) -> str:
        """What the model adds to the summary line of a fit (e.g. a choice it made)."""
        return ""

    def _em_e_step(self, data, params) -> tuple[float, Statistics]:
        """The mean log-likelihood at ``params`` and the statistics of all the data."""
        statistics = data.e_step(self._em_expectation_parameters(data, params))
        bound = mean_log_likelihood(statistics)
        if not math.isfinite(bound):
            raise FloatingPointError(
                f"{type(self).__name__}: EM produced a non-finite log-likelihood: the data "
                f"may contain extreme values; {self._em_divergence_hint}."
            )
        return bound, statistics

    def _em_fit(self, data, *, n_init: int, max_iter: int, tol: float, warm_start: bool = False,
                generator: torch.Generator | None = None, verbose: int | None = None) -> None:
        """Run EM from ``n_init`` starts (one when warm starting); keep the best.

        Each iteration is an E-step (the bound at the current parameters) followed by an
        M-step; a run stops after the M-step of the iteration whose bound changed by less
        than ``tol``. The run with the highest final bound is stored (the last run when
        ``max_iter == 0``, whose bound stays ``-inf``).
        """
        do_init = not (warm_start and hasattr(self, "converged_"))
        n_init = n_init if do_init else 1
        best, best_bound, best_bounds, best_iter, best_converged = None, -math.inf, [], 0, False
        # a bar over all iterations where someone watches; a line each (and one per
        # initialization) at verbose >= 2, so verbose=1 leaves the summary line alone
        verbose = self.verbose if verbose is None else max(int(verbose), 0)
        progress = Progress(type(self).__name__, "EM iteration", n_init * max_iter or None,
                            verbose, line_level=2, log=lambda line: verbose >= 1 and self._log(line, 1))
        with progress:
            for init in range(n_init):
                if verbose >= 2:
                    self._log(f"Initialization {init}", 2)
                params = self._em_initialize(data, generator) if do_init else self._em_resume(data)
                bound = -math.inf if do_init else self.lower_bound_
                bounds, converged, n_iter = [], False, 0
                for n_iter in range(1, max_iter + 1):
                    refresh_threads()  # a long fit follows the machine's load
                    previous = bound
                    bound, statistics = self._em_e_step(data, params)
                    params = self._em_m_step(data, statistics, params)
                    bounds.append(bound)
                    change = bound - previous
                    progress.update(
                        f"  Iteration {n_iter}\t lower bound {bound:.6f}\t change {change:.3e}",
                        init=init, bound=bound, change=change,
                    )
                    if abs(change) < tol:
                        converged = True
                        break
                if verbose >= 2:
                    self._log(f"Initialization {'converged' if converged else 'did not converge'}: "
                              f"lower bound {bound:.6f}", 2)
                if bound > best_bound or best_bound == -math.inf:
                    best, best_bound, best_bounds, best_iter, best_converged = params, bound, bounds, n_iter, converged
            progress.close(
                f"{n_init} initialization{'s' if n_init != 1 else ''}, best lower bound "
                f"{best_bound:.6f} ({'converged' if best_converged else 'not converged'} "
                f"after {best_iter} iteration{'s' if best_iter != 1 else ''})" + self._em_summary()
            )

        if not best_converged and max_iter > 0:
            warnings.warn(self._em_convergence_message.format(max_iter=max_iter), ConvergenceWarning)
        self._em_set_parameters(data, best)
        self.converged_ = best_converged
        self.n_iter_ = best_iter
        self.lower_bound_ = best_bound
        self.lower_bounds_ = best_bounds
