"""The line buses: verdicts out to the line and part-present triggers in (MQTT, OPC UA).

Each backend lives in its own module and needs its client library from the ``line``
extra (paho-mqtt, asyncua); :func:`create_bus` imports only the one a config asks for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inspection.line.base import (
    VERDICT_CODES,
    Backoff,
    BusConfig,
    BusState,
    LineBus,
    Trigger,
    VerdictMessage,
)

if TYPE_CHECKING:
    from inspection.line.mqtt import MqttConfig
    from inspection.line.opcua import OpcUaConfig
    from inspection.spool import Spool

__all__ = [
    "VERDICT_CODES",
    "Backoff",
    "BusConfig",
    "BusState",
    "LineBus",
    "Trigger",
    "VerdictMessage",
    "create_bus",
]


def create_bus(spool: Spool, config: MqttConfig | OpcUaConfig) -> LineBus:
    """The bus a config describes (by its ``kind``), not yet connected.

    A station config can hold ``bus: MqttConfig | OpcUaConfig = Field(discriminator="kind")``
    and hand it here.
    """
    if config.kind == "mqtt":
        from inspection.line.mqtt import MqttBus

        return MqttBus(spool, config)  # type: ignore[arg-type]
    if config.kind == "opcua":
        from inspection.line.opcua import OpcUaBus

        return OpcUaBus(spool, config)  # type: ignore[arg-type]
    raise ValueError(f"unknown bus kind {config.kind!r}")
