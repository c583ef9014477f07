"""Real line servers for the bus tests, on 127.0.0.1 and free ports.

- :class:`Mosquitto`: the Debian ``mosquitto`` broker, started from a config file
  (``listener PORT 127.0.0.1``, ``allow_anonymous true``, persistence on so that a restart
  keeps sessions and queued messages) and stopped by its PID.
- :class:`OpcUaServer`: an asyncua ``Server`` in its own process (``python brokers.py
  opcua ...``) with the station's nodes; every write it accepts is appended to a JSONL
  file, which is how a test reads back, from the server's side, what the bus wrote.

Both can be stopped and started again on the same port (the outage tests).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

START_TIMEOUT_S = 60.0
WAIT_S = 120.0  # every test wait is bounded by this (a loaded CI machine is slow)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout: float = WAIT_S, step: float = 0.02) -> bool:
    """Poll ``condition`` until it holds; ``False`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        os.kill(process.pid, sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def mosquitto_available() -> bool:
    return shutil.which("mosquitto") is not None


class Mosquitto:
    """A mosquitto broker on ``127.0.0.1:port`` with its files under ``root``."""

    def __init__(
        self, root: Path, port: int | None = None, anonymous: bool = True, extra: str = ""
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.config = self.root / "mosquitto.conf"
        self.log = self.root / "mosquitto.log"
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if anonymous else 'false'}",
            "persistence true",
            f"persistence_location {self.root}/",
            # Queue for offline persistent sessions without a cap (the default drops
            # beyond 1000, which a long outage test would exceed).
            "max_queued_messages 0",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if os.geteuid() == 0:
            # As root mosquitto drops to the 'mosquitto' user, who cannot write here.
            lines.append(f"user {getpass.getuser()}")
        self.config.write_text("\n".join(lines) + "\n" + extra)
        self.process: subprocess.Popen | None = None

    def start(self) -> Mosquitto:
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                ["mosquitto", "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        if not wait_until(
            lambda: _port_open(self.port) or self.process.poll() is not None, START_TIMEOUT_S
        ):
            raise RuntimeError(f"mosquitto did not start on {self.port}: {self.log.read_text()}")
        if self.process.poll() is not None:
            raise RuntimeError(f"mosquitto exited: {self.log.read_text()}")
        return self

    def stop(self) -> None:
        """SIGTERM by PID: mosquitto saves its persistence file, then exits."""
        if self.process is not None:
            _stop(self.process)
            self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def password_file(root: Path, user: str, password: str) -> Path:
    """A mosquitto password file (hashed by ``mosquitto_passwd``)."""
    path = Path(root) / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(path), user, password], check=True)
    return path


def tls_files(root: Path) -> dict[str, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1 it signed (PEM files)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def cert(subject, issuer, public_key, signer, ca: bool, san=None):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san is not None:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("test-ca", "test-ca", ca_key.public_key(), ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server = cert("127.0.0.1", "test-ca", key.public_key(), ca_key, ca=False, san=san)
    files = {"ca": root / "ca.pem", "cert": root / "server.pem", "key": root / "server.key"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return files


class OpcUaServer:
    """An asyncua server process on ``127.0.0.1:port`` with the station's nodes:
    ``ns=2;s=Inspection.{PartId,Verdict,Sequence,Trigger,Heartbeat}``."""

    NODES: ClassVar[dict[str, str]] = {
        "part_id": "ns=2;s=Inspection.PartId",
        "verdict": "ns=2;s=Inspection.Verdict",
        "sequence": "ns=2;s=Inspection.Sequence",
        "trigger": "ns=2;s=Inspection.Trigger",
        "heartbeat": "ns=2;s=Inspection.Heartbeat",
    }

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.writes = self.root / "writes.jsonl"
        self.ready = self.root / "ready"
        self.log = self.root / "server.log"
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}"

    def start(self) -> OpcUaServer:
        self.ready.unlink(missing_ok=True)
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "opcua",
                    str(self.port),
                    str(self.writes),
                    str(self.ready),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if not wait_until(
            lambda: self.ready.exists() or self.process.poll() is not None, START_TIMEOUT_S
        ):
            raise RuntimeError(f"OPC UA server did not start: {self.log.read_text()}")
        if self.process.poll() is not None:
            raise RuntimeError(f"OPC UA server exited: {self.log.read_text()}")
        return self

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None:
            _stop(self.process, sig)
            self.process = None

    def set_trigger(self, part_id: str) -> None:
        """Write the trigger node as the PLC would (through a command file the server
        polls: the test stays free of asyncio)."""
        command = self.root / "trigger.cmd"
        tmp = command.with_suffix(".tmp")
        tmp.write_text(part_id)
        tmp.replace(command)

    def written(self) -> list[dict]:
        """Every write the server accepted: ``{"node": name, "value": v}`` in order."""
        if not self.writes.exists():
            return []
        rows = []
        for line in self.writes.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):  # a line being written
                rows.append(json.loads(line))
        return rows


# ---------------------------------------------------------------------- the server process


async def _serve_opcua(port: int, writes: Path, ready: Path) -> None:
    import asyncio

    from asyncua import Server, ua
    from asyncua.common.callback import CallbackType

    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace("urn:inspection:test-plc")
    assert idx == 2, idx
    station = await server.nodes.objects.add_object(ua.NodeId("Inspection", idx), "Inspection")
    kinds = {
        "PartId": ua.Variant("", ua.VariantType.String),
        "Verdict": ua.Variant(0, ua.VariantType.Int32),
        "Sequence": ua.Variant(0, ua.VariantType.Int32),
        "Trigger": ua.Variant("", ua.VariantType.String),
        "Heartbeat": ua.Variant(0, ua.VariantType.Int32),
    }
    nodes = {}
    names = {}
    for name, value in kinds.items():
        node = await station.add_variable(ua.NodeId(f"Inspection.{name}", idx), name, value)
        await node.set_writable()
        nodes[name] = node
        names[node.nodeid] = name

    out = writes.open("a")

    async def on_write(event, dispatcher) -> None:
        for item, status in zip(
            event.request_params.NodesToWrite, event.response_params, strict=False
        ):
            if status.is_good() and item.NodeId in names:
                row = {"node": names[item.NodeId], "value": item.Value.Value.Value}
                out.write(json.dumps(row) + "\n")
        out.flush()

    server.subscribe_server_callback(CallbackType.PostWrite, on_write)
    command = writes.parent / "trigger.cmd"
    async with server:
        ready.write_text("ok")
        while True:
            if command.exists():
                part_id = command.read_text()
                command.unlink()
                await nodes["Trigger"].write_value(ua.Variant(part_id, ua.VariantType.String))
            await asyncio.sleep(0.02)


if __name__ == "__main__":
    if sys.argv[1] == "opcua":
        import asyncio

        asyncio.run(_serve_opcua(int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])))


# ---------------------------------------------------------------------- an MQTT listener


class Listener:
    """A separate paho client that records what arrives on ``topic`` (the line's side).

    ``persistent``: a fixed client id and a kept session (clean_session off, QoS 1), so
    that the broker queues for it while it is away, across a broker restart too.
    """

    def __init__(self, port: int, topic: str, client_id: str, persistent: bool = True) -> None:
        import threading

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.topic = topic
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent
        )
        self.client.reconnect_delay_set(0.05, 0.5)  # type: ignore[arg-type]
        self.subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self.subscribed.wait(START_TIMEOUT_S):
            raise RuntimeError(f"listener could not subscribe to {topic}")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))

    def payloads(self, suffix: str = "") -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t.endswith(suffix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
