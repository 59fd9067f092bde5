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
import torch.nn.functional as F

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


# --------------------------------------------------------------------------- S4 v4 (diag / DPLR)


def param_transform(param, transform="none"):
    if transform == "none":
        return param
    if transform == "exp":
        return torch.exp(param)
    if transform == "relu":
        return F.relu(param) + 1e-4
    if transform == "sigmoid":
        return torch.sigmoid(param)
    if transform == "softplus":
        return F.softplus(param)
    raise NotImplementedError


def log_vandermonde_naive(v, x, L):
    vandermonde_matrix = torch.exp(x.unsqueeze(-1) * torch.arange(L).to(x))
    return 2 * torch.einsum("... n, ... n l -> ... l", v, vandermonde_matrix).real


class SSMKernelDiag(nn.Module):
    """v4 SSMKernelDiag parameters (register_params) and forward (naive Vandermonde)."""

    def __init__(self, d_model, channels=1, d_state=8, n_ssm=None, dt_tie=True, disc="zoh",
                 dt_transform="exp", real_transform="exp", imag_transform="none", seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.H, self.N, self.channels = d_model, d_state // 2, channels
        self.n_ssm = n_ssm if n_ssm is not None else self.H
        self.repeat = self.H // self.n_ssm
        self.disc, self.dt_transform = disc, dt_transform
        self.real_transform, self.imag_transform = real_transform, imag_transform
        S, N, H = self.n_ssm, self.N, self.H
        shape = (H, 1) if dt_tie else (H, N)
        dt = torch.exp(torch.rand(*shape, generator=g) * (math.log(0.3) - math.log(0.01)) + math.log(0.01))
        inv = {"exp": torch.log, "softplus": lambda x: torch.log(torch.expm1(x)), "none": lambda x: x}
        A = -(0.05 + torch.rand(S, N, generator=g)) - 1j * (torch.rand(S, N, generator=g) * 10)
        B = torch.randn(S, N, dtype=torch.cfloat, generator=g)
        C = torch.randn(channels, H, N, dtype=torch.cfloat, generator=g)
        self.inv_dt = nn.Parameter(inv[dt_transform](dt))
        self.C = nn.Parameter(_c2r(C))
        self.B = nn.Parameter(_c2r(B.unsqueeze(0)))
        self.A_real = nn.Parameter(inv[real_transform](-A.real))
        self.A_imag = nn.Parameter(inv[imag_transform](-A.imag))

    def _get_params(self, rate=1.0):
        A = -param_transform(self.A_real, self.real_transform) - 1j * param_transform(
            self.A_imag, self.imag_transform)
        B = _r2c(self.B)
        C = _r2c(self.C)
        dt = param_transform(self.inv_dt, self.dt_transform) * rate
        A = A.repeat(self.repeat, 1)  # 't n -> (v t) n'
        B = B.repeat(1, self.repeat, 1)
        return dt, A, B, C

    def forward(self, L, rate=1.0):
        dt, A, B, C = self._get_params(rate)
        dtA = dt * A
        C = (B[:, None, :, :] * C).view(-1, self.H, self.N)
        if self.disc == "zoh":
            C = C * (torch.exp(dtA) - 1.0) / A
            K = log_vandermonde_naive(C, dtA, L)
        elif self.disc == "bilinear":
            C = C * (1.0 - dtA / 2).reciprocal() * dt
            dA = (1.0 + dtA / 2) / (1.0 - dtA / 2)
            K = log_vandermonde_naive(C, dA.log(), L)
        else:
            raise ValueError(self.disc)
        return K.view(self.channels, self.H, L), None


class SSMKernelDPLR(SSMKernelDiag):
    """v4 DPLR: extra P (rank, S, N, 2) and l_kernel; dense bilinear dA/dB, stored C~ = (I - dA^L)^T C,
    kernel from the truncated generating function at the L-th roots of unity (as upstream)."""

    def __init__(self, d_model, channels=1, d_state=8, rank=1, seed=0, **kw):
        kw["disc"] = "bilinear"
        super().__init__(d_model, channels=channels, d_state=d_state, seed=seed, **kw)
        g = torch.Generator().manual_seed(seed + 100)
        P = 0.3 * torch.randn(rank, self.n_ssm, self.N, dtype=torch.cfloat, generator=g)
        self.P = nn.Parameter(_c2r(P))
        self.register_buffer("l_kernel", torch.tensor(0))

    def _setup_state(self):
        dt, A, B, C = self._get_params()
        P = _r2c(self.P).repeat(1, self.repeat, 1)  # (R H N)
        Af = torch.diag_embed(torch.cat([A, A.conj()], -1))  # (H 2N 2N)
        Pf = torch.cat([P, P.conj()], -1)  # (R H 2N)
        Af = Af - torch.einsum("rhn,rhm->hnm", Pf, Pf.conj())
        Bf = torch.cat([B[0], B[0].conj()], -1)  # (H 2N)
        eye = torch.eye(2 * self.N, dtype=Af.dtype)
        dtc = dt.to(Af.dtype).unsqueeze(-1)  # (H 1 1)
        left = eye - dtc / 2 * Af
        dA = torch.linalg.solve(left, eye + dtc / 2 * Af)
        dB = torch.linalg.solve(left, (dtc[..., 0] * Bf).unsqueeze(-1))[..., 0]
        return dA, dB

    @torch.no_grad()
    def _setup_C(self, L):
        C = _r2c(self.C)
        dA, _ = self._setup_state()
        dA_L = torch.linalg.matrix_power(dA, L)
        C_ = torch.cat([C, C.conj()], -1)
        prod = torch.einsum("h m n, c h n -> c h m", dA_L.transpose(-1, -2), C_)
        C_ = (C_ - prod)[..., : self.N]
        self.C.copy_(_c2r(C_))
        self.l_kernel = self.l_kernel + L

    def forward(self, L, rate=1.0):
        if self.l_kernel.item() == 0:
            self._setup_C(L)
        Lk = self.l_kernel.item()
        dA, dB = self._setup_state()
        C = _r2c(self.C)
        Ct = torch.cat([C, C.conj()], -1)  # (c H 2N)
        omega = torch.exp(torch.tensor(-2j * math.pi / Lk)) ** torch.arange(Lk // 2 + 1)
        eye = torch.eye(2 * self.N, dtype=dA.dtype)
        res = torch.linalg.solve(eye - omega[:, None, None, None] * dA[None],
                                 dB[None, ..., None].expand(omega.numel(), -1, -1, -1))[..., 0]
        k_f = torch.einsum("chn,whn->chw", Ct, res)
        k = torch.fft.irfft(k_f, n=Lk)[..., :L]
        return k, None


class FFTConv(nn.Module):
    """v4 FFTConv: D (channels', H), kernel, bidirectional two-sided kernel (strictly anticausal)."""

    def __init__(self, d_model, channels=1, bidirectional=False, activation="gelu", mode="diag",
                 **kernel_args):
        super().__init__()
        self.d_model, self.bidirectional = d_model, bidirectional
        if activation is not None and activation.startswith("glu"):
            channels *= 2
        self.channels = channels
        self.D = nn.Parameter(torch.randn(channels, d_model))
        if bidirectional:
            channels *= 2
        cls = SSMKernelDPLR if mode in ("dplr", "nplr", "s4") else SSMKernelDiag
        self.kernel = cls(d_model, channels=channels, **kernel_args)

    def ssm_output(self, x):
        """x (B, H, L) -> (B, c, H, L) before flattening / activation."""
        L = x.size(-1)
        k, _ = self.kernel(L=L)
        if self.bidirectional:
            k0, k1 = k.view(2, -1, *k.shape[1:])  # '(s c) h l -> s c h l'
            k = F.pad(k0, (0, L)) + F.pad(k1.flip(-1), (L, 0))
        k_f = torch.fft.rfft(k, n=2 * L)
        x_f = torch.fft.rfft(x, n=2 * L)
        y = torch.fft.irfft(torch.einsum("bhl,chl->bchl", x_f, k_f), n=2 * L)[..., :L]
        return y + torch.einsum("bhl,ch->bchl", x, self.D)


class S4Block(nn.Module):
    """v4 S4Block with the FFTConv inner layer (keys layer.*, output_linear.0.*)."""

    def __init__(self, d_model, **layer_args):
        super().__init__()
        self.layer = FFTConv(d_model, **layer_args)
        self.output_linear = nn.Sequential(nn.Linear(d_model * self.layer.channels, 2 * d_model),
                                           nn.GLU(dim=-1))


class S4v3(nn.Module):
    """v3.0.0 standalone S4(mode='diag') names: kernel.kernel.{log_dt, inv_A_real, A_imag, A, B, C}, D."""

    def __init__(self, d_model, d_state=8, channels=1, bidirectional=False, n_ssm=None, seed=0,
                 disc="bilinear"):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        H, N = d_model, d_state // 2
        S = n_ssm or H
        self.H, self.N, self.S, self.disc, self.bidirectional = H, N, S, disc, bidirectional
        self.D = nn.Parameter(torch.randn(channels, H, generator=g))
        ck = channels * (2 if bidirectional else 1)
        self.kernel = nn.Module()
        self.kernel.kernel = nn.Module()
        kk = self.kernel.kernel
        kk.log_dt = nn.Parameter(torch.log(0.01 + 0.3 * torch.rand(H, generator=g)))
        kk.inv_A_real = nn.Parameter(torch.log(0.05 + torch.rand(S, N, generator=g)))
        kk.A_imag = nn.Parameter(torch.randn(S, N, generator=g) * 8)
        w = -torch.exp(kk.inv_A_real.detach()) + 1j * kk.A_imag.detach()
        kk.A = nn.Parameter(_c2r(w))  # vestigial
        kk.B = nn.Parameter(_c2r(torch.randn(S, N, dtype=torch.cfloat, generator=g)))
        kk.C = nn.Parameter(_c2r(torch.randn(ck, H, N, dtype=torch.cfloat, generator=g)))

    def kernel_k(self, L):
        kk = self.kernel.kernel
        dt = torch.exp(kk.log_dt).unsqueeze(-1)
        A = (-torch.exp(kk.inv_A_real) + 1j * kk.A_imag).repeat(self.H // self.S, 1)
        B = _r2c(kk.B).repeat(self.H // self.S, 1)
        C = _r2c(kk.C) * B
        dtA = dt * A
        if self.disc == "bilinear":
            C = C * (1.0 - dtA / 2).reciprocal() * dt
            dA = (1.0 + dtA / 2) / (1.0 - dtA / 2)
        else:
            C = C * (torch.exp(dtA) - 1.0) / A
            dA = torch.exp(dtA)
        return log_vandermonde_naive(C, dA.log(), L)

    def ssm_output(self, x):
        L = x.size(-1)
        k = self.kernel_k(L)
        if self.bidirectional:
            k0, k1 = k.view(2, -1, *k.shape[1:])
            k = F.pad(k0, (0, L)) + F.pad(k1.flip(-1), (L, 0))
        k_f = torch.fft.rfft(k, n=2 * L)
        x_f = torch.fft.rfft(x, n=2 * L)
        y = torch.fft.irfft(torch.einsum("bhl,chl->bchl", x_f, k_f), n=2 * L)[..., :L]
        return y + torch.einsum("bhl,ch->bchl", x, self.D)


# --------------------------------------------------------------------------- DSS


class DSS(nn.Module):
    """ag1988/dss standalone names: D, kernel.log_dt (H, 2), kernel.Lambda (N, 2) | Lambda_log_neg_re +
    Lambda_im, kernel.W (c, H, N, 2); kernel Re sum W q lam^l (softmax uses the S4 'dss' code path)."""

    def __init__(self, d_model, d_state=8, version="softmax", bidirectional=False, seed=0,
                 max_real_Lambda=1e-4, positive_real=False):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        H, N = d_model, d_state
        self.version, self.bidirectional, self.max_real_Lambda = version, bidirectional, max_real_Lambda
        self.D = nn.Parameter(torch.randn(1, H, generator=g))
        self.kernel = nn.Module()
        k = self.kernel
        k.log_dt = nn.Parameter(torch.log(0.01 + 0.2 * torch.rand(H, 2, generator=g)))
        re = -(0.05 + torch.rand(N, generator=g))
        if positive_real:
            re[0] = 0.3
        im = torch.rand(N, generator=g) * 20
        if version in ("softmax", "clip"):
            k.Lambda = nn.Parameter(torch.stack([re, im], -1))
        else:
            k.Lambda_log_neg_re = nn.Parameter(torch.log(-re))
            k.Lambda_im = nn.Parameter(im)
        ck = 2 if bidirectional else 1
        k.W = nn.Parameter(_c2r(torch.randn(ck, H, N, dtype=torch.cfloat, generator=g)))

    def _Lambda(self):
        k = self.kernel
        if self.version in ("softmax", "clip"):
            re, im = k.Lambda[:, 0], k.Lambda[:, 1]
            if self.version == "clip":
                re = torch.clamp(re, max=self.max_real_Lambda)
            return torch.complex(re, im)
        return torch.complex(-torch.exp(k.Lambda_log_neg_re), k.Lambda_im)

    def kernel_k(self, L):
        k = self.kernel
        Lam = self._Lambda()  # (N)
        dt = torch.exp(k.log_dt)  # (H, 2)
        dtA = torch.complex(dt[:, :1] * Lam.real, dt[:, 1:] * Lam.imag)  # (H N)
        W = _r2c(k.W)
        if self.version == "softmax":
            P = dtA.unsqueeze(-1) * torch.arange(L)
            A_gt_0 = Lam.real > 0
            if A_gt_0.any():
                P = P - (dtA * (A_gt_0 * (L - 1))).unsqueeze(-1)
            S = P.exp()
            dtA_neg = dtA * (1 - 2 * A_gt_0)
            num = dtA_neg.exp() - 1
            den = (dtA_neg * L).exp() - 1
            x = den * Lam
            r = x.conj() / (x * x.conj() + 1e-7)
            C = W * num * r
            return torch.einsum("chn,hnl->chl", C, S).real
        C = W * (dtA.exp() - 1) / Lam
        return torch.einsum("chn,hnl->chl", C, (dtA.unsqueeze(-1) * torch.arange(L)).exp()).real

    def ssm_output(self, x):
        L = x.size(-1)
        k = self.kernel_k(L)
        if self.bidirectional:
            k0, k1 = k.view(2, -1, *k.shape[1:])
            k = F.pad(k0, (0, L)) + F.pad(k1.flip(-1), (L, 0))
        k_f = torch.fft.rfft(k, n=2 * L)
        x_f = torch.fft.rfft(x, n=2 * L)
        y = torch.fft.irfft(torch.einsum("bhl,chl->bchl", x_f, k_f), n=2 * L)[..., :L]
        return y + torch.einsum("bhl,ch->bchl", x, self.D)


# --------------------------------------------------------------------------- Mamba1 / Mamba2


class MambaMixer(nn.Module):
    """Mamba1 mixer names (mamba_ssm / transformers) with a sequential reference selective scan."""

    def __init__(self, d_model=8, d_state=6, expand=2, dt_rank=2, d_conv=4):
        super().__init__()
        di = expand * d_model
        self.d_inner, self.d_state, self.dt_rank = di, d_state, dt_rank
        self.in_proj = nn.Linear(d_model, 2 * di, bias=False)
        self.conv1d = nn.Conv1d(di, di, d_conv, groups=di, padding=d_conv - 1)
        self.x_proj = nn.Linear(di, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, di)
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(di, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(di))
        self.out_proj = nn.Linear(di, d_model, bias=False)

    def forward(self, u):  # (B, L, d_model)
        L = u.shape[1]
        x, z = self.in_proj(u).chunk(2, dim=-1)
        x = F.silu(self.conv1d(x.transpose(1, 2))[..., :L]).transpose(1, 2)
        dbc = self.x_proj(x)
        dt, Bt, Ct = dbc.split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(self.dt_proj(dt))  # (B, L, di)
        A = -torch.exp(self.A_log)  # (di, N)
        h = torch.zeros(u.shape[0], self.d_inner, self.d_state)
        ys = []
        for t in range(L):
            h = torch.exp(dt[:, t, :, None] * A) * h + dt[:, t, :, None] * Bt[:, t, None, :] * x[:, t, :, None]
            ys.append((h * Ct[:, t, None, :]).sum(-1) + self.D * x[:, t])
        y = torch.stack(ys, 1) * F.silu(z)
        return self.out_proj(y)


class Mamba2Mixer(nn.Module):
    """Mamba2 mixer names with a sequential reference scan (n_groups G, heads of size headdim)."""

    def __init__(self, d_model=8, d_state=6, expand=2, headdim=4, n_groups=2, d_conv=4):
        super().__init__()
        di = expand * d_model
        self.d_inner, self.N, self.G, self.P = di, d_state, n_groups, headdim
        self.nheads = di // headdim
        conv_dim = di + 2 * n_groups * d_state
        self.in_proj = nn.Linear(d_model, 2 * di + 2 * n_groups * d_state + self.nheads, bias=False)
        self.conv1d = nn.Conv1d(conv_dim, conv_dim, d_conv, groups=conv_dim, padding=d_conv - 1)
        self.dt_bias = nn.Parameter(torch.rand(self.nheads) - 2)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, self.nheads + 1, dtype=torch.float32)))
        self.D = nn.Parameter(torch.ones(self.nheads))
        self.norm = nn.Module()
        self.norm.weight = nn.Parameter(torch.ones(di))
        self.out_proj = nn.Linear(di, d_model, bias=False)

    def forward(self, u):
        Bsz, L, _ = u.shape
        di, N, G, P, nh = self.d_inner, self.N, self.G, self.P, self.nheads
        zxbcdt = self.in_proj(u)
        z, xBC, dt = zxbcdt.split([di, di + 2 * G * N, nh], dim=-1)
        xBC = F.silu(self.conv1d(xBC.transpose(1, 2))[..., :L]).transpose(1, 2)
        x, Bt, Ct = xBC.split([di, G * N, G * N], dim=-1)
        x = x.view(Bsz, L, nh, P)
        Bt = Bt.view(Bsz, L, G, N).repeat_interleave(nh // G, dim=2)
        Ct = Ct.view(Bsz, L, G, N).repeat_interleave(nh // G, dim=2)
        dt = F.softplus(dt + self.dt_bias)  # (B, L, nh)
        A = -torch.exp(self.A_log)
        h = torch.zeros(Bsz, nh, P, N)
        ys = []
        for t in range(L):
            h = torch.exp(dt[:, t, :, None, None] * A[:, None, None]) * h \
                + dt[:, t, :, None, None] * x[:, t, :, :, None] * Bt[:, t, :, None, :]
            ys.append((h * Ct[:, t, :, None, :]).sum(-1) + self.D[:, None] * x[:, t])
        y = torch.stack(ys, 1).reshape(Bsz, L, di)
        y = y * F.silu(z)
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + 1e-5) * self.norm.weight
        return self.out_proj(y)
