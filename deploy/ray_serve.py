"""The report service as a Ray Serve deployment: the same FastAPI app (``serve.ingress``).

Each replica is one :func:`inspection.serve.app.create_app` app with its own decoder and
dynamic batcher; Ray Serve spreads requests over the replicas. The replicas share the
SQLite file (``INSPECTION_SERVE_DB``, WAL): on one machine that keeps "first answer per
part id" across them; across machines, point every replica at storage they share.

Settings come from ``INSPECTION_SERVE_*`` variables
(:func:`inspection.serve.settings.settings_from_env`), so the same file serves any
decoder, standards and database. Run (needs ``pip install "ray[serve]"``)::

    INSPECTION_SERVE_DB=runs/serve/service.db RAY_USAGE_STATS_ENABLED=0 \\
        serve run deploy.ray_serve:deployment --host 127.0.0.1 --port 8000

or from Python: ``python deploy/ray_serve.py --port 8000 --replicas 2``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ray import serve

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from inspection.serve.app import app_from_env

REPLICAS = int(os.environ.get("INSPECTION_SERVE_REPLICAS", "1"))
CPUS_PER_REPLICA = float(os.environ.get("INSPECTION_SERVE_CPUS", "2"))

app = app_from_env()  # builds the app only; its lifespan (decoder, database) runs per replica


@serve.deployment(
    num_replicas=REPLICAS,
    ray_actor_options={"num_cpus": CPUS_PER_REPLICA},
    # The batcher holds up to max_queue parts itself; Ray need not queue many more.
    max_ongoing_requests=512,
)
@serve.ingress(app)
class ReportService:
    """The FastAPI app's routes, served by Ray Serve."""


deployment = ReportService.bind()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--replicas", type=int, default=REPLICAS)
    args = parser.parse_args()
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(_node_ip_address="127.0.0.1", include_dashboard=False)
    serve.start(http_options={"host": args.host, "port": args.port})
    serve.run(ReportService.options(num_replicas=args.replicas).bind(), route_prefix="/")
    print(f"report service on http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
    try:
        import signal

        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
