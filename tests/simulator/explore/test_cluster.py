"""`--cluster`: the same points and values from a real Dask cluster (a LocalCluster of two
worker processes on loopback, started and closed here) as from the local process pool."""

import pytest
from distributed import LocalCluster

from sparseflow.cli import main
from sparseflow.ir.errors import InputError
from sparseflow.simulator.explore import load_space, run_sweep


def results(records: list[dict]) -> dict[str, tuple]:
    return {r["id"]: (r["status"], r["reason"], r["metrics"], r["objectives"]) for r in records}


def test_dask_cluster_gives_the_local_pool_results(tiny_space, tmp_path):
    space = load_space(tiny_space)
    local = run_sweep(space, tmp_path / "local", jobs=2)
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:  # fmt: skip
        remote = run_sweep(space, tmp_path / "dask", cluster=cluster.scheduler_address)
    assert remote.new == local.new == 19
    assert results(remote.records) == results(local.records)


@pytest.mark.parametrize(
    "address, message",
    [
        ("localhost:8786", "expected a Dask scheduler"),
        ("tcp://127.0.0.1:9", "cannot reach the Dask scheduler"),
    ],
)
def test_bad_cluster_addresses_exit_2(tiny_space, tmp_path, capsys, address, message):
    code = main(["explore", str(tiny_space), "-o", str(tmp_path / "o"), "--cluster", address])
    assert code == 2 and message in capsys.readouterr().err


def test_ray_needs_ray(tiny_space, tmp_path):
    try:
        import ray  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="ray is not installed"):
            run_sweep(load_space(tiny_space), tmp_path / "o", cluster="ray://127.0.0.1:10001")
    else:
        pytest.skip("ray is installed: its missing-package message cannot show")
