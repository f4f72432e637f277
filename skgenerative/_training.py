"""The minibatch training loop, written once for every model trained by minibatches.

A model trained by minibatches subclasses :class:`MinibatchModel` and fills a few
hooks; the loop is a chain of small overridable steps, in the manner of skorch::

    fit -> _fit -> _fit_loop -> _run_single_epoch -> _train_step
    partial_fit -> _partial_fit --^

``_fit`` starts a fresh model, holds out a validation split when the model asks
for one, and runs up to ``_n_epochs`` epochs; ``_partial_fit`` runs one epoch over
the rows it is given and continues the model. Each epoch draws its randomness (the
shuffle and the model's own noise) from a generator seeded by the training seed and
the epoch's index alone, so that the same ``random_state`` gives the same model and
no ``partial_fit`` epoch replays another's noise (a model may instead draw a call's
epochs from one stream: the RBM keeps the stream it had before this loop).

Hooks of a model (those of the first three entries are required):

``_initialize_parameters(X, random_state)``
    A fresh model for the raw rows ``X`` (numpy ``RandomState`` for any seeds it
    keeps; tensors are drawn from ``self._seed(...)`` streams).
``_n_epochs(n_train)`` and ``_batch_size(n_train)``
    Epochs of ``fit`` and rows per update, from the model's parameters.
``_train_step(batch, generator) -> Tensor | None``
    One update on a batch: the detached batch loss (mean per row) when the model
    has one, else ``None`` (the RBM's contrastive divergence).
``_training_data(X)``
    Raw rows -> what the model trains on (standardised, binarised, ...).
``_split_validation(data) -> (train, valid or None)``
    No validation by default.
``_prepare_training(train, valid)``
    The model's look at the data of one call before its epochs (e.g. whether they
    have missing values, the running marginals).
``_start_training(train, n_epochs)`` / ``_end_training(stopper)``
    Set up what the updates need (optimiser, chains, a schedule over the
    ``n_epochs`` the call plans, ``None`` for ``partial_fit``'s one epoch of an
    open-ended stream) and write the fitted attributes back afterwards;
    ``stopper`` is the early-stopping record or ``None``.
``_epoch_generator(epoch, device)``
    Where an epoch draws its randomness (by default a generator seeded from the
    training seed and the epoch alone).
``_epoch_settings(epoch)``
    Quantities the model reads from the epoch (a KL weight, a step size), recorded in
    ``history_``. The model reads the running epoch itself from ``self._epoch``; no
    step takes it as an argument.
``_epoch_metrics(valid)``
    What is recorded after the epoch's training (the validation loss).
``_progress(train)``
    Extra figures for the ``verbose`` line only, computed only when it prints.
``_parameters_finite()`` and ``_divergence_advice()``
    Divergence: the loop raises ``FloatingPointError`` naming what to change when a
    loss or (per this hook) a parameter stops being finite.
``_early_stopping()``, ``_validation_loss(valid)``, ``_counts_toward_patience(epoch)``,
``_snapshot()`` / ``_restore(state)``
    Early stopping on the validation loss with the best weights restored, for models
    that hold out a split.

:class:`NeuralGenerativeModel` fills the steps for a torch module trained by Adam on a
per-batch loss; :class:`~skgenerative.BernoulliRBM` fills them with its
contrastive-divergence update.
"""

from __future__ import annotations

import math
import time
from numbers import Integral, Real
from typing import NoReturn

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from ._progress import Progress
from ._sources import Cast, TensorSource
from ._torch import generator_from, iter_slices, refresh_threads
from .base import GenerativeModel, _TorchPayload

__all__ = [
    "MinibatchModel",
    "NeuralGenerativeModel",
    "EarlyStopping",
]


class EarlyStopping:
    """The best validation loss so far, the weights that reached it, and the patience left.

    Epochs with ``counting`` false (a warm-up) may set a new best but never use up
    patience.
    """

    def __init__(self, patience: int):
        self.patience = patience
        self.best_loss = math.inf
        self.best_epoch: int | None = None
        self.best_state = None
        self.bad_epochs = 0

    def update(self, loss: float, epoch: int, counting: bool, snapshot) -> bool:
        """Record an epoch's loss (``snapshot()`` copies the weights); ``True``: stop."""
        if loss < self.best_loss:
            self.best_loss, self.best_epoch, self.bad_epochs = loss, epoch, 0
            self.best_state = snapshot()
        elif counting:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def restore(self, restore) -> None:
        """Put the best weights back with ``restore(state)``."""
        if self.best_state is not None:
            restore(self.best_state)


class MinibatchModel(GenerativeModel):
    """Base class of the models trained by minibatches: the loop, once (see the module).

    Fitted attributes it keeps: ``history_`` (a dict per epoch: ``epoch``, the
    model's metrics and settings, ``duration`` in seconds) and ``n_iter_`` (epochs
    run over all ``fit`` and ``partial_fit`` calls).
    """

    # seed streams derived from the training seed; models number theirs from 4
    _INIT, _SPLIT, _VALIDATION, _EPOCH = range(4)

    # ---------------------------------------------------------- model hooks
    def _initialize_parameters(self, X: torch.Tensor, random_state) -> None:  # pragma: no cover
        raise NotImplementedError  # abstract hook

    def _n_epochs(self, n_train: int) -> int:  # pragma: no cover
        raise NotImplementedError  # abstract hook

    def _batch_size(self, n_train: int) -> int:  # pragma: no cover
        raise NotImplementedError  # abstract hook

    def _train_step(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor | None:  # pragma: no cover
        raise NotImplementedError  # abstract hook

    def _training_data(self, X: torch.Tensor) -> torch.Tensor:
        """Raw rows -> what the model trains on (the rows themselves by default)."""
        return X

    def _split_validation(self, data) -> tuple:
        """(training source, validation rows or None); no validation by default."""
        return data, None

    def _prepare_training(self, train: torch.Tensor, valid: torch.Tensor | None) -> None:
        """Look at the data of one call before its epochs (nothing by default)."""

    def _start_training(self, train: torch.Tensor, n_epochs: int | None) -> None:
        """Set up what the updates need (nothing by default).

        ``n_epochs``: the epochs this call plans; ``None`` for one epoch of an
        open-ended stream (``partial_fit``).
        """

    def _end_training(self, stopper: EarlyStopping | None) -> None:
        """Write the fitted attributes after the epochs of one call (nothing by default)."""

    def _epoch_settings(self, epoch: int) -> dict:
        """Epoch-dependent quantities of the model, recorded in ``history_``."""
        return {}

    def _epoch_metrics(self, valid: torch.Tensor | None) -> dict:
        """Recorded after each epoch's training: the validation loss, when there is a split."""
        return {} if valid is None else {"validation_loss": self._validation_loss(valid)}

    def _progress(self, train: torch.Tensor) -> dict:
        """Extra figures for the ``verbose`` line only (computed only then)."""
        return {}

    def _parameters_finite(self) -> bool:
        """Whether the parameters are finite after an epoch (a loss check covers most models)."""
        return True

    def _divergence_advice(self) -> str:
        return "Lower the learning rate."

    def _early_stopping(self) -> EarlyStopping | None:
        """The early-stopping record used when a validation split is held out."""
        return None

    def _validation_loss(self, valid: torch.Tensor) -> float:  # pragma: no cover
        raise NotImplementedError  # hook of models that hold out a split

    def _counts_toward_patience(self, epoch: int) -> bool:
        return True

    def _snapshot(self):  # pragma: no cover
        raise NotImplementedError  # hook of models that stop early

    def _restore(self, state) -> None:  # pragma: no cover
        raise NotImplementedError  # hook of models that stop early

    # ----------------------------------------------------------------- seeds
    def _seed(self, stream: int, index: int = 0) -> int:
        """A 31-bit seed for one use (``stream``, ``index``) of the training seed."""
        sequence = np.random.SeedSequence([self._training_seed, stream, index])
        return int(sequence.generate_state(1)[0] >> 1)

    def _epoch_generator(self, epoch: int, device: torch.device) -> torch.Generator:
        """The generator epoch ``epoch`` draws from: seeded by (training seed, epoch) alone."""
        return generator_from(self._seed(self._EPOCH, epoch), device)

    @property
    def _epoch(self) -> int:
        """Index (0-based, over all calls) of the epoch being run: the epochs completed."""
        return self.n_iter_

    # ----------------------------------------------------------------- steps
    def _fit(self, source) -> None:
        """A fresh model from the source's initialisation rows, then the epochs.

        The model's statistics (a standardisation, the initial biases) come from
        ``source.sample()``: every row in memory, and a uniform sample of 100,000 rows
        of a larger dask collection. Training reads the source's rows mapped by
        ``_training_data`` (on the client: the map is the model's own method) and cast
        to the training dtype.
        """
        self._initialize(source.sample(random_state=self.random_state))
        device, dtype = self._device, self._dtype
        data = (source.map(Cast(device=device), local=True, device=device)  # in memory: already there
                .map(self._training_data, local=True).map(Cast(dtype), dtype=dtype))
        train, valid = self._split_validation(data)
        self._fit_loop(train, valid, self._n_epochs(train.shape[0]))
        return None

    def _partial_fit(self, X: torch.Tensor, first: bool) -> None:
        """One more epoch on ``X``, every row training (no validation split)."""
        if first:
            self._initialize(X)
        self._fit_loop(TensorSource(self._training_data(X).to(self._dtype)), None, None)
        return None

    def _initialize(self, X: torch.Tensor) -> None:
        """Fresh state: the training seed, the model, an empty history."""
        random_state = check_random_state(self.random_state)
        self._training_seed = int(random_state.randint(0, 2**31 - 1))
        self._initialize_parameters(X, random_state)
        self.history_ = []
        self.n_iter_ = 0

    def _fit_loop(self, train, valid: torch.Tensor | None, n_epochs: int | None) -> None:
        """Up to ``n_epochs`` epochs (``None``: one, of a stream); early stopping on ``valid``.

        ``train`` is a data source (:mod:`._sources`): its shape, device and epoch
        batches are all the loop reads, so rows in memory and the blocks of a dask
        collection train alike.
        """
        self._prepare_training(train, valid)
        self._start_training(train, n_epochs)
        batch_size = self._batch_size(train.shape[0])
        stopper = self._early_stopping() if valid is not None else None
        total = 1 if n_epochs is None else n_epochs
        progress = Progress(type(self).__name__, "epoch", total, self.verbose, log=self._log)
        with progress:
            stopped_early = self._epochs(train, valid, total, batch_size, stopper, progress)
            progress.close(self._training_summary(stopper, stopped_early))
        if stopper is not None:
            stopper.restore(self._restore)
        self._end_training(stopper)

    def _epochs(self, train, valid, n_epochs, batch_size, stopper, progress) -> bool:
        """Up to ``n_epochs`` epochs, each reported; ``True`` when ``stopper`` ended them."""
        for _ in range(n_epochs):
            refresh_threads()  # a long fit follows the machine's load
            epoch = self._epoch
            start = time.perf_counter()
            settings = self._epoch_settings(epoch)
            generator = self._epoch_generator(epoch, train.device)
            record = {"epoch": epoch, **self._run_single_epoch(train, batch_size, generator)}
            if not self._parameters_finite():
                self._diverged("the parameters became non-finite")
            record.update(self._epoch_metrics(valid))
            record.update(settings)
            record["duration"] = time.perf_counter() - start
            self.n_iter_ += 1
            self.history_.append(record)
            if self.verbose:
                extra = self._progress(train)
                figures = {k: v for k, v in {**record, **extra}.items() if k.endswith(("loss", "error"))}
                progress.update(self._epoch_line(record, extra), **figures)
            if stopper is not None and stopper.update(
                record["validation_loss"], epoch, self._counts_toward_patience(epoch), self._snapshot
            ):
                return True
        return False

    def _training_summary(self, stopper, stopped_early: bool) -> str:
        """The end-of-training line: best epoch and why training stopped."""
        if stopper is None or stopper.best_epoch is None:
            last = self.history_[-1] if self.history_ else {}
            return f"final train loss {last['train_loss']:.4f}" if "train_loss" in last else ""
        why = (f"stopped: no improvement for {stopper.patience} epochs"
               if stopped_early else "reached max_iter")
        return (f"best epoch {stopper.best_epoch + 1} (validation loss {stopper.best_loss:.4f}), "
                f"weights restored; {why}")

    def _run_single_epoch(self, train, batch_size: int, generator: torch.Generator) -> dict:
        """One shuffled pass over ``train``: ``{"train_loss": mean loss per row}``, or ``{}``."""
        n = train.shape[0]
        total = None
        for batch in self._epoch_batches(train, batch_size, generator):
            loss = self._train_step(batch, generator)
            if loss is not None:  # summed on the device: no synchronisation a step
                if total is None:
                    total = torch.zeros((), dtype=loss.dtype, device=loss.device)
                total.add_(loss, alpha=batch.shape[0])
        if total is None:
            return {}
        mean = float(total) / n
        if not math.isfinite(mean):
            self._diverged(f"the training loss became {mean}")
        return {"train_loss": mean}

    def _epoch_batches(self, train, batch_size: int, generator: torch.Generator):
        """The batches of one epoch, drawn from ``generator``: rows in memory shuffled;
        the blocks of a dask collection in a seeded order, each shuffled within (see
        :meth:`~._sources.DaskSource.epoch_batches`)."""
        return train.epoch_batches(batch_size, generator)

    def _diverged(self, what: str) -> NoReturn:
        raise FloatingPointError(
            f"{type(self).__name__}: {what} at epoch {self._epoch + 1}; training diverged. "
            f"{self._divergence_advice()}"
        )

    def _epoch_line(self, record: dict, extra: dict) -> str:
        figures = {**record, **extra}
        parts = [f"epoch {record['epoch'] + 1:4d}"] + [
            f"{name.replace('_', ' ')} {value:.4f}"
            for name, value in figures.items()
            if name not in ("epoch", "duration")
        ]
        return "  ".join(parts + [f"{record['duration']:.2f}s"])


class NeuralGenerativeModel(MinibatchModel):
    """Base class of the neural density estimators: a torch module trained by Adam.

    A subclass declares the loop's parameters in its ``__init__`` (``learning_rate``,
    ``batch_size``, ``max_iter``, ``early_stopping``, ``validation_fraction``,
    ``n_iter_no_change``, and the common ones of
    :class:`~skgenerative.base.GenerativeModel`) and supplies the model:

    ``_build_module(n_features, generator) -> nn.Module``
        The network, initialised from the given CPU generator.
    ``_batch_loss(module, batch, generator) -> Tensor``
        The scalar training loss of a batch of preprocessed rows (mean over rows)
        at the running epoch (``self._epoch``), drawing any noise from ``generator``.
    ``_validation_batch_loss(module, batch, generator)`` (optional)
        The loss early stopping compares across epochs (``_batch_loss`` by default).
    ``_fit_preprocessing(X)`` / ``_preprocess(X)`` (optional)
        Fit and apply a fixed transformation of the raw data (e.g. standardisation).

    ``fit`` holds out ``validation_fraction`` of the rows when ``early_stopping``
    is set, stops when their loss has not improved for ``n_iter_no_change`` epochs
    (epochs for which ``_counts_toward_patience`` is false do not count) and
    restores the best weights. Randomness: the weights, the validation split and
    each epoch's noise come from seeds derived from ``random_state`` alone, never
    from torch's global generator, so the same ``random_state`` gives the same model
    on the same device.

    Examples
    --------
    Every neural estimator here is one; the loop's record is shared:

    >>> import numpy as np
    >>> from skgenerative import VariationalAutoencoder
    >>> from skgenerative.vae import NeuralGenerativeModel
    >>> X = np.random.RandomState(0).normal(size=(200, 3))
    >>> vae = VariationalAutoencoder(n_components=1, hidden_layer_sizes=(8,), max_iter=5,
    ...                              random_state=0).fit(X)
    >>> isinstance(vae, NeuralGenerativeModel), vae.n_iter_, sorted(vae.history_[0])
    (True, 5, ['duration', 'epoch', 'kl_weight', 'train_loss', 'validation_loss'])
    """

    # scoring the training rows (importance sampling) costs several epochs: offset_
    # waits for its first use (base.GenerativeModel._end_fit)
    _defer_offset = True

    _parameter_constraints: dict = {
        **GenerativeModel._parameter_constraints,
        "learning_rate": [Interval(Real, 0.0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0.0, 1.0, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
    }

    # ------------------------------------------------------------------ hooks
    def _build_module(self, n_features: int, generator: torch.Generator) -> nn.Module:  # pragma: no cover
        raise NotImplementedError  # abstract hook

    def _batch_loss(
        self, module: nn.Module, batch: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError  # abstract hook

    def _validation_batch_loss(
        self, module: nn.Module, batch: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        return self._batch_loss(module, batch, generator)

    def _fit_preprocessing(self, X: torch.Tensor) -> None:
        """Fit the data transformation on the first training data (none by default)."""

    def _preprocess(self, X: torch.Tensor) -> torch.Tensor:
        """Raw rows -> what the module models (identity by default)."""
        return X

    # ------------------------------------------------------- the loop's steps
    def _initialize_parameters(self, X: torch.Tensor, random_state) -> None:
        """Noise seed, data transformation, module; no optimiser state yet."""
        self.noise_seed_ = int(random_state.randint(0, 2**31 - 1))
        self._fit_preprocessing(X)
        init = torch.Generator().manual_seed(self._seed(self._INIT))
        module = self._build_module(X.shape[1], init)
        self.module_ = module.to(device=X.device, dtype=self._dtype)
        self._optimizer_state = None
        self.best_epoch_ = None
        self.best_validation_loss_ = None

    def _training_data(self, X: torch.Tensor) -> torch.Tensor:
        return self._preprocess(X)

    def _n_epochs(self, n_train: int) -> int:
        return int(self.max_iter)

    def _split_validation(self, data):
        """(training source, validation rows or None): ``validation_fraction`` held out.

        A random ``validation_fraction`` of the rows (of each block, for a dask
        collection, by a draw seeded with the block's index). Without
        ``early_stopping``, or when the data are too few to leave a row on each side,
        everything is training data and no early stopping happens.
        """
        n = data.shape[0]
        n_valid = int(math.floor(self.validation_fraction * n))
        if not self.early_stopping or n_valid < 1 or n - n_valid < 1:
            if self.early_stopping:
                self._log(f"{n} rows are too few for a validation split: no early stopping")
            return data, None
        return data.split(self.validation_fraction, lambda index: self._seed(self._SPLIT, index))

    def _batch_size(self, n_train: int) -> int:
        """``batch_size``, or for ``"auto"`` ``n_train / 16`` clipped to [32, 256].

        Small tables get about 16 updates an epoch; large data get batches of 256,
        large enough to keep each step efficient, small enough to make progress.
        """
        if self.batch_size == "auto":
            size = min(256, max(32, n_train // 16))
        else:
            size = int(self.batch_size)
        return max(1, min(size, n_train))

    def _make_optimizer(self, module: nn.Module) -> torch.optim.Optimizer:
        """Adam with ``learning_rate``, resuming the state of earlier calls.

        The fused implementation (one kernel for all parameters) is faster for the
        small networks of tables; torch before 2.4, or a device without it, gets
        the plain one.
        """
        params = list(module.parameters())
        try:
            optimizer = torch.optim.Adam(params, lr=self.learning_rate, fused=True)
        except (RuntimeError, TypeError, ValueError):
            optimizer = torch.optim.Adam(params, lr=self.learning_rate)
        if self._optimizer_state is not None:
            optimizer.load_state_dict(self._optimizer_state)
            for group in optimizer.param_groups:  # a changed learning_rate wins
                group["lr"] = self.learning_rate
        return optimizer

    def _start_training(self, train: torch.Tensor, n_epochs: int | None) -> None:
        self._move_modules(train.device)
        self._optimizer = self._make_optimizer(self.module_)

    def _run_single_epoch(self, train, batch_size, generator) -> dict:
        self.module_.train()
        return super()._run_single_epoch(train, batch_size, generator)

    def _train_step(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One gradient step on ``batch``; returns the (detached) batch loss."""
        optimizer = self._optimizer
        optimizer.zero_grad(set_to_none=True)
        loss = self._batch_loss(self.module_, batch, generator)
        loss.backward()
        optimizer.step()
        return loss.detach()

    def _epoch_metrics(self, valid: torch.Tensor | None) -> dict:
        return {"validation_loss": math.nan if valid is None else self._validation_loss(valid)}

    def _validation_loss(self, valid: torch.Tensor) -> float:
        """Mean validation loss per row (``_validation_batch_loss``).

        The noise is drawn from the same seed at every epoch (common random
        numbers), so that epochs are compared on equal terms.
        """
        module = self.module_
        module.eval()
        generator = generator_from(self._seed(self._VALIDATION), valid.device)
        n = valid.shape[0]
        total = 0.0
        with torch.no_grad():
            for rows in iter_slices(n, 1024):
                batch = valid[rows]
                total += float(self._validation_batch_loss(module, batch, generator)) * batch.shape[0]
        loss = total / n
        if not math.isfinite(loss):
            self._diverged(f"the validation loss became {loss}")
        return loss

    def _early_stopping(self) -> EarlyStopping:
        return EarlyStopping(int(self.n_iter_no_change))

    def _snapshot(self) -> dict:
        return {k: v.detach().clone() for k, v in self.module_.state_dict().items()}

    def _restore(self, state: dict) -> None:
        self.module_.load_state_dict(state)

    def _end_training(self, stopper: EarlyStopping | None) -> None:
        self._optimizer_state = self.__dict__.pop("_optimizer").state_dict()
        if stopper is not None:
            self.best_epoch_ = stopper.best_epoch
            self.best_validation_loss_ = stopper.best_loss
        else:  # the weights are the last epoch's
            self.best_epoch_ = self.best_validation_loss_ = None
        self.module_.eval()

    def _divergence_advice(self) -> str:
        return (
            f"Lower learning_rate (now {self.learning_rate}), scale the input "
            "(e.g. StandardScaler), or use dtype='float64'."
        )

    # ------------------------------------------------------------- pickling
    def __getstate__(self):
        state = super().__getstate__()
        # the optimizer's state holds tensors on the training device: CPU bytes, as
        # base does for modules, so that a GPU-trained model unpickles on a CPU
        if isinstance(state.get("_optimizer_state"), dict):
            state["_optimizer_state"] = _TorchPayload(state["_optimizer_state"])
        return state
