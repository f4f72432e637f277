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
``_em_coordinates(data, params)`` and ``_em_from_coordinates(data, coordinates, params)``
    (models that opt in to acceleration, ``_em_accelerated`` true) The parameters as a
    tuple of tensors in a space where a straight line between two of them makes sense
    (log-weights, logits, covariances), and back: parameters, or ``None`` where the
    coordinates give none (a covariance that is not positive definite).

Acceleration: SQUAREM (Varadhan & Roland, 2008, scheme S3; https://doi.org/10.1111/j.1467-9469.2007.00585.x).
Two EM steps ``theta1 = F(theta0)``, ``theta2 = F(theta1)`` give ``r = theta1 - theta0``
and ``v = theta2 - 2 theta1 + theta0``; the step ``alpha = -|r| / |v|`` (at most -1)
extrapolates to ``theta' = theta0 - 2 alpha r + alpha^2 v``, and EM goes on from
``F(theta')``. Safeguard: where ``theta'`` is no parameter or its log-likelihood is
below ``theta1``'s, EM goes on from ``theta2`` (the plain steps) and that E-step is
wasted; so the recorded bounds never decrease (beyond rounding), and the fixed points
are EM's. Convergence is judged on whole cycles: the change of the bound between
the starts of two cycles, per E-step between them, below ``tol`` (the plain criterion
on a mean step; a plain step's change would stop too early: where SQUAREM
has taken the fast directions, EM's step along the slow ones is small while the bound
is still well below its limit); ``n_iter_`` counts E-steps.

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

    #: whether the driver extrapolates the EM steps (SQUAREM; the coordinate hooks)
    _em_accelerated = False

    def _em_coordinates(self, data, params) -> tuple:  # pragma: no cover
        raise NotImplementedError  # abstract hook (accelerated models)

    def _em_from_coordinates(self, data, coordinates: tuple, params):  # pragma: no cover
        raise NotImplementedError  # abstract hook (accelerated models)

    def _em_extrapolate(self, data, params, first, second):
        """SQUAREM's point from ``params`` and its two EM images (``None``: none, or the
        step is the plain one)."""
        c0, c1, c2 = (self._em_coordinates(data, p) for p in (params, first, second))
        r = [b - a for a, b in zip(c0, c1)]
        v = [c - 2 * b + a for a, b, c in zip(c0, c1, c2)]
        r_norm = math.sqrt(sum(float(t.double().square().sum()) for t in r))
        v_norm = math.sqrt(sum(float(t.double().square().sum()) for t in v))
        if not (v_norm > 0 and math.isfinite(r_norm / v_norm)):
            return None
        alpha = -r_norm / v_norm
        if alpha > -1.0:
            return None  # the plain two steps
        point = tuple(a - 2 * alpha * dr + alpha ** 2 * dv for a, dr, dv in zip(c0, r, v))
        if not all(bool(torch.isfinite(t).all()) for t in point):
            return None
        return self._em_from_coordinates(data, point, second)

    def _em_try_e_step(self, data, params):
        """The E-step at an extrapolated point: ``(bound, statistics)``, or ``None`` where it
        is not finite or its parameters are not valid for the E-step."""
        try:
            return self._em_e_step(data, params)
        except (FloatingPointError, ValueError):
            return None

    def _em_run(self, data, params, bound: float, max_iter: int, tol: float, progress, init: int):
        """One EM run from ``params``: ``(params, bound, bounds, converged, n_iter)``.

        Each plain iteration is an E-step (the bound at the current parameters)
        followed by an M-step; the run stops after the M-step of the plain step whose
        bound changed by less than ``tol``. Accelerated models interleave SQUAREM's
        extrapolations (module docstring)."""
        bounds, converged, n_iter = [], False, 0
        accelerate = self._em_accelerated
        plain = []  # the EM images since the last extrapolation: (params, bound at the previous point)

        def record(value, change):
            bounds.append(value)
            progress.update(f"  Iteration {n_iter}\t lower bound {value:.6f}\t change {change:.3e}",
                            init=init, bound=value, change=change)

        cycle_start, cycle_iter = bound, 0  # the bound and E-step where the last SQUAREM cycle started
        while n_iter < max_iter:
            refresh_threads()  # a long fit follows the machine's load
            previous = bound
            bound, statistics = self._em_e_step(data, params)
            n_iter += 1
            record(bound, bound - previous)
            plain.append((params, bound))
            params = self._em_m_step(data, statistics, params)
            if not accelerate:
                if abs(bound - previous) < tol:
                    converged = True
                    break
                continue
            if len(plain) == 1:  # a cycle's start: the mean change per E-step since the last one's
                if abs(bound - cycle_start) < tol * (n_iter - cycle_iter):
                    converged = True
                    break
                cycle_start, cycle_iter = bound, n_iter
                continue
            if n_iter >= max_iter:
                break
            (start, _), (first, first_bound) = plain
            plain = []
            point = self._em_extrapolate(data, start, first, params)
            if point is None:
                continue
            tried = self._em_try_e_step(data, point)
            n_iter += 1
            if tried is None or not tried[0] >= first_bound:
                continue  # the plain steps: EM goes on from theta2
            bound, statistics = tried
            record(bound, bound - first_bound)
            params = self._em_m_step(data, statistics, point)
        return params, bound, bounds, converged, n_iter

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
                params, bound, bounds, converged, n_iter = self._em_run(
                    data, params, bound, max_iter, tol, progress, init)
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
