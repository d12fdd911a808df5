"""The crop map on a real Dask cluster (prefect-dask's DaskTaskRunner) gives the same dataset as
the local thread pool; an unreachable scheduler is one error line."""

from __future__ import annotations

import logging
import shutil
import socket
import sqlite3
import time

import numpy as np
import pandas as pd
from conftest import facegan_result, run_cli

from facegan.config.crop import CropConfig


def test_crop_on_a_dask_cluster_matches_the_thread_pool(lfw_crops, tmp_path, monkeypatch):
    """`facegan crop --dask-address` with no PREFECT_API_URL (its own temporary Prefect server):
    the workers report the shard task runs to that server instead of starting servers of their own."""
    from distributed import LocalCluster

    home = tmp_path / "home"
    shutil.copytree(lfw_crops / "raw", home / "raw")  # the raw set "lfw-sample" (300 LFW photos)
    monkeypatch.setenv("FACEGAN_HOME", str(home))
    monkeypatch.delenv("PREFECT_API_URL")  # for the workers (inherited) and the command below
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "workers-prefect-home"))
    start = time.perf_counter()
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    ) as cluster:
        # same parameters as the lfw_crops fixture, which cropped on the thread pool
        proc = run_cli(
            "crop",
            "--raw",
            "lfw-sample",
            "--largest-only",
            "--dask-address",
            cluster.scheduler_address,
            env={"PREFECT_HOME": str(tmp_path / "cli-prefect-home")},
            timeout=300,
        )
        shards_run = cluster.scheduler.task_prefixes["crop_shard"].state_counts["memory"]
    print(f"dask crop: {time.perf_counter() - start:.1f} s (cluster and command start included)")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "cropped 300 images" in proc.stdout
    assert shards_run == 8  # 300 images in shards of 38 (4 per cluster thread), all run by the cluster's workers
    with sqlite3.connect(tmp_path / "cli-prefect-home" / "prefect.db") as db:  # the command's server
        states = db.execute("select state_name from task_run where name like 'crop-shard%'").fetchall()
    assert states == [("Completed",)] * 8
    assert not (tmp_path / "workers-prefect-home" / "prefect.db").exists()  # no server of their own
    for size in (48, 64, 128):
        dask_dir, pool_dir = (
            home / "datasets" / "lfw-sample" / str(size),
            lfw_crops / "datasets" / "lfw-sample" / str(size),
        )
        pd.testing.assert_frame_equal(
            pd.read_parquet(dask_dir / "manifest.parquet"), pd.read_parquet(pool_dir / "manifest.parquet")
        )
        assert np.array_equal(np.load(dask_dir / "faces.npy"), np.load(pool_dir / "faces.npy"))
        assert sorted(p.name for p in dask_dir.glob("*.png")) == sorted(p.name for p in pool_dir.glob("*.png"))
    assert not (home / "datasets" / "lfw-sample" / ".work").exists()


def test_unreachable_dask_scheduler_is_one_error_line(lfw_crops, tmp_path, monkeypatch, capfd):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    monkeypatch.setenv("FACEGAN_DASK_ADDRESS", address)  # the env default of --dask-address
    assert CropConfig().dask_address == address
    monkeypatch.setenv("FACEGAN_HOME", str(lfw_crops))
    code, _, err = facegan_result(capfd, "crop", "--raw", "lfw-sample", "--name", "never-written")  # in-process
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Dask scheduler" in lines[0] and address in lines[0], err
    assert "Traceback" not in err
    assert not (lfw_crops / "datasets" / "never-written").exists()
