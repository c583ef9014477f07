"""``deploy/ray_serve.py``: the same app under Ray Serve, on a local Ray started on
127.0.0.1 (the `ray` extra installs Ray Serve)."""

from __future__ import annotations

import importlib.util
import os
import sys
import time

import pytest

pytest.importorskip("ray.serve", reason="ray[serve] is not installed")
pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")
httpx = pytest.importorskip("httpx")

from serve_helpers import REPO_ROOT, STANDARDS_DIR, free_port, payload, tiny_decoder_dir  # noqa: E402

from inspection.serve.auth import KeyStore  # noqa: E402


@pytest.mark.slow
def test_ray_serve_deployment_answers(tmp_path_factory, tmp_path, bracket_standard, monkeypatch):
    import ray
    from ray import serve

    db = tmp_path / "service.db"
    token = KeyStore(db).add("ray")
    monkeypatch.setenv("INSPECTION_SERVE_DECODER", str(tiny_decoder_dir(tmp_path_factory)))
    monkeypatch.setenv("INSPECTION_SERVE_DB", str(db))
    monkeypatch.setenv("INSPECTION_SERVE_STANDARDS", str(STANDARDS_DIR))
    monkeypatch.setenv("INSPECTION_SERVE_CPUS", "1")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    # Serve gives its HTTP proxy 60 s to start (a constant, no setting): on a loaded
    # 2-core machine it has taken longer; bound the wait generously instead.
    monkeypatch.setattr("ray.serve._private.api.HTTP_PROXY_TIMEOUT", 600)
    spec = importlib.util.spec_from_file_location(
        "ray_serve", REPO_ROOT / "deploy" / "ray_serve.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    port = free_port()
    env = {"env_vars": {k: v for k, v in os.environ.items() if k.startswith("INSPECTION_")}}
    ray.init(
        _node_ip_address="127.0.0.1",
        include_dashboard=False,
        num_cpus=2,
        runtime_env={
            **env,
            "env_vars": {**env["env_vars"], "PYTHONPATH": os.pathsep.join(sys.path)},
        },
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(module.deployment, route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {token}"}
        body = payload(bracket_standard, "ray-part", verdict="REJECT")
        for _ in range(600):  # the replica loads its decoder after it starts
            if httpx.get(f"{url}/readyz", timeout=10).status_code == 200:
                break
            time.sleep(0.2)
        answer = httpx.post(f"{url}/v1/reports", json=body, headers=headers, timeout=120)
        assert answer.status_code == 200, answer.text
        assert answer.json()["verdict"] == "REJECT"
        assert httpx.post(f"{url}/v1/reports", json=body, timeout=60).status_code == 401
    finally:
        serve.shutdown()
        ray.shutdown()
