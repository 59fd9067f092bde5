r"""Long-range sequence task generated locally (no downloads), for training and compressing Deep SSMs.

``"tones"`` — *noisy tone classification* (sequence length ``L = 1024`` by default)
    Each sequence is one sinusoid buried in white Gaussian noise,

    .. math::

        x_t = \sin(2\pi f t / L + \varphi) + \sigma\,\varepsilon_t, \qquad
        f = f_0 + \delta\,(k + j), \qquad t = 0, \dots, L-1,

    with class :math:`k \in \{0, \dots, K-1\}`, random phase :math:`\varphi \sim U[0, 2\pi)`,
    frequency jitter :math:`j \sim U[-1/4, 1/4]` and :math:`\varepsilon_t \sim N(0, 1)`. Defaults:
    :math:`K = 8`, :math:`f_0 = 4`, :math:`\delta = 1/2` cycle per sequence, :math:`\sigma = 3`
    (per-sample signal-to-noise power ratio 1/18, i.e. -12.6 dB). Chance level is :math:`1/K`.

Why it is long range: neighbouring classes differ by half a cycle **per sequence** — half the
Rayleigh resolution of the whole sequence, while a window of :math:`w` steps resolves only
:math:`\approx L/w` cycles per sequence — and at -12.6 dB per sample the evidence has to be
integrated over the whole sequence: the shorter the memory, the worse the separation. The trained
model's reliance on long lags is measured directly in :mod:`benchmarks.train_longrange` (accuracy
with its SSM kernels truncated to the first 16 … 512 lags).

(We also tried a distant sign-match/XOR task and a spike-localisation task at L = 1024: the S4D
model stayed at chance for 300–400 steps, longer than the CPU budget of this benchmark allows.)

Generation is deterministic given ``seed`` (:class:`numpy.random.Generator`, PCG64), vectorised, and
O(n L); inputs are float32 of shape ``(n, L, 1)``.

Examples
--------
>>> from benchmarks.tasks import make_task
>>> x, y = make_task("tones", 4, seed=0)
>>> x.shape, x.dtype, y.dtype
((4, 1024, 1), dtype('float32'), dtype('int64'))
"""

from __future__ import annotations

import numpy as np

__all__ = ["TASKS", "TONES_DEFAULTS", "make_task", "make_tones", "task_info"]

TASKS = ("tones",)
DEFAULT_LENGTH = 1024
MIN_LENGTH = 16
TONES_DEFAULTS = {"n_classes": 8, "f0": 4.0, "spacing": 0.5, "noise": 3.0, "jitter": 0.25}
"""Default parameters of :func:`make_tones` (the trained benchmark model uses exactly these)."""


def _check_int(value, name: str, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    return int(value)


def make_tones(n: int, length: int = DEFAULT_LENGTH, seed: int | None = 0, *, n_classes: int = 8,
               f0: float = 4.0, spacing: float = 0.5, noise: float = 3.0,
               jitter: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    r"""Noisy tone classification (see the module docstring).

    Parameters
    ----------
    n : int
        Number of sequences (>= 0).
    length : int, default 1024
        Sequence length L (>= 16).
    seed : int or None
        Seed of the generator.
    n_classes : int, default 8
        Number of classes K (>= 2).
    f0 : float, default 4.0
        Frequency of class 0 in cycles per sequence.
    spacing : float, default 0.5
        Frequency step :math:`\delta` between classes, cycles per sequence (> 0).
    noise : float, default 3.0
        Noise standard deviation :math:`\sigma` (>= 0).
    jitter : float, default 0.25
        Half-width of the uniform frequency jitter in units of ``spacing`` (0 <= jitter < 0.5, so
        the class frequency bands do not overlap).

    Returns
    -------
    x : ndarray, shape (n, L, 1), float32
    y : ndarray, shape (n,), int64
        Class indices in ``[0, n_classes)``.
    """
    n = _check_int(n, "n", 0)
    L = _check_int(length, "length", MIN_LENGTH)
    K = _check_int(n_classes, "n_classes", 2)
    if not spacing > 0 or not np.isfinite(spacing):
        raise ValueError(f"spacing must be positive, got {spacing!r}")
    if not 0 <= noise < np.inf:
        raise ValueError(f"noise must be finite and >= 0, got {noise!r}")
    if not 0 <= jitter < 0.5:
        raise ValueError(f"jitter must be in [0, 0.5), got {jitter!r}")
    if not np.isfinite(f0) or f0 - jitter * spacing < 0 or f0 + spacing * (K - 1 + jitter) > L / 2:
        raise ValueError(f"frequencies must lie in [0, L/2] cycles per sequence (f0={f0!r})")
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, size=n)
    f = (f0 + spacing * (y + rng.uniform(-jitter, jitter, size=n))) / L  # cycles per step
    phase = rng.uniform(0.0, 2.0 * np.pi, size=n)
    t = np.arange(L)
    x = np.sin(2.0 * np.pi * f[:, None] * t + phase[:, None])
    x += noise * rng.standard_normal((n, L))
    return x[..., None].astype(np.float32), y.astype(np.int64)


def make_task(name: str, n: int, length: int = DEFAULT_LENGTH, seed: int | None = 0, **kwargs):
    """Generate ``n`` sequences of task ``name`` (one of :data:`TASKS`); ``kwargs`` go to the generator."""
    if name == "tones":
        return make_tones(n, length, seed, **kwargs)
    raise ValueError(f"unknown task {name!r}; choose one of {TASKS}")


def task_info(name: str, **kwargs) -> dict:
    """Static facts of a task: ``kind``, ``d_input``, ``d_output``, ``chance`` (accuracy of guessing)."""
    if name == "tones":
        K = int(kwargs.get("n_classes", TONES_DEFAULTS["n_classes"]))
        return {"kind": "classification", "d_input": 1, "d_output": K, "chance": 1.0 / K}
    raise ValueError(f"unknown task {name!r}; choose one of {TASKS}")
