"""The minibatch training loop (skgenerative._training), on a model whose every step is known.

``MeanModel`` learns the mean of its data by gradient descent on ``|x - m|^2 / 2`` and
records what the loop asks of it, so the tests can check the loop's contract exactly:
which rows each epoch sees and in which (seeded) order, what ``fit`` and
``partial_fit`` prepare, when early stopping stops and which weights it restores,
and the errors of a diverging run.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from skgenerative import BernoulliRBM, FlowVAE, VariationalAutoencoder
from skgenerative._sources import TensorSource
from skgenerative._torch import generator_from
from skgenerative._training import EarlyStopping, MinibatchModel


class MeanModel(MinibatchModel):
    """``N(m, I)`` with ``m`` fitted by minibatch gradient descent; a log of the loop's calls."""

    def __init__(
        self, *, max_iter=3, batch_size=4, learning_rate=0.5, validation_losses=None,
        patience=2, warmup=0, diverge_at=None, contamination=0.1, device="cpu",
        dtype="float64", random_state=0, verbose=0, n_components=1,
    ):
        self.max_iter, self.batch_size, self.learning_rate = max_iter, batch_size, learning_rate
        self.validation_losses, self.patience, self.warmup = validation_losses, patience, warmup
        self.diverge_at, self.contamination, self.device, self.dtype = diverge_at, contamination, device, dtype
        self.random_state, self.verbose, self.n_components = random_state, verbose, n_components

    # the loop's hooks
    def _initialize_parameters(self, X, random_state):
        self.location_ = np.zeros(X.shape[1])
        self.calls_, self.batches_ = [], []

    def _n_epochs(self, n_train):
        return self.max_iter

    def _batch_size(self, n_train):
        return min(self.batch_size, n_train)

    def _split_validation(self, data):
        if self.validation_losses is None:
            return data, None
        return TensorSource(data.tensor[:-2]), data.tensor[-2:]

    def _prepare_training(self, train, valid):
        self.calls_.append(("prepare", train.shape[0], None if valid is None else valid.shape[0]))

    def _start_training(self, train, n_epochs):
        self.calls_.append(("start", n_epochs))
        self._location = torch.as_tensor(self.location_).clone()

    def _train_step(self, batch, generator):
        self.batches_.append((self._epoch, batch[:, 0].long().tolist()))
        loss = 0.5 * (batch - self._location).square().sum(1).mean()
        self._location -= self.learning_rate * (self._location - batch.mean(0))
        if self.diverge_at is not None and self._epoch >= self.diverge_at:
            return loss * math.nan
        return loss

    def _end_training(self, stopper):
        self.calls_.append(("end", None if stopper is None else stopper.best_epoch))
        self.location_ = self.__dict__.pop("_location").numpy()

    def _epoch_settings(self, epoch):
        return {"warm_up": float(epoch < self.warmup)}

    def _validation_loss(self, valid):
        return self.validation_losses[self._epoch]

    def _early_stopping(self):
        return EarlyStopping(self.patience)

    def _counts_toward_patience(self, epoch):
        return epoch >= self.warmup

    def _snapshot(self):
        return self._location.clone()

    def _restore(self, state):
        self._location = state

    # the model
    def _log_prob(self, X):
        m = self._tensor("location_")
        return -0.5 * ((X - m).square().sum(1) + X.shape[1] * math.log(2 * math.pi))

    def _encode(self, X):
        return X[:, :1]

    def _sample(self, n, generator):
        noise = torch.randn(n, len(self.location_), generator=generator, dtype=self._dtype)
        return self._tensor("location_") + noise


def _rows(n=10, d=3, seed=0):
    """Rows whose first column is their index, so the loop's order can be read back."""
    X = np.random.RandomState(seed).normal(size=(n, d)) + 2.0
    X[:, 0] = np.arange(n)
    return X


def _epoch_order(model, epoch, n):
    generator = generator_from(model._seed(model._EPOCH, epoch), torch.device("cpu"))
    return torch.randperm(n, generator=generator).tolist()


def test_fit_runs_seeded_shuffled_epochs_and_records_them():
    X = _rows()
    model = MeanModel(max_iter=3, batch_size=4).fit(X)
    assert model.n_iter_ == 3 and [h["epoch"] for h in model.history_] == [0, 1, 2]
    assert set(model.history_[0]) == {"epoch", "train_loss", "warm_up", "duration"}
    assert model.calls_ == [("prepare", 10, None), ("start", 3), ("end", None)]
    for epoch in range(3):
        seen = [rows for e, rows in model.batches_ if e == epoch]
        assert [len(rows) for rows in seen] == [4, 4, 2]
        # every row once, in the order of the generator seeded by (training seed, epoch)
        assert sum(seen, []) == _epoch_order(model, epoch, 10)
    # the first epoch's loss: the mean over rows of each batch's loss before its step
    location, total = np.zeros(3), 0.0
    for rows in [rows for e, rows in model.batches_ if e == 0]:
        total += 0.5 * ((X[rows] - location) ** 2).sum(1).sum()
        location = location - 0.5 * (location - X[rows].mean(0))
    assert model.history_[0]["train_loss"] == pytest.approx(total / 10, rel=1e-12)
    # the same random_state gives the same run; another gives other orders
    again = MeanModel(max_iter=3, batch_size=4).fit(X)
    assert again.batches_ == model.batches_
    other = MeanModel(max_iter=3, batch_size=4, random_state=1).fit(X)
    assert other.batches_ != model.batches_


def test_partial_fit_is_one_epoch_of_a_stream_with_its_own_noise():
    X = _rows()
    model = MeanModel(batch_size=10, learning_rate=1.0)
    for _ in range(3):
        model.partial_fit(X)
    assert model.n_iter_ == 3 and len(model.history_) == 3
    assert model.calls_ == [("prepare", 10, None), ("start", None), ("end", None)] * 3
    orders = [rows for _, rows in model.batches_]
    assert orders == [_epoch_order(model, e, 10) for e in range(3)]
    assert orders[0] != orders[1]  # no epoch replays another's shuffle
    # one full-batch step of rate 1 lands on the mean exactly
    np.testing.assert_allclose(model.location_, X.mean(0), rtol=1e-12)


def test_early_stopping_restores_the_best_weights():
    X = _rows(12)
    losses = [5.0, 4.0, 4.5, 4.6, 4.7, 1.0, 1.0]
    model = MeanModel(max_iter=7, validation_losses=losses, patience=3).fit(X)
    # epoch 1 is the best; 2, 3 and 4 do not improve: stop after epoch 4
    assert model.n_iter_ == 5 and [h["validation_loss"] for h in model.history_] == losses[:5]
    assert model.calls_ == [("prepare", 10, 2), ("start", 7), ("end", 1)]
    replay = MeanModel(max_iter=2, validation_losses=losses, patience=99).fit(X)
    np.testing.assert_array_equal(model.location_, replay.location_)  # the weights after epoch 1


def test_epochs_that_do_not_count_never_use_up_patience():
    X = _rows(12)
    losses = [5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0]
    model = MeanModel(max_iter=7, validation_losses=losses, patience=2, warmup=3).fit(X)
    # epochs 0-2 are a warm-up: only 3 and 4 use up the patience
    assert model.n_iter_ == 5 and model.calls_[-1] == ("end", 0)
    assert [h["warm_up"] for h in model.history_] == [1.0, 1.0, 1.0, 0.0, 0.0]


def test_a_diverging_run_names_the_epoch_and_what_to_change():
    expected = r"MeanModel: the training loss became nan at epoch 3; training diverged\. Lower"
    with pytest.raises(FloatingPointError, match=expected):
        MeanModel(max_iter=5, diverge_at=2).fit(_rows())

    class NonFinite(MeanModel):
        def _parameters_finite(self):
            return self._epoch < 1

    with pytest.raises(FloatingPointError, match="parameters became non-finite at epoch 2"):
        NonFinite(max_iter=5).fit(_rows())


def test_verbose_prints_only_a_summary_in_a_log_at_1(capsys):
    MeanModel(max_iter=2, verbose=1).fit(_rows())
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and re.fullmatch(r"\[MeanModel\] done: 2 epochs in \d+\.\d\ds; .*", lines[0])


def test_verbose_2_prints_the_record_of_each_epoch(capsys):
    MeanModel(max_iter=2, verbose=2).fit(_rows())
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].startswith("[MeanModel] epoch    1  train loss ")
    assert "warm up 0.0000" in lines[0] and lines[0].endswith("s")
    # the one-line summary at the end (#18)
    assert re.fullmatch(r"\[MeanModel\] done: 2 epochs in \d+\.\d\ds; .*", lines[2])


@pytest.mark.parametrize("cls, removed", [
    (VariationalAutoencoder, "max_epochs"), (FlowVAE, "max_epochs"), (BernoulliRBM, "n_iter"),
])
def test_one_name_for_the_number_of_epochs(cls, removed):
    """0.1.0 is the first release: max_iter is the only name (no renamed aliases)."""
    assert "max_iter" in cls().get_params() and removed not in cls().get_params()
    with pytest.raises(TypeError, match=removed):
        cls(**{removed: 3})
    assert not hasattr(cls, "n_epochs_")
