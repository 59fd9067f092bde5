"""Small torch modules with the upstream key names and formulas (test fixtures, not library code).

* ``S4DKernel`` / ``S4D`` / ``S4Model``: state-spaces/s4 ``models/s4/s4d.py`` and ``example.py``.
* ``SSMKernelDiag`` / ``SSMKernelDPLR`` / ``FFTConv`` / ``S4Block``: state-spaces/s4 v4 ``models/s4/s4.py``
  (naive Vandermonde / dense DPLR paths).
* ``S4v3`` (``kernel.kernel.*`` names, v3 diag parametrisation), ``DSS`` (ag1988/dss standalone),
  ``MambaMixer`` (Mamba1 selective scan, reference loop).

Only the parts that define the parameters and the linear SSM map are reproduced; each module exposes
``ssm_output(u)`` = the pre-activation output (convolution + D u) on input (B, H, L).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

_c2r = torch.view_as_real
_r2c = torch.view_as_complex


def _register(module, name, tensor, lr=None):
    if lr == 0.0:
        module.register_buffer(name, tensor)
    else:
        module.register_parameter(name, nn.Parameter(tensor))


# --------------------------------------------------------------------------- S4D minimal


class S4DKernel(nn.Module):
    def __init__(self, d_model, N=64, dt_min=0.001, dt_max=0.1, lr=None):
        super().__init__()
        H = d_model
        log_dt = torch.rand(H) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        C = torch.randn(H, N // 2, dtype=torch.cfloat)
        self.C = nn.Parameter(torch.view_as_real(C))
        _register(self, "log_dt", log_dt, lr)
        log_A_real = torch.log(0.5 * torch.ones(H, N // 2))
        A_imag = math.pi * torch.arange(N // 2).repeat(H, 1).float()
        _register(self, "log_A_real", log_A_real, lr)
        _register(self, "A_imag", A_imag, lr)

    def forward(self, L):
        dt = torch.exp(self.log_dt)
        C = torch.view_as_complex(self.C)
        A = -torch.exp(self.log_A_real) + 1j * self.A_imag
        dtA = A * dt.unsqueeze(-1)
        K = dtA.unsqueeze(-1) * torch.arange(L, device=A.device)
        C = C * (torch.exp(dtA) - 1.0) / A
        K = 2 * torch.einsum("hn, hnl -> hl", C, torch.exp(K)).real
        return K


class S4D(nn.Module):
    def __init__(self, d_model, d_state=64, dropout=0.0, transposed=True, **kernel_args):
        super().__init__()
        self.h = d_model
        self.n = d_state
        self.transposed = transposed
        self.D = nn.Parameter(torch.randn(self.h))
        self.kernel = S4DKernel(self.h, N=self.n, **kernel_args)
        self.activation = nn.GELU()
        self.dropout = nn.Identity()
        self.output_linear = nn.Sequential(nn.Conv1d(self.h, 2 * self.h, kernel_size=1), nn.GLU(dim=-2))

    def ssm_output(self, u):
        L = u.size(-1)
        k = self.kernel(L=L)
        k_f = torch.fft.rfft(k, n=2 * L)
        u_f = torch.fft.rfft(u, n=2 * L)
        y = torch.fft.irfft(u_f * k_f, n=2 * L)[..., :L]
        return y + u * self.D.unsqueeze(-1)

    def forward(self, u, **kwargs):
        if not self.transposed:
            u = u.transpose(-1, -2)
        y = self.ssm_output(u)
        y = self.dropout(self.activation(y))
        y = self.output_linear(y)
        if not self.transposed:
            y = y.transpose(-1, -2)
        return y, None


class S4Model(nn.Module):
    """example.py model: encoder, s4_layers, norms, dropouts, decoder."""

    def __init__(self, d_input, d_output=10, d_model=8, n_layers=2, d_state=64, dropout=0.0,
                 prenorm=False, lr=None):
        super().__init__()
        self.prenorm = prenorm
        self.encoder = nn.Linear(d_input, d_model)
        self.s4_layers = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.dropouts = nn.ModuleList()
        for _ in range(n_layers):
            self.s4_layers.append(S4D(d_model, d_state=d_state, dropout=dropout, transposed=True,
                                      lr=lr))
            self.norms.append(nn.LayerNorm(d_model))
            self.dropouts.append(nn.Identity())
        self.decoder = nn.Linear(d_model, d_output)

    def forward(self, x):
        x = self.encoder(x).transpose(-1, -2)
        for layer, norm, dropout in zip(self.s4_layers, self.norms, self.dropouts):
            z = x
            z, _ = layer(z)
            x = norm((dropout(z) + x).transpose(-1, -2)).transpose(-1, -2)
        x = x.transpose(-1, -2).mean(dim=1)
        return self.decoder(x)
