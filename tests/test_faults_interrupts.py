"""A Ctrl-C or SIGTERM that lands inside an MLflow store write (session 40: a Ctrl-C in a training's
metrics write left MLflow's sqlite session open, so the run's KILLED status failed with "database
is locked" and a traceback). The real store, with the signal raised from inside the real write."""

from __future__ import annotations

import signal

import pytest
from sqlalchemy import event

pytestmark = pytest.mark.no_prefect


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_inside_a_store_write_lands_after_it_and_the_run_is_marked_killed(sig, tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGAN_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from facegan.config.errors import TERMINATED, Interrupted
    from facegan.tasks.common import tracking

    def terminated(signum, frame):  # what the CLI installs for SIGTERM
        raise Interrupted(TERMINATED)

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        run = tracking.start_run("train", run_name="interrupted")
        engine = run.client._tracking_client.store.engine
        fired: list[str] = []

        def signal_inside(conn, cursor, statement, *args):  # the row is written, not yet committed
            if statement.lstrip().upper().startswith("INSERT INTO METRICS") and not fired:
                fired.append(statement)
                signal.raise_signal(sig)

        event.listen(engine, "after_cursor_execute", signal_inside)
        try:
            with pytest.raises(KeyboardInterrupt):
                run.log_metrics({"loss_d": 1.5, "loss_g": 2.5}, step=20)
        finally:
            event.remove(engine, "after_cursor_execute", signal_inside)
        assert fired, "the write never reached the metrics table"
        run.finish("KILLED")  # before the hold: "database is locked" after sqlite's timeout
        got = tracking.get_run(run.run_id)
        assert got.info.status == "KILLED"
        assert got.data.metrics == {"loss_d": 1.5, "loss_g": 2.5}  # the write it landed in completed
        assert signal.getsignal(signal.SIGTERM) is terminated  # the handlers in place are given back
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_artifact_write_is_held_too_as_mlflow_records_it_in_a_run_tag(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGAN_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    import pandas as pd

    from facegan.tasks.common import tracking

    run = tracking.start_run("evaluate", run_name="interrupted-table")
    engine = run.client._tracking_client.store.engine
    fired: list[str] = []

    def ctrl_c_inside(conn, cursor, statement, *args):  # the table's tag row, not yet committed
        if statement.lstrip().upper().startswith(("INSERT INTO TAGS", "UPDATE TAGS")) and not fired:
            fired.append(statement)
            signal.raise_signal(signal.SIGINT)

    event.listen(engine, "after_cursor_execute", ctrl_c_inside)
    try:
        with pytest.raises(KeyboardInterrupt):
            run.log_table(pd.DataFrame({"model": ["DCGAN"], "detection rate": [0.99]}), "table1.json")
    finally:
        event.remove(engine, "after_cursor_execute", ctrl_c_inside)
    assert fired, "log_table wrote no run tag"
    run.finish("KILLED")
    got = tracking.get_run(run.run_id)
    assert got.info.status == "KILLED" and "table1.json" in got.data.tags["mlflow.loggedArtifacts"]
