"""Torch models in ``benchmarks.reproduce``: the S5 classifier built from the upstream ``s5-pytorch`` layer.

The numpy reference models of :mod:`benchmarks.reproduce` are evaluated by the package's own forward pass;
a model built from upstream torch code is compressed with :func:`mor_lqo.torch.compress` (blocks found by
module class, inputs recorded by hooks, the smaller module of the same classes built and run). The
output-error bound is defined for the reference architectures only (docs/bound.md), so its columns stay
empty here and the ``bound`` method is reported as not applicable.
"""

from __future__ import annotations

import time
from fractions import Fraction

TORCH_MODELS = {"mnist1d_s5_upstream": "s5"}  # reproduce name: family of benchmarks.upstream_families
TORCH_METHODS = ("modal", "bt", "irka", "h2")


class TorchClassifier:
    """A trained torch classifier with the two methods :func:`benchmarks.reproduce.main` calls."""

    def __init__(self, module, ssm_params: int):
        self.module = module
        self._ssm = ssm_params

    def accuracy(self, x, y, batch_size: int = 250) -> float:
        from benchmarks.upstream_families import accuracy

        return accuracy(self.module, x, y) / 100.0

    def num_parameters(self) -> dict:
        from mor_lqo.torch import count_parameters

        return {"ssm": self._ssm, "total": count_parameters(self.module)}


def load_torch_case(name: str, n_test: int | None, n_calib: int) -> dict:
    """The trained upstream model (weights in ``benchmarks/results/upstream/``; trained there if absent),
    MNIST-1D test split and ``n_calib`` training sequences as calibration."""
    import torch

    import mor_lqo.torch as mt
    from benchmarks.upstream_families import STATE, H, load_data, train

    family = TORCH_MODELS[name]
    data = load_data()
    module, _ = train(family, data, 20)
    x, y = data["x_test"], data["y_test"]
    if n_test is not None:
        x, y = x[:n_test], y[:n_test]
    x_cal = data["x"][:n_calib]
    with torch.no_grad():  # SSM parameter count as mor_lqo.torch.compress reports it
        ssm = mt.compress(module, x_cal[:8], ratio="1/2", method="modal").report["ssm_parameters"]["before"]
    desc = (f"MNIST-1D (L = 40), upstream s5-pytorch S5 layers (2 blocks, H = {H[family]}, P = {STATE[family]}) "
            "of benchmarks/upstream_families.py")
    return {"model": TorchClassifier(module, ssm), "x": x, "y": y, "x_cal": x_cal, "family": family, "desc": desc,
            "torch": True}


def run_one_torch(case: dict, method: str, ratio: str, *, acc0: float) -> dict:
    """One CSV row of :mod:`benchmarks.reproduce` for a torch model (bound columns empty)."""
    import mor_lqo.torch as mt

    model = case["model"]
    p0 = model.num_parameters()
    row = {"method": method, "reducer": method, "ratio": ratio, "ssm_params_before": p0["ssm"],
           "total_params_before": p0["total"], "bound_samples": 0, "bound": "", "measured_max": "",
           "bound_violations": 0, "tightness": "", "error": ""}
    if method not in TORCH_METHODS:
        raise ValueError(f"method {method!r} is defined for the reference architectures only (the output-error "
                         "bound of docs/bound.md)")
    t0 = time.perf_counter()
    if Fraction(ratio) == 1:
        acc = acc0
        row.update(ssm_params=p0["ssm"], total_params=p0["total"], orders="")
    else:
        res = mt.compress(model.module, case["x_cal"], ratio=ratio, method=method, executor="serial")
        rep = res.report
        acc = TorchClassifier(res.module, 0).accuracy(case["x"], case["y"])
        row.update(ssm_params=rep["ssm_parameters"]["after"], total_params=rep["parameters"]["after"],
                   orders=" ".join(str(b.get("order_after", "")) for b in rep["blocks"]))
    row["time_s"] = round(time.perf_counter() - t0, 2)
    row["accuracy"] = acc
    row["acc_drop_points"] = round(100.0 * (acc0 - acc), 3)
    row["ssm_frac"] = row["ssm_params"] / row["ssm_params_before"]
    row["total_frac"] = row["total_params"] / row["total_params_before"]
    return row
