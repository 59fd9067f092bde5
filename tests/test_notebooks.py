"""Execute every notebook in ``notebooks/`` (nbclient) and fail on any cell error.

The notebooks carry their own assertions (independent checks of h2 norms and errors). Each must run
in well under a minute on one core; together they stay within a 2-minute budget.
``pytest --nbmake notebooks/`` runs the same notebooks through nbmake.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))
TIMEOUT_PER_CELL = 240


def _run(path: Path) -> tuple[float, list]:
    nb = nbformat.read(path, as_version=4)
    env_threads = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    for k in env_threads:  # the kernel inherits these: keep BLAS single-threaded on shared machines
        os.environ.setdefault(k, "1")
    try:
        client = nbclient.NotebookClient(
            nb,
            timeout=TIMEOUT_PER_CELL,
            kernel_name="python3",
            resources={"metadata": {"path": str(NB_DIR)}},
        )
        t0 = time.perf_counter()
        client.execute()
        return time.perf_counter() - t0, nb.cells
    finally:
        for k, v in env_threads.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_notebooks_exist():
    names = {p.name for p in NOTEBOOKS}
    assert {"01_quickstart_mor.ipynb", "02_lqo_advecdiff.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path):
    elapsed, cells = _run(path)
    outputs = [o for c in cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not any(o.get("output_type") == "error" for o in outputs)
    # every notebook produces at least one figure
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name} made no plot"
    print(f"{path.name}: {elapsed:.1f} s")  # timing is reported, not asserted (shared CI machines)
