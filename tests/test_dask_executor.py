"""Scale-out on a dask.distributed cluster (a LocalCluster on loopback): the same numbers as a serial run.

Oracle: the serial in-process run of the same compression; every array of the written checkpoint must
be bitwise equal (each task pins BLAS to one thread, so the arithmetic is identical wherever it runs).
"""

from __future__ import annotations

import numpy as np
import pytest
from deep_builders import s4d_sd

from mor_lqo.adapters import save
from mor_lqo.cli import EXIT_OK, EXIT_USAGE, main
from mor_lqo.deep import read_safetensors

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as lc:
        yield lc


@pytest.fixture
def ckpt(tmp_path):
    return save(s4d_sd(np.random.default_rng(7), H=4, M=(8, 6)), tmp_path / "model.safetensors")


@pytest.mark.parametrize("method", ["h2", "bt"])
def test_cli_on_a_cluster_matches_the_serial_run(cluster, ckpt, tmp_path, method):
    common = ["compress", str(ckpt), "--method", method, "--order", "4", "--length", "32", "--no-progress",
              "--no-plot", "--quiet"]
    assert main([*common, "--executor", "serial", "--out", str(tmp_path / "serial")]) == EXIT_OK
    assert main([*common, "--scheduler", cluster.scheduler_address, "--out", str(tmp_path / "dask")]) == EXIT_OK
    a, _ = read_safetensors(tmp_path / "serial" / "model_compressed.safetensors")
    b, _ = read_safetensors(tmp_path / "dask" / "model_compressed.safetensors")
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_python_api_takes_the_cluster_executor(cluster, ckpt):
    from mor_lqo.deep import compress

    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        res = compress(str(ckpt), method="h2", order=4, length=32, executor=client.get_executor(), progress=False)
    ref = compress(str(ckpt), method="h2", order=4, length=32, executor="serial", progress=False)
    for k in ref.state_dict:
        np.testing.assert_array_equal(np.asarray(res.state_dict[k]), np.asarray(ref.state_dict[k]), err_msg=k)


def test_scheduler_errors_are_one_line(ckpt, tmp_path, capsys):
    assert main(["compress", str(ckpt), "--scheduler", "tcp://127.0.0.1:9", "--executor", "serial",
                 "--out", str(tmp_path / "o")]) == EXIT_USAGE
    assert "exclusive" in capsys.readouterr().err
    rc = main(["compress", str(ckpt), "--order", "4", "--scheduler", "tcp://127.0.0.1:9", "--out", str(tmp_path / "o"),
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "cannot reach the dask scheduler" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_compress_takes_a_client_directly(cluster, ckpt):
    from mor_lqo.deep import compress

    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        res = compress(str(ckpt), method="bt", order=4, executor=client, progress=False)
    ref = compress(str(ckpt), method="bt", order=4, executor="serial", progress=False)
    for k in ref.state_dict:
        np.testing.assert_array_equal(np.asarray(res.state_dict[k]), np.asarray(ref.state_dict[k]), err_msg=k)
