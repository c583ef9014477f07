"""The station on an edge bundle: torch-free, and each part's payload kept in the outbox
for the cloud (the service is down here: nothing is lost, everything waits)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edge_guard import run_without_torch


def test_the_station_imports_without_torch():
    done = run_without_torch(
        """
        import inspection.station.commands
        import inspection.station.config
        import inspection.station.daemon
        import inspection.station.metrics
        import inspection.station.sources
        from inspection.edge.bundle import is_bundle
        from inspection.station.daemon import build_runtime
        """
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_a_bundle_station_records_parts_and_keeps_payloads_for_the_cloud(tmp_path, caplog):
    pytest.importorskip("torch", reason="exporting the test bundle needs torch")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "edge"))
    from edge_helpers import tiny_bundle
    from station_helpers import CyclingSource, station_config

    from inspection.edge.bundle import is_bundle
    from inspection.edge.outbox import Outbox
    from inspection.edge.runtime import EdgeRuntime
    from inspection.line.mqtt import MqttConfig  # noqa: F401  (the line extra is there)
    from inspection.records import RecordStore
    from inspection.station.daemon import StationDaemon, build_runtime

    bundle = tiny_bundle(tmp_path / "export")
    assert is_bundle(bundle) and not is_bundle(tmp_path / "export" / "model")
    token = tmp_path / "token"
    token.write_text("secret\n")
    from brokers import free_port

    config = station_config(
        tmp_path, None, model_path=bundle,
        cloud={"url": f"http://127.0.0.1:{free_port()}", "token_file": str(token),
               "outbox": str(tmp_path / "outbox.db")},
    )  # fmt: skip
    with caplog.at_level("INFO", logger="inspection.station"):
        runtime = build_runtime(config)
    assert isinstance(runtime, EdgeRuntime)
    said = " ".join(r.getMessage() for r in caplog.records)  # as a model folder's station
    assert "clause(s) 4.2.1 of QS-BRK-200 limit a dent's depth" in said
    daemon = StationDaemon(config, source=CyclingSource(12), runtime=runtime)
    assert daemon.run() == 0

    store = RecordStore(config.records.url)
    counts = store.counts(station="st-1")
    assert sum(counts.values()) == 12 and counts["NOT_INSPECTED"] == 0
    part = store.get("T-00000", "st-1")
    assert part.model_version == runtime.detector.version
    with Outbox(tmp_path / "outbox.db") as outbox:
        assert outbox.pending() == 12, "every payload waits for the cloud"
        assert outbox.get("T-00007") is not None
