"""The station daemon: capture, decide within the cycle time, actuate, record.

``inspection daemon --config edge/station.yaml`` runs :class:`StationDaemon` unattended at
an inspection station: parts come from a :class:`~inspection.capture.PartSource`, each is
decided in a worker against the line's cycle time (a verdict not ready in time is REJECT
or REVIEW, never PASS), the verdict goes out on the line bus from a durable spool, and
every part is recorded once. Torch-free when the model is an edge bundle.
"""
