"""Torch plumbing shared by every estimator.

Device and dtype resolution, array <-> tensor conversion, the size of evaluation
chunks, seeding, and *keyed* noise: Gaussian noise that is a pure function of a
row's values and a seed, so that Monte Carlo scores do not depend on which batch a
row arrives in.

Nothing here knows about scikit-learn estimators; nothing here changes torch globals.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from sklearn import get_config
from sklearn.utils import check_random_state

__all__ = [
    "resolve_device",
    "resolve_dtype",
    "to_numpy_input",
    "chunk_rows",
    "iter_slices",
    "has_nan",
    "generator_from",
    "seed_from",
    "row_keys",
    "keyed_normal",
    "keyed_uniform",
    "adaptive_threads",
    "refresh_threads",
    "threads_for_load",
]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_CPU_CHUNK_BYTES = 4 * 2**20


def resolve_device(device, *, fallback: bool = False) -> torch.device:
    """Turn the ``device`` parameter into a :class:`torch.device`.

    ``"auto"`` means CUDA when available, else CPU. ``"cpu"``, ``"cuda"``,
    ``"cuda:1"`` and ``torch.device`` objects are taken as they are.

    Parameters
    ----------
    device : str or torch.device
    fallback : bool, default=False
        When CUDA is asked for but absent: with ``fallback=True`` warn and use the
        CPU (used to evaluate a model that was fitted on a GPU and unpickled
        elsewhere); otherwise raise ``ValueError``.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a valid device: use 'auto', 'cpu', 'cuda', "
            "'cuda:<index>' or a torch.device."
        ) from exc
    if dev.type == "cuda":
        index = dev.index or 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            if fallback:
                warnings.warn(
                    f"device={device!r} is not available on this machine; "
                    "evaluating on the CPU instead.",
                    RuntimeWarning,
                    stacklevel=3,
                )
                return torch.device("cpu")
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available "
                "on this machine; use device='auto' or device='cpu'."
            )
    elif dev.type != "cpu" and dev.type != "mps":
        raise ValueError(f"device={device!r} is not supported: use 'cpu' or 'cuda'.")
    return dev


# --------------------------------------------------------------------------------------
# Threads: the one place where skgenerative changes torch's thread count.
#
# torch's CPU kernels split work over OpenMP threads that wait for each other at the end
# of every operation. When other processes keep the cores busy (a GridSearchCV with
# n_jobs=-1, a shared server), a descheduled thread makes the others spin for a time
# slice: on a loaded 2-core machine a small mixture fit took 1.2 s with two threads and
# 0.04 s with one. So while an estimator works (fit, evaluation, sampling, AIS) it runs
# inside :func:`adaptive_threads`: it uses no more threads than there are cores that
# other processes leave free, read from the kernel's count of runnable threads, and
# never more than torch's own setting (OMP_NUM_THREADS or torch.set_num_threads, which
# stay the user's cap). Long loops call :func:`refresh_threads` once an iteration.
#
# Python threads. With torch's OpenMP backend ``torch.set_num_threads`` sets the calling
# thread's count and also the count that threads started later begin with; it never
# changes another running thread's. So each Python thread keeps its own stack of caps
# (two fits in two threads each choose and restore their own count), and the process
# records the setting it had when the first block began: a block entered while another
# thread's is running takes that setting as its cap (its own may be the other thread's
# choice, inherited at start), and the last block to end, in whichever thread, leaves
# that setting behind for the threads that start afterwards.
# --------------------------------------------------------------------------------------

_THREADS = threading.local()  # .caps: this thread's stack of caps, innermost last
_THREADS_LOCK = threading.Lock()
_active_blocks = 0  # outermost blocks running, over all threads
_process_setting = 0  # torch's setting when the first of them began


def _caps() -> list[int]:
    caps = getattr(_THREADS, "caps", None)
    if caps is None:
        caps = _THREADS.caps = []
    return caps


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _runnable_elsewhere() -> int | None:
    """Threads of other processes that are runnable now; ``None`` where unknown.

    Linux's ``/proc/loadavg`` counts every runnable thread of the machine; this
    process's own runnable threads (``/proc/self/task/*/stat`` in state ``R``,
    the reading thread included) are taken off.
    """
    try:
        with open("/proc/loadavg") as handle:
            running = int(handle.read().split()[3].split("/")[0])
        own = 0
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/stat") as handle:
                stat = handle.read()
            if stat[stat.rindex(")") + 2] == "R":
                own += 1
    except (OSError, ValueError, IndexError):
        return None
    return max(running - own, 0)


def threads_for_load(cap: int) -> int:
    """Threads to use now: the cores other processes leave free, within ``[1, cap]``
    (one thread needs no look at the load: its reads of ``/proc`` were 1% of the mixed
    imputation default's time at one thread)."""
    if cap <= 1:
        return 1
    others = _runnable_elsewhere()
    if others is None:
        return cap
    return max(1, min(cap, _available_cores() - others))


def refresh_threads() -> None:
    """Within :func:`adaptive_threads`, adapt this thread's count to the load again.

    Long loops (EM iterations, epochs) call it once an iteration: a fit that
    started on an idle machine gives up threads when other work arrives, and
    takes them back when it leaves. Costs a few reads of ``/proc`` (tens of
    microseconds); does nothing outside the context.
    """
    caps = _caps()
    if caps:
        wanted = threads_for_load(caps[-1])
        if wanted != torch.get_num_threads():
            torch.set_num_threads(wanted)


@contextmanager
def adaptive_threads():
    """Run the block with :func:`threads_for_load` torch threads; restore them after.

    Nested blocks (a pipeline whose steps fit skgenerative models) take the outer
    block's choice as their cap. Safe in several Python threads at once (see the
    comment above): each thread restores its own count, and the last block to end
    leaves torch's setting as it was before the first began.
    """
    global _active_blocks, _process_setting
    caps = _caps()
    before = torch.get_num_threads()
    outermost = not caps
    cap = before
    if outermost:
        with _THREADS_LOCK:
            if _active_blocks == 0:
                _process_setting = before
            else:  # ours may be another block's choice, inherited when this thread began
                cap = min(before, _process_setting)
            _active_blocks += 1
    caps.append(cap)
    try:
        wanted = threads_for_load(cap)
        if wanted != torch.get_num_threads():
            torch.set_num_threads(wanted)
        yield
    finally:
        caps.pop()
        restore = before
        if outermost:
            with _THREADS_LOCK:
                _active_blocks -= 1
                if _active_blocks == 0:
                    restore = _process_setting
        if torch.get_num_threads() != restore:
            torch.set_num_threads(restore)


def resolve_dtype(dtype: str) -> torch.dtype:
    """``"float32"`` or ``"float64"`` to the torch dtype."""
    return _DTYPES[dtype]


def to_numpy_input(X):
    """Hand torch tensors (CPU or CUDA) to scikit-learn's validation as numpy.

    Everything else (numpy arrays, pandas frames, lists) passes through unchanged so
    that ``validate_data`` sees it as the user gave it (feature names included).
    """
    if isinstance(X, torch.Tensor):
        return X.detach().to("cpu").numpy()
    return X


def chunk_rows(row_bytes: int, n_rows: int, device: torch.device | None = None) -> int:
    """Rows per evaluation chunk for a model needing ``row_bytes`` of temporaries a row.

    On a GPU a chunk may use a quarter of scikit-learn's ``working_memory`` (MiB; 256
    MiB by default): large chunks keep the device busy. On the CPU a chunk is sized
    to stay in the processor's cache (4 MiB of temporaries, at most that quarter),
    which makes the memory-bound steps of EM several times faster than one large
    batch. Either way memory stays bounded however many rows are evaluated; change
    the budget with ``sklearn.config_context(working_memory=...)``.
    """
    budget = get_config()["working_memory"] * 2**20 / 4
    if device is None or torch.device(device).type == "cpu":
        budget = min(budget, _CPU_CHUNK_BYTES)
    rows = int(budget // max(int(row_bytes), 1))
    return max(1, min(rows, max(n_rows, 1)))


def has_nan(X: torch.Tensor) -> bool:
    """Whether ``X`` holds a NaN, from one reduction (no boolean mask of X's size).

    A NaN anywhere makes the sum NaN. The sum of finite values can only become NaN
    through ``inf - inf`` after overflow, which at worst sends complete data down the
    missing-value path (still correct, only slower).
    """
    known = getattr(X, "has_missing", None)  # a stream of blocks knows from its first pass
    if known is not None:
        return bool(known)
    return bool(torch.isnan(X.sum()))


def iter_slices(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def seed_from(random_state) -> int:
    """A 31-bit integer seed drawn from an sklearn ``random_state`` argument."""
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


def generator_from(seed: int, device: torch.device) -> torch.Generator:
    """A torch generator on ``device`` seeded with ``seed``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    return generator


# --------------------------------------------------------------------------------------
# Keyed noise.
#
# sklearn checks (and users) expect score_samples(X)[i] to be the same number whether
# row i is scored alone, in a subset or shuffled. A Monte Carlo score therefore cannot
# draw its noise from a stream consumed batch by batch. Instead, every row gets a 32-bit
# key that hashes its values and a seed, and every noise variate is a hash of
# (key, counter): a counter-based generator in plain int64 tensor arithmetic, so it runs
# unchanged on CPU and CUDA.
# --------------------------------------------------------------------------------------

_MASK32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2**32 for 0 <= x < 2**32 without overflowing int64."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _MASK32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer finaliser (xorshift-multiply rounds) with full avalanche."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x21F0AAAD)
    x = x ^ (x >> 15)
    x = _mul32(x, 0xD35A2D97)
    x = x ^ (x >> 15)
    return x


def row_keys(X: torch.Tensor, seed: int) -> torch.Tensor:
    """A 32-bit key per row, a function of the row's values and ``seed`` only.

    The values are hashed through their float64 bit patterns (``-0.0`` is folded into
    ``0.0`` and every NaN into one pattern), each position with its own salt, so that
    permuting a row's entries changes its key.
    """
    values = X.detach().to(torch.float64) + 0.0  # -0.0 + 0.0 == +0.0
    values = torch.where(torch.isnan(values), torch.zeros_like(values) + math.pi, values)
    bits = values.contiguous().view(torch.int64)
    lo = bits & _MASK32
    hi = (bits >> 32) & _MASK32
    position = torch.arange(X.shape[1], device=X.device, dtype=torch.int64)
    salt = _mix32((position * 0x9E3779B9 + (int(seed) & _MASK32)) & _MASK32)
    entry = _mix32(lo ^ _mix32(hi ^ salt))
    return _mix32((entry.sum(dim=1) + ((int(seed) * 0x85EBCA6B) & _MASK32)) & _MASK32)


def _keyed_bits(keys: torch.Tensor, n: int, stream: int) -> torch.Tensor:
    """(len(keys), n) hashed 32-bit integers; ``stream`` separates independent uses."""
    counter = torch.arange(n, device=keys.device, dtype=torch.int64)
    salt = _mix32((counter * 0x9E3779B9 + stream * 0x632BE5AB + 0x5851F42D) & _MASK32)
    return _mix32((keys.unsqueeze(1) + salt.unsqueeze(0)) & _MASK32)


def keyed_uniform(
    keys: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype, *, stream: int = 0
) -> torch.Tensor:
    """Uniform(0, 1) variates of shape ``(len(keys), *shape)``, fixed by the keys."""
    n = math.prod(shape)
    bits = _keyed_bits(keys, n, stream)
    u = (bits.to(torch.float64) + 0.5) / 2.0**32
    return u.to(dtype).reshape(len(keys), *shape)


def keyed_normal(
    keys: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype, *, stream: int = 0
) -> torch.Tensor:
    """Standard normal variates of shape ``(len(keys), *shape)``, fixed by the keys.

    Box-Muller on pairs of keyed uniforms: ``r = sqrt(-2 log u1)``, the pair
    ``(r cos 2 pi u2, r sin 2 pi u2)``. With 32-bit uniforms the largest magnitude is
    about 6.8, beyond which a normal has probability 1e-11.
    """
    n = math.prod(shape)
    half = (n + 1) // 2
    u = keyed_uniform(keys, (2, half), torch.float64, stream=stream)
    radius = torch.sqrt(-2.0 * torch.log(u[:, 0]))
    angle = (2.0 * math.pi) * u[:, 1]
    z = torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
    return z[:, :n].to(dtype).reshape(len(keys), *shape)


#: rows per block of :func:`row_matmul`
_ROW_BLOCK = 64


def row_matmul(A: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """``A @ W`` for rows ``A`` (n, *batch, d) and ``W`` (*batch, d, m), as (n, *batch, m),
    each row's result independent of the other rows.

    A matrix product's kernels depend on its shape (a product with one row takes
    another path than one with many, and rounds differently), so a row's score would
    depend on the batch it arrives in. Here the rows go in blocks of a fixed size
    (the last one padded with zeros), all through products of one shape.
    """
    n, batch, d, m = A.shape[0], tuple(A.shape[1:-1]), A.shape[-1], W.shape[-1]
    pad = (-n) % _ROW_BLOCK
    if pad:
        A = torch.cat([A, A.new_zeros((pad,) + tuple(A.shape[1:]))])
    n_blocks = A.shape[0] // _ROW_BLOCK
    blocks = A.reshape((n_blocks, _ROW_BLOCK) + batch + (d,)).movedim(1, -2).reshape(-1, _ROW_BLOCK, d)
    weights = W.expand((n_blocks,) + batch + (d, m)).reshape(-1, d, m)
    out = torch.bmm(blocks, weights).reshape((n_blocks,) + batch + (_ROW_BLOCK, m)).movedim(-2, 1)
    return out.reshape((n_blocks * _ROW_BLOCK,) + batch + (m,))[:n]
