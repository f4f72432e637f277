"""Torch plumbing: the thread policy (keyed noise is tested through the VAEs)."""

import numpy as np
import pytest
import torch

from skgenerative import GaussianMixtureDensity, _torch
from skgenerative._torch import adaptive_threads, refresh_threads, threads_for_load


@pytest.fixture(autouse=True)
def real_thread_policy(monkeypatch, one_thread_count_per_test):
    """These tests check the policy itself: undo conftest's per-test pin."""
    monkeypatch.setattr(_torch, "threads_for_load", threads_for_load)


def test_threads_follow_the_cores_other_processes_leave_free(monkeypatch):
    monkeypatch.setattr(_torch, "_available_cores", lambda: 8)
    for others, cap, expected in [(0, 4, 4), (0, 16, 8), (5, 8, 3), (7, 8, 1), (20, 8, 1), (3, 1, 1)]:
        monkeypatch.setattr(_torch, "_runnable_elsewhere", lambda others=others: others)
        assert threads_for_load(cap) == expected, (others, cap)
    monkeypatch.setattr(_torch, "_runnable_elsewhere", lambda: None)  # unknown: the user's cap
    assert threads_for_load(6) == 6

    def unread():
        raise AssertionError("one thread needs no look at the load")

    monkeypatch.setattr(_torch, "_runnable_elsewhere", unread)
    assert threads_for_load(1) == 1


def test_runnable_count_excludes_this_process():
    others = _torch._runnable_elsewhere()
    assert others is None or others >= 0


def test_context_sets_and_restores_and_refresh_adapts(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(_torch, "_available_cores", lambda: 2)
    load = {"others": 1}
    monkeypatch.setattr(_torch, "_runnable_elsewhere", lambda: load["others"])
    torch.set_num_threads(2)
    try:
        with adaptive_threads():
            assert torch.get_num_threads() == 1  # one core is busy elsewhere
            load["others"] = 0
            refresh_threads()
            assert torch.get_num_threads() == 2  # the other work left
            load["others"] = 1
            with adaptive_threads():  # nested: chooses again, within the outer cap
                assert torch.get_num_threads() == 1
            assert torch.get_num_threads() == 2  # the outer block's setting is back
        assert torch.get_num_threads() == 2
        refresh_threads()  # outside any block: nothing changes
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_fitting_and_scoring_leave_the_users_setting(monkeypatch):
    monkeypatch.setattr(_torch, "_runnable_elsewhere", lambda: 10**6)  # a very busy machine
    before = torch.get_num_threads()
    seen = []
    original = GaussianMixtureDensity._fit

    def spy(self, X):
        seen.append(torch.get_num_threads())
        return original(self, X)

    monkeypatch.setattr(GaussianMixtureDensity, "_fit", spy)
    X = np.random.RandomState(0).normal(size=(200, 3))
    GaussianMixtureDensity(2, random_state=0).fit(X).score_samples(X)
    assert seen == [1]
    assert torch.get_num_threads() == before


def test_fits_are_identical_at_one_and_two_threads(monkeypatch):
    """The thread count follows the load, so it must not change the model.

    Trained in float64, one and two threads give the same model to rounding (torch's
    CPU reductions split work in fixed-size pieces). Trained in float32 (the default
    ``dtype="auto"``), a matrix product may split its sums differently with the
    thread count on some CPUs, which moves the fitted weights in their last float32
    bits: the scores then agree to float32 training precision, not bit for bit (seen
    on CI's machine for the VAE: 1e-6 relative). The per-test thread count is pinned
    in conftest.py so that no other test depends on it.
    """
    import warnings

    from sklearn.base import clone

    from conftest import ESTIMATORS, data_for

    monkeypatch.setattr(_torch, "threads_for_load", lambda cap: cap)
    before = torch.get_num_threads()
    try:
        for estimator in ESTIMATORS:
            X = data_for(estimator, n=300)
            for dtype, rtol in (("float64", 1e-12), ("auto", 1e-4)):
                scores = []
                for threads in (1, 2):
                    torch.set_num_threads(threads)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        fitted = clone(estimator).set_params(dtype=dtype).fit(X)
                    scores.append(fitted.score_samples(X))
                np.testing.assert_allclose(
                    scores[0], scores[1], rtol=rtol, atol=0,
                    err_msg=f"{type(estimator).__name__}, dtype={dtype}",
                )
    finally:
        torch.set_num_threads(before)


def test_two_fits_in_two_python_threads_keep_each_others_thread_counts(monkeypatch):
    """Fits in two Python threads at once: each chooses and restores its own count.

    With torch's OpenMP backend a thread's count is its own, but a thread started
    while another holds a lowered count inherits it. Here the blocks overlap without
    nesting (the first ends while the second runs): neither may undo the other's
    choice, and once both are done torch's setting is the one from before, in this
    thread and for threads started afterwards; the models equal sequential fits.
    """
    import threading

    monkeypatch.setattr(_torch, "_available_cores", lambda: 2)
    monkeypatch.setattr(_torch, "_runnable_elsewhere", lambda: 1)  # one core busy: 1 thread
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    X = np.random.RandomState(0).normal(size=(300, 3))
    expected = GaussianMixtureDensity(2, random_state=0, dtype="float64").fit(X).score_samples(X)
    first_inside, second_inside, first_done = threading.Event(), threading.Event(), threading.Event()
    seen, scores, errors = {}, {}, []

    def fit(name):
        scores[name] = GaussianMixtureDensity(2, random_state=0, dtype="float64").fit(X).score_samples(X)

    def first():
        try:
            with adaptive_threads():
                seen["first inside"] = torch.get_num_threads()
                first_inside.set()
                second_inside.wait()
                fit("first")
            seen["first after"] = torch.get_num_threads()
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            first_done.set()

    def second():  # starts while the first holds one thread, ends after it
        try:
            first_inside.wait()
            seen["second at start"] = torch.get_num_threads()
            with adaptive_threads():
                second_inside.set()
                first_done.wait()
                seen["second after the first ended"] = torch.get_num_threads()
                fit("second")
            seen["second after"] = torch.get_num_threads()
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            second_inside.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        assert seen["first inside"] == 1 and seen["first after"] == 2
        assert seen["second at start"] == 1  # torch's rule: the first thread's count, inherited
        assert seen["second after the first ended"] == 1  # the first's restore left it alone
        assert seen["second after"] == 2  # the last block to end restores the setting from before
        assert torch.get_num_threads() == 2  # this thread: untouched
        fresh = {}
        later = threading.Thread(target=lambda: fresh.update(n=torch.get_num_threads()))
        later.start()
        later.join()
        assert fresh["n"] == 2  # threads started afterwards get the setting from before
        np.testing.assert_array_equal(scores["first"], expected)
        np.testing.assert_array_equal(scores["second"], expected)
    finally:
        torch.set_num_threads(before)


# torch 2.13's CPU build runs batched LU factorisations (torch.linalg.inv, solve, slogdet,
# cholesky_inverse) of blocks from about 160 columns into an MKL error ("Parameter 6 was
# incorrect on entry to DLASWP") and a hang once torch.set_num_threads(2 or more) has
# been called, as adaptive_threads does when the load changes. The models' paths that
# had them (a mixture's covariances from its precision factors, PPCA's posterior and
# M-step) now use Cholesky factors and substitution; this runs them at such widths, in a
# child process so that a hang fails the test instead of the suite.
_WIDE_AFTER_SET_NUM_THREADS = """
import warnings
import numpy as np, torch
torch.set_num_threads(2)
from skgenerative import GaussianMixtureDensity
from skgenerative.ppca import PPCAParameters, ppca_m_step, ppca_posterior, ppca_statistics
warnings.simplefilter("ignore")
rng = np.random.RandomState(0)
X = rng.normal(size=(240, 200)) @ rng.normal(size=(200, 200)) * 0.1
X[rng.uniform(size=X.shape) < 0.1] = np.nan
GaussianMixtureDensity(2, random_state=0, max_iter=2).fit(X)
Xt = torch.as_tensor(X[:4, :])
q = 170
params = PPCAParameters(torch.zeros(200, dtype=torch.float64), torch.as_tensor(rng.normal(size=(200, q))), 1.0)
ppca_posterior(Xt, *params)
ppca_m_step(ppca_statistics(torch.as_tensor(X), params), params)
print("done")
"""


def test_wide_blocks_do_not_hang_after_set_num_threads():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _WIDE_AFTER_SET_NUM_THREADS], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("done"), out.stderr[-2000:]
    assert "MKL ERROR" not in out.stderr


@pytest.mark.parametrize("shape", ["upper", "lower", "general"])
def test_covariances_from_precision_factors_of_either_triangle(shape):
    """Sigma = (P P^T)^{-1} whichever triangle P is (compute_precision_cholesky's upper,
    a precisions_init's lower; any other P through a Cholesky of P P^T)."""
    from skgenerative.mixture import covariances_from_precision_cholesky

    rng = np.random.RandomState(3)
    A = rng.normal(size=(3, 6, 6))
    P = {"upper": np.triu(A) + 3 * np.eye(6), "lower": np.tril(A) + 3 * np.eye(6), "general": A + 3 * np.eye(6)}[shape]
    want = np.linalg.inv(P @ P.transpose(0, 2, 1))
    got = covariances_from_precision_cholesky(torch.as_tensor(P), "full").numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
