r"""Compress a Deep SSM by reducing the linear systems of its SSM blocks (papers A and B).

:func:`compress` takes a numpy reference model (:class:`~mor_lqo.deep.models.S4DModel`,
:class:`~mor_lqo.deep.models.LQOModel`), a state dict or a checkpoint path of any layout the adapter
knows (:mod:`mor_lqo.adapters`), reduces every SSM block, writes the reduced systems back into the
layout's own parametrisation (verified by re-extraction: relative impulse-response mismatch ≤ 1e-8 before
the cast to the checkpoint's dtype) and reports orders, h2 errors (infinite and finite horizon) and
parameter counts. Per-block work is a list of picklable tasks run through a
:class:`concurrent.futures.Executor` (:mod:`mor_lqo.deep.executor`). Methods:

``"modal"``
    Exact modal truncation (a subset of the stored modes; exact write-back in every layout). Modes are
    ranked by their data-weighted kernel energy (S4D) or by the output change their removal causes on
    the calibration data (LQO, :func:`lqo_mode_scores`) when calibration inputs are given, else by their
    (finite-horizon) h2 contribution.
``"bt"``, ``"irka"``, ``"tsia"``
    Balanced truncation / IRKA / TSIA of every unit (LQO variants for quadratic outputs) from
    :mod:`mor_lqo.reduction` (infinite-horizon h2 / Gramians), written back through the unit's modal
    form. A real pole costs a stored slot; orders are budgets (a unit whose ROM would store more than
    ``order/2`` modes is reduced to the largest lower order that fits). For LQO
    blocks the reduced quadratic readout is re-fitted h2-optimally in the layout's Hermitian form when
    the projected one has :math:`s^T K s` cross terms (:func:`fit_quadratic`).
``"h2"`` (paper B)
    Per-block h2-optimal reduction. With a known sequence length L (``length`` or ``inputs``) every SISO
    channel is fitted in the **finite-horizon** h2 norm over the L lags the network uses (docs/theory.md
    §2.1, §10.1) — the infinite-horizon norm of trained S4D channels (|λ| up to 0.9995) is dominated by the tail
    beyond L and is the wrong target (8× reduction: 78.9 % accuracy instead of 97.5 %). The fit
    (:func:`fit_finite_horizon`) is variable projection over the poles :math:`e^{-e^\nu + i\theta}`
    (stable, and never slower than the slowest original mode), with ridge-stabilised residues
    (:data:`FIT_RIDGE`), greedy pole insertion from a candidate grid and the original poles,
    Levenberg–Marquardt refinement and one exchange sweep. With calibration ``inputs`` the norm is
    **data weighted**: :math:`\|W_h^{1/2}(g_h - \hat g_h)\|^2` with the lag covariance :math:`W_h` of
    the channel's inputs on the original network (:func:`lag_weights`), i.e. the expected squared SSM
    output error, plus a small identity part (:data:`DATA_RIDGE`); the fit works in Gram form on the
    structured weights (:func:`lag_metric`: sums of convolution Gramians of the inputs, whose bilinear
    forms on exponentials are closed form), never with an L x L matrix. Without a length the
    infinite-horizon :func:`~mor_lqo.reduction.gradient.h2_gradient_batch` is used. MIMO/LQO blocks
    use :func:`~mor_lqo.h2_gradient` (infinite horizon) from the (data-ranked) modal start and keep the
    better of start and result in the finite-horizon error; reduced quadratic readouts are projected
    onto PSD matrices of the layout's rank R (the ``U`` factor).
``"bound"`` (paper A)
    Minimise the output-error bound of :mod:`mor_lqo.deep.bound` over the split of a parameter budget
    across layers: candidate allocations — uniform orders, the greedy minimiser of the bound's first-order
    form (largest decrease per parameter, over finite-horizon candidates of every layer) and, for MIMO/LQO
    layers, the data allocation — are each reduced block by block with the ``"h2"`` data-weighted fit (which
    minimises each layer's injected output error on the calibration trajectories, the leading term of the
    a-posteriori bound), and the candidate with the smallest a-posteriori bound (mean over the calibration
    inputs) is kept (``CompressionResult.allocation``). With the budget fixed, the first-order bound
    :math:`\sum_l w_l e_l` separates over layers, so its joint minimisation over the blocks' parameters is
    the per-layer h2 minimisation; the coupling between layers is the split of the budget. A guard admits
    only candidates whose measured mean logit error on the calibration inputs is at most that of uniform
    orders (the bound is loose for early-layer errors and alone tends to starve the last layers;
    ``options={"error_guard": False}`` ranks by the bound alone). Needs calibration inputs and a reference
    model.

Orders are *real* orders per unit (per channel for S4/S4D, per layer for S5/LRU/LQO), i.e. twice the
number of stored complex modes; the layouts store conjugate pairs, so orders are even. Method options are
checked against :data:`OPTIONS` (:func:`check_options`: an unknown key or a value of the wrong kind
raises). :func:`layer_errors` measures the per-block h2 errors between any two checkpoints of a layout,
e.g. after :func:`mor_lqo.torch.minimise_bound` changed the reduced tensors.
"""

from __future__ import annotations

from .allocation import (  # noqa: F401
    _bound_method,
)
from .api import (  # noqa: F401
    CompressionResult,
    compress,
)
from .budget import (  # noqa: F401
    _check_budget,
    _even_order,
    _layer_params,
    _n,
    _orders_from,
    _param_model,
    _uniform_for_budget,
    cost_full_ok,
    parse_ratio,
)
from .constants import (  # noqa: F401
    _NU_BOUNDS,
    CHECK_LAGS,
    DATA_RIDGE,
    DEFAULT_METHOD,
    DEFAULT_RATIO,
    FIT_RIDGE,
    METHODS,
    WRITEBACK_RTOL,
    CompressionError,
)
from .finite_horizon import (  # noqa: F401
    _basis,
    _candidate_grid,
    _Candidates,
    _insert,
    _lm,
    _powers,
    _to_modes,
    _vp,
    _weighted,
    fit_finite_horizon,
)
from .layer_errors import (  # noqa: F401
    layer_errors,
)
from .options import (  # noqa: F401
    OPTIONS,
    check_options,
)
from .quadratic_fit import (  # noqa: F401
    _cauchy,
    _hermitian_basis,
    _psd_project,
    _rom_to_modes,
    _strip_m,
    fit_quadratic,
    refit_readout,
)
from .tasks import (  # noqa: F401
    _block_tasks,
    _collect,
    _ladder_task,
    _ladder_task_impl,
    _mimo_h2,
    _reduce_task,
    _reduce_task_impl,
    _resolve_executor,
    _single_blas,
    _work,
)
from .unit_modes import (  # noqa: F401
    _is_siso_batch,
    _params,
    _select_by_score,
    _siso_arrays,
    _siso_kernels,
    _unit_errors,
)
from .verify import (  # noqa: F401
    _flat_input,
    _kernels_of,
    _like,
    _quad_response,
    _reference_model,
    _verify_block,
)
from .weights import (  # noqa: F401
    _weighted_mode_scores,
    lag_metric,
    lag_weights,
    lqo_mode_scores,
)

__all__ = [
    "METHODS",
    "DEFAULT_METHOD",
    "DEFAULT_RATIO",
    "CompressionResult",
    "compress",
    "OPTIONS",
    "check_options",
    "layer_errors",
    "parse_ratio",
    "fit_finite_horizon",
    "fit_quadratic",
    "lag_metric",
    "lag_weights",
    "lqo_mode_scores",
    "refit_readout",
]
