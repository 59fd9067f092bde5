r"""PyTorch training twins of the reference Deep-SSM models (optional ``torch`` extra).

The state-dict keys and shapes are *identical* to those read by :class:`mor_lqo.deep.models.S4DModel`
and :class:`mor_lqo.deep.models.LQOModel` (see :mod:`mor_lqo.deep.models` for the layouts and
equations). Nothing in ``mor_lqo`` imports this module at import time; import it explicitly.

* :class:`S4Model` / :class:`S4D` / :class:`S4DKernel` reproduce state-spaces/s4 ``models/s4/s4d.py``
  and ``example.py`` (FFT convolution, GELU, Conv1d(H→2H, k=1) + GLU, residual, post-LayerNorm,
  mean pool, decoder), with the upstream initialisation (S4D-Lin: log_A_real = log 0.5,
  A_imag = πn, log dt ~ U[log 1e-3, log 1e-1], C ~ CN(0, 2), D ~ N(0, 1)). Dropout is channel
  dropout (``nn.Dropout1d``) and is inactive in ``eval()``.
* :class:`LQOModel` / :class:`LQOLayer` / :class:`LQOSSM`: S5-style MIMO diagonal blocks with the
  exact LQO readout :math:`y_{k,j} = \mathrm{Re}(C_j x_k) + \|U_j x_k\|^2 + D_j u_{k,j}`, run as a plain
  loop over time (MNIST-1D has L = 40), no activation, Linear(H→H), residual, post-LayerNorm.

SSM tensors carry an ``_optim`` attribute ``{"weight_decay": 0.0, "lr": lr}`` as upstream, used by
:func:`setup_optimizer`.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

__all__ = [
    "S4DKernel",
    "S4D",
    "S4Model",
    "LQOSSM",
    "LQOLayer",
    "LQOModel",
    "setup_optimizer",
    "state_dict_to_numpy",
]


def _register(module: nn.Module, name: str, tensor: torch.Tensor, lr: float | None) -> None:
    """Register a tensor with its own learning rate and no weight decay (buffer if lr == 0)."""
    if lr == 0.0:
        module.register_buffer(name, tensor)
    else:
        module.register_parameter(name, nn.Parameter(tensor))
        optim = {"weight_decay": 0.0}
        if lr is not None:
            optim["lr"] = lr
        getattr(module, name)._optim = optim


# ---------------------------------------------------------------------------------------------
# S4D (state-spaces/s4 models/s4/s4d.py)
# ---------------------------------------------------------------------------------------------
class S4DKernel(nn.Module):
    r"""Diagonal SSM convolution kernel.

    :math:`K_h[l] = 2\,\mathrm{Re}\sum_n C_{hn}\frac{e^{\Delta_h A_{hn}}-1}{A_{hn}}e^{l\Delta_h A_{hn}}`.
    """

    def __init__(self, d_model: int, N: int = 64, dt_min: float = 0.001, dt_max: float = 0.1, lr=None):
        super().__init__()
        H = d_model
        log_dt = torch.rand(H) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        C = torch.randn(H, N // 2, dtype=torch.cfloat)
        self.C = nn.Parameter(torch.view_as_real(C))
        _register(self, "log_dt", log_dt, lr)
        log_A_real = torch.log(0.5 * torch.ones(H, N // 2))
        A_imag = math.pi * torch.arange(N // 2, dtype=torch.float32).repeat(H, 1)
        _register(self, "log_A_real", log_A_real, lr)
        _register(self, "A_imag", A_imag, lr)

    def forward(self, L: int) -> torch.Tensor:
        """Kernel of length L, shape (H, L)."""
        dt = torch.exp(self.log_dt)  # (H)
        C = torch.view_as_complex(self.C)  # (H, M)
        A = -torch.exp(self.log_A_real) + 1j * self.A_imag  # (H, M)
        dtA = A * dt.unsqueeze(-1)
        K = dtA.unsqueeze(-1) * torch.arange(L, device=A.device)  # (H, M, L)
        C = C * (torch.exp(dtA) - 1.0) / A
        return 2 * torch.einsum("hn,hnl->hl", C, torch.exp(K)).real


class S4D(nn.Module):
    """S4D layer: FFT conv + D u → GELU → dropout → Conv1d(H, 2H, 1) → GLU. Input/output (B, H, L)."""

    def __init__(self, d_model: int, d_state: int = 64, dropout: float = 0.0, transposed: bool = True, **kernel_args):
        super().__init__()
        self.h = d_model
        self.n = d_state
        self.d_output = self.h
        self.transposed = transposed
        self.D = nn.Parameter(torch.randn(self.h))
        self.kernel = S4DKernel(self.h, N=self.n, **kernel_args)
        self.activation = nn.GELU()
        self.dropout = nn.Dropout1d(dropout) if dropout > 0.0 else nn.Identity()
        self.output_linear = nn.Sequential(nn.Conv1d(self.h, 2 * self.h, kernel_size=1), nn.GLU(dim=-2))

    def ssm(self, u: torch.Tensor) -> torch.Tensor:
        """The linear SSM part only: causal conv + D u, (B, H, L) -> (B, H, L)."""
        L = u.size(-1)
        k = self.kernel(L=L)
        k_f = torch.fft.rfft(k, n=2 * L)
        u_f = torch.fft.rfft(u, n=2 * L)
        y = torch.fft.irfft(u_f * k_f, n=2 * L)[..., :L]
        return y + u * self.D.unsqueeze(-1)

    def forward(self, u: torch.Tensor, **kwargs):
        if not self.transposed:
            u = u.transpose(-1, -2)
        y = self.ssm(u)
        y = self.dropout(self.activation(y))
        y = self.output_linear(y)
        if not self.transposed:
            y = y.transpose(-1, -2)
        return y, None


class S4Model(nn.Module):
    """``S4Model`` of state-spaces/s4 ``example.py``.

    encoder → [S4D, dropout, residual, LayerNorm] × n_layers → mean over time → decoder.
    """

    def __init__(
        self,
        d_input: int,
        d_output: int = 10,
        d_model: int = 256,
        n_layers: int = 4,
        dropout: float = 0.2,
        prenorm: bool = False,
        d_state: int = 64,
        lr: float | None = 0.001,
        **kernel_args,
    ):
        super().__init__()
        self.prenorm = prenorm
        self.encoder = nn.Linear(d_input, d_model)
        self.s4_layers = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.dropouts = nn.ModuleList()
        for _ in range(n_layers):
            self.s4_layers.append(S4D(d_model, d_state=d_state, dropout=dropout, transposed=True, lr=lr, **kernel_args))
            self.norms.append(nn.LayerNorm(d_model))
            self.dropouts.append(nn.Dropout1d(dropout) if dropout > 0 else nn.Identity())
        self.decoder = nn.Linear(d_model, d_output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, L, d_input) (or (B, L) when d_input = 1) -> logits (B, d_output)."""
        if x.dim() == 2:
            x = x.unsqueeze(-1)
        x = self.encoder(x)  # (B, L, H)
        x = x.transpose(-1, -2)  # (B, H, L)
        for layer, norm, dropout in zip(self.s4_layers, self.norms, self.dropouts):
            z = x
            if self.prenorm:
                z = norm(z.transpose(-1, -2)).transpose(-1, -2)
            z, _ = layer(z)
            z = dropout(z)
            x = z + x
            if not self.prenorm:
                x = norm(x.transpose(-1, -2)).transpose(-1, -2)
        x = x.transpose(-1, -2).mean(dim=1)
        return self.decoder(x)


# ---------------------------------------------------------------------------------------------
# LQO Deep SSM
# ---------------------------------------------------------------------------------------------
class LQOSSM(nn.Module):
    r"""MIMO diagonal LQO block: :math:`x_k = \bar\Lambda x_{k-1} + \bar B u_k`,
    :math:`y_{k,j} = \mathrm{Re}(C_j x_k) + \|U_j x_k\|^2 + D_j u_{k,j}` (ZOH, shared step :math:`\Delta`).

    Initialisation: S4D-Lin eigenvalues :math:`\Lambda_n = -\tfrac12 + i\pi n`, log Δ ~ U[log dt_min, log dt_max]
    (one Δ per layer; the default range [0.01, 0.1] suits L ≈ 40: with [0.001, 0.1] a layer may draw
    Δ ≈ 0.002, making all modes near-integrators with |Λ̄| ≈ 0.999 that train slowly),
    B ~ CN(0, 1/H), C ~ CN(0, 1/P)·c_scale, U ~ CN(0, 1/P)·u_scale, D ~ N(0, 1).

    ``quad="M"`` stores the full Hermitian :math:`M_j` as ``M (H, P, P, 2)`` instead of the factor ``U``
    (readout :math:`\mathrm{Re}(x^H \tfrac12(M_j + M_j^H) x)`, initialised at :math:`U_j^H U_j`). Not used for
    training; it lets reduced state dicts whose :math:`\hat M_j` has no rank-R PSD factor load strictly.
    """

    def __init__(
        self,
        d_model: int,
        n_modes: int = 64,
        rank: int = 2,
        dt_min: float = 0.01,
        dt_max: float = 0.1,
        c_scale: float = 1.0,
        u_scale: float = 1.0,
        lr=None,
        quad: str = "U",
    ):
        super().__init__()
        H, P, R = d_model, n_modes, rank
        _register(self, "log_A_real", torch.log(0.5 * torch.ones(P)), lr)
        _register(self, "A_imag", math.pi * torch.arange(P, dtype=torch.float32), lr)
        log_dt = torch.rand(1) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        _register(self, "log_dt", log_dt, lr)
        B = torch.randn(P, H, dtype=torch.cfloat) / math.sqrt(H)
        C = torch.randn(H, P, dtype=torch.cfloat) * (c_scale / math.sqrt(P))
        U = torch.randn(H, R, P, dtype=torch.cfloat) * (u_scale / math.sqrt(P))
        self.B = nn.Parameter(torch.view_as_real(B))
        self.C = nn.Parameter(torch.view_as_real(C))
        if quad == "U":
            self.U = nn.Parameter(torch.view_as_real(U))
        elif quad == "M":
            self.M = nn.Parameter(torch.view_as_real(torch.einsum("hrp,hrq->hpq", U.conj(), U).contiguous()))
        else:
            raise ValueError(f"quad must be 'U' or 'M', got {quad!r}")
        self.quad = quad
        self.D = nn.Parameter(torch.randn(H))

    def discrete(self):
        """(Λ̄ (P,), B̄ (P, H)) complex."""
        lam = -torch.exp(self.log_A_real) + 1j * self.A_imag
        dt = torch.exp(self.log_dt)
        lam_bar = torch.exp(dt * lam)
        B_bar = ((lam_bar - 1.0) / lam).unsqueeze(-1) * torch.view_as_complex(self.B)
        return lam_bar, B_bar

    def states(self, u: torch.Tensor) -> torch.Tensor:
        """(B, L, H) real -> (B, L, P) complex, x before the sequence = 0."""
        lam_bar, B_bar = self.discrete()
        bu = u.to(B_bar.dtype) @ B_bar.transpose(0, 1)  # (B, L, P)
        xs = []
        x = torch.zeros_like(bu[:, 0])
        for k in range(u.shape[1]):
            x = lam_bar * x + bu[:, k]
            xs.append(x)
        return torch.stack(xs, dim=1)

    def forward(self, u: torch.Tensor, return_parts: bool = False):
        """(B, L, H) -> (B, L, H); with ``return_parts`` also (linear incl. D u, quadratic)."""
        x = self.states(u)
        C = torch.view_as_complex(self.C)
        lin = (x @ C.transpose(0, 1)).real + u * self.D
        if self.quad == "U":
            U = torch.view_as_complex(self.U)
            ux = (x @ U.reshape(-1, U.shape[-1]).transpose(0, 1)).reshape(*x.shape[:2], *U.shape[:2])
            quad = (ux.real**2 + ux.imag**2).sum(-1)
        else:
            M = torch.view_as_complex(self.M)
            M = 0.5 * (M + M.conj().transpose(-1, -2))
            quad = torch.einsum("blp,hpq,blq->blh", x.conj(), M, x).real
        y = lin + quad
        return (y, lin, quad) if return_parts else y


class LQOLayer(nn.Module):
    """u -> LayerNorm(u + dropout(out(LQOSSM(u)))) — no activation; (B, L, H)."""

    def __init__(self, d_model: int, n_modes: int = 64, rank: int = 2, dropout: float = 0.0, **ssm_args):
        super().__init__()
        self.ssm = LQOSSM(d_model, n_modes, rank, **ssm_args)
        self.out = nn.Linear(d_model, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.norm(u + self.dropout(self.out(self.ssm(u))))


class LQOModel(nn.Module):
    """encoder → LQOLayer × n → mean over time → decoder."""

    def __init__(
        self,
        d_input: int = 1,
        d_output: int = 10,
        d_model: int = 64,
        n_layers: int = 2,
        n_modes: int = 64,
        rank: int = 2,
        dropout: float = 0.0,
        lr: float | None = 0.001,
        **ssm_args,
    ):
        super().__init__()
        self.encoder = nn.Linear(d_input, d_model)
        self.layers = nn.ModuleList(
            [LQOLayer(d_model, n_modes, rank, dropout=dropout, lr=lr, **ssm_args) for _ in range(n_layers)]
        )
        self.decoder = nn.Linear(d_model, d_output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, L, d_input) (or (B, L) when d_input = 1) -> logits (B, d_output)."""
        if x.dim() == 2:
            x = x.unsqueeze(-1)
        h = self.encoder(x)
        for layer in self.layers:
            h = layer(h)
        return self.decoder(h.mean(dim=1))


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def setup_optimizer(model: nn.Module, lr: float, weight_decay: float, epochs: int):
    """AdamW + cosine schedule as upstream ``example.py``: tensors with ``_optim`` get their own group."""
    all_parameters = list(model.parameters())
    params = [p for p in all_parameters if not hasattr(p, "_optim")]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    hps = [p._optim for p in all_parameters if hasattr(p, "_optim")]
    hps = [dict(s) for s in sorted({frozenset(hp.items()) for hp in hps}, key=lambda s: sorted(s))]
    for hp in hps:
        group = [p for p in all_parameters if getattr(p, "_optim", None) == hp]
        optimizer.add_param_group({"params": group, **hp})
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    return optimizer, scheduler


def state_dict_to_numpy(model: nn.Module) -> dict:
    """``{key: float32 ndarray}`` of a module's state dict (contiguous copies)."""
    sd = model.state_dict()
    return {k: v.detach().cpu().contiguous().numpy().astype("float32", copy=True) for k, v in sd.items()}
