"""The adapter works on numpy state dicts without importing torch."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import sys
import numpy as np
import mor_lqo.adapters as a
assert "torch" not in sys.modules
rng = np.random.default_rng(0)
H, N, p = 3, 4, "layers.0.seq."
sd = {p + "nu_log": np.log(-np.log(rng.uniform(0.5, 0.9, N))),
      p + "theta_log": np.log(rng.uniform(0.1, 6, N)), p + "gamma_log": np.zeros(N),
      p + "B_re": rng.standard_normal((N, H)), p + "B_im": rng.standard_normal((N, H)),
      p + "C_re": rng.standard_normal((H, N)), p + "C_im": rng.standard_normal((H, N)),
      p + "D": np.ones(H)}
(b,) = a.extract(sd)
new, rep = a.reduce_state_dict(sd, order=4)
assert new[p + "B_re"].shape == (2, H)
a.save(new, sys.argv[1])
assert set(a.load(sys.argv[1])) == set(sd)
assert "torch" not in sys.modules, "torch was imported"
"""


def test_numpy_only_path_never_imports_torch(tmp_path):
    out = tmp_path / "x.npz"
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
