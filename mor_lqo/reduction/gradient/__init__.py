r"""Gradient-based h2-optimal reduction to a **diagonal** reduced model (docs/theory.md §4, §7.6, §8, §9).

The reduced model is parametrised so that it is stable for *every* parameter vector
(docs/theory.md §9), with an optional stability margin :math:`\delta`:

.. math::

    \text{discrete:}\quad \hat\lambda_k = (1-\delta)\,\exp(-e^{\nu_k} + i\theta_k), \qquad
    \text{continuous:}\quad \hat\lambda_k = -\delta - e^{\nu_k} + i\theta_k,

with the argument :math:`\theta_k` (discrete) or imaginary part (continuous) of a conjugate pair kept
at least ``min_ratio`` times the decay rate :math:`e^{\nu_k}` away from the real axis (discrete:
:math:`\theta = \epsilon + (\pi - 2\epsilon)\,\sigma(\varphi)`, continuous:
:math:`\theta = \epsilon + e^\varphi`, :math:`\epsilon = \texttt{min\_ratio}\cdot e^\nu` (discrete:
:math:`\texttt{min\_ratio}\, e^\nu/(1+e^\nu)`); complex ROMs use :math:`\theta` itself). The
squared error :math:`J = \|\Sigma - \hat\Sigma\|_{h2}^2` is minimised with L-BFGS on the real
parameter vector, using analytic gradients (the Wilson/Gramian gradients of :mod:`mor_lqo.gradients`
specialised to diagonal models, with the chain rules of docs/theory.md §4/§9).

Structure of the reduced model
------------------------------
* **Real-output full models** (:meth:`LQOSystem.conjugate_pairs` systems, and real systems): the ROM is
  a ``conjugate_pairs`` system with ``r/2`` stored half modes :math:`(\hat\lambda_k, \hat b_k, \hat c_k)`
  and the full model's output scale :math:`\kappa` (2.0 for real systems), so it can be written back
  into a halved Deep-SSM layout. ``r`` must be even (:class:`OrderError` otherwise). The objective is
  the exact error of the **real** input-output map, evaluated on the conjugation-closed forms
  (docs/theory.md §8.3); half-coordinate gradients are :math:`g_k + \overline{g_{k'}}` (§8.5 (b)).
* **Complex full models** (complex data without conjugate-pair structure): complex diagonal ROM of
  order ``r`` (complex norm).
* **Quadratic outputs**: the reduced quadratic output :math:`\hat M_j` is a Hermitian matrix on the
  stored (half) state. ``quadratic="hermitian"`` (default) parametrises it by its ``q**2`` real
  entries (diagonal, real and imaginary parts of the strict upper triangle); ``quadratic="psd"`` uses
  the factor :math:`\hat M_j = \hat U_j^H \hat U_j` (:math:`\hat U_j` square, so every PSD matrix is
  reachable; :math:`\nabla_{\hat U} J = 2 \hat U \nabla_{\hat M} J`), which keeps energy readouts
  non-negative. The Hermitian choice is the default because it is the larger feasible set (its optimum
  is never worse) and it represents projected initial models exactly. For conjugate pairs,
  :math:`\hat M_f = \tfrac12\,\mathrm{blkdiag}(\hat M, \overline{\hat M})` (the layout's form), so for
  *real* LQO full models the ROM's quadratic part is restricted to that form.
* **Variable projection** (``project_c=True``, default): for fixed poles and input matrix the error is
  a convex quadratic in :math:`\hat C`, minimised in closed form by :math:`\hat C_f = C X \hat P^{-1}`
  (the condition :math:`\hat C \hat P = C X` of docs/theory.md §5; the minimiser is automatically
  conjugation-closed). By the envelope theorem the gradient of the reduced objective is the partial
  gradient. With one input (SISO channels) the input matrix is fixed to ``b_k = 1`` (any nonzero value
  is absorbed into :math:`\hat c_k` and :math:`\hat M`), so an S4D channel reduced to ``r`` real states
  is an optimisation over ``r`` real numbers (the poles).
* D is kept (``D^ = D``); it cancels in the error in both discrete conventions.

The optimiser keeps the best parameter vector it ever evaluated, runs from every initial model
(modal truncation, greedy modal selection by the projected error, balanced truncation; near-real pairs
are split at the start because the objective is even in the angle at a real pair), and the result is
never worse than the best initial model.

Limitations: a conjugate-pair slot holds a complex pair (or one real pole), never two distinct real
poles, so for real full models whose best real ROM has real poles a real BT ROM can be better than any
conjugate-pair ROM (S4D-type channels are not affected in practice). The objective is non-convex; the
result is a local minimum (first-order conditions checked in ``info``).

Batched channels
----------------
:func:`h2_gradient_batch` reduces N conjugate-pair channels (arrays ``lam (N, n)``, ``B (N, n, m)``,
``C (N, p, n)``) with the same closed forms vectorised over the channel axis and a per-channel BFGS
(dense ``d x d`` inverse-Hessian per channel, per-channel Armijo backtracking), without a Python loop
over channels.

Joint weighted objectives
-------------------------
:class:`H2Objective` exposes ``value_and_grad(theta)``, ``pack(rom)`` and ``unpack(theta)`` so that a
caller can minimise a weighted sum :math:`\sum_l w_l J_l` over several blocks;
:func:`h2_gradient_joint` does that with L-BFGS.

Where each part lives
---------------------
* :mod:`.layout` -- the real parametrisation (:class:`_Layout`: stable pole maps, quadratic-output
  parameters, starting vectors), full-model arrays, folding of conjugate pairs to half coordinates.
* :mod:`.evaluate` -- the objective and its gradient: closed Cauchy forms (diagonal full models,
  batched), core solvers (dense ones), variable projection of :math:`\hat C`, chain rule.
* :mod:`.objective` -- the public :class:`H2Objective` (``pack``, ``unpack``, ``value_and_grad``).
* :mod:`.modes` -- reduced models as modes: modal truncation, diagonalising a given model, mode scores.
* :mod:`.starts` -- the initial models: modal, greedy modal selection, balanced truncation.
* :mod:`.lbfgs` -- the L-BFGS-B driver (scipy) that keeps the best point it evaluated.
* :mod:`.single` -- :func:`h2_gradient` and the first-order stationarity check.
* :mod:`.joint` -- :func:`h2_gradient_joint`.
* :mod:`.bfgs_batch` -- the vectorised per-channel BFGS; :mod:`.batch` -- :func:`h2_gradient_batch`.
* :mod:`._checks`, :mod:`._threads` -- argument checks; single-threaded BLAS for tiny products.
"""

from __future__ import annotations

from ._checks import _check_margin, _check_maxiter, _check_system, _nonneg, _positive
from ._threads import _blas_threads, _NoLimit
from .batch import H2BatchResult, h2_gradient_batch
from .bfgs_batch import _bfgs_batch
from .evaluate import _NEAR_ONE, _RCOND, _cauchy, _eval_dense, _eval_diag, _Evaluator, _project_c
from .joint import h2_gradient_joint
from .layout import (
    _H,
    _LIFT,
    _NU_SPAN,
    _c_full,
    _fold,
    _FullArrays,
    _herm,
    _Layout,
    _m_full,
    _Modes,
    _safe_log,
    _to_full,
)
from .lbfgs import _lbfgs, _proj_grad_norm, _Tracker
from .modes import (
    _clip_to_margin,
    _degenerate_pair,
    _modal_data,
    _modal_modes,
    _mode_scores,
    _modes_from_complex,
    _modes_from_real,
    _modes_of_rom,
)
from .objective import H2Objective, _without_d
from .single import _h2_gradient, _stationarity, h2_gradient
from .starts import _bt_rom, _greedy_modes, _greedy_select, _init_candidates, _local_bt

__all__ = [
    "H2Objective",
    "H2BatchResult",
    "h2_gradient",
    "h2_gradient_batch",
    "h2_gradient_joint",
]

# Every private helper of the former single module stays importable from here: tests and other
# modules import some of them (``_modal_modes``, ``_modes_of_rom``, ``_stationarity``, ``_Layout``, ...).
_PRIVATE = (
    _check_margin, _check_maxiter, _check_system, _nonneg, _positive, _blas_threads, _NoLimit, _bfgs_batch,
    _NEAR_ONE, _RCOND, _cauchy, _eval_dense, _eval_diag, _Evaluator, _project_c, _LIFT, _NU_SPAN, _c_full,
    _fold, _FullArrays, _H, _herm, _Layout, _m_full, _Modes, _safe_log, _to_full, _lbfgs, _proj_grad_norm,
    _Tracker, _clip_to_margin, _degenerate_pair, _modal_data, _modal_modes, _mode_scores, _modes_from_complex,
    _modes_from_real, _modes_of_rom, _without_d, _h2_gradient, _stationarity, _bt_rom, _greedy_modes,
    _greedy_select, _init_candidates, _local_bt,
)
