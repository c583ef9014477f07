"""The OPC UA line bus (asyncua): verdicts written to a PLC's nodes, triggers read from one.

For each verdict, one OPC UA Write request sets, in this order:

=================  =========  ==============================================================
node               type       value
=================  =========  ==============================================================
``part_id_node``   String     the part id
``verdict_node``   Int32      the verdict code: PASS 1, REJECT 2, REVIEW 3 (0: none yet)
``sequence_node``  Int32      a counter, one up per verdict; the PLC latches the other two
                              when it changes (continues from the server's value after a
                              reconnect; wraps from 2**31 - 1 to 1)
=================  =========  ==============================================================

``trigger_node`` (String, optional) is polled every ``trigger_poll_s``: a new non-empty
value is a part-present trigger carrying that part id (the value found at the first
connect is old and ignored). ``heartbeat_node`` (Int32, optional) is counted up by
:meth:`OpcUaBus.heartbeat`.

asyncua is asyncio: the bus runs its own event loop in its own thread, behind the same
synchronous :class:`~inspection.line.base.LineBus` interface. Verdicts come from the
spool, in order; one is done once the server answered Good for the write. A write whose
answer was lost is written again after the reconnect (at least once): the sequence
counter moves on, the part id stays, and the PLC deduplicates by part id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from asyncua import Client, ua
from pydantic import Field, SecretStr

from inspection.line.base import VERDICT_CODES, BusConfig, BusState, LineBus
from inspection.spool import Spool
from inspection.types import Verdict

logger = logging.getLogger(__name__)

INT32_MAX = 2**31 - 1


class OpcUaConfig(BusConfig):
    """The OPC UA bus's settings (the daemon's station config nests it).

    Node ids are OPC UA node id strings as the PLC's engineering tool shows them
    (``ns=2;s=Station1.Verdict``, ``ns=3;i=1021``).

    Attributes
    ----------
    kind : "opcua"
        Tells the bus kinds apart in a station config (``create_bus``).
    endpoint : str
        ``opc.tcp://host:port[/path]`` of the PLC's server.
    verdict_node, part_id_node, sequence_node : str
        Where each verdict is written (see the module docstring for types).
    trigger_node : str | None
        A String node whose new values are part-present triggers; ``None``: no triggers.
    heartbeat_node : str | None
        An Int32 node counted up by :meth:`OpcUaBus.heartbeat`; ``None``: none.
    trigger_poll_s : float
        How often the trigger node is read.
    timeout_s : float
        How long one request may take before the connection counts as lost.
    username, password : str | None
        User credentials, where the server asks for them.
    """

    kind: Literal["opcua"] = "opcua"
    endpoint: str = Field(default="opc.tcp://127.0.0.1:4840", pattern=r"^opc\.tcp://")
    verdict_node: str = "ns=2;s=Inspection.Verdict"
    part_id_node: str = "ns=2;s=Inspection.PartId"
    sequence_node: str = "ns=2;s=Inspection.Sequence"
    trigger_node: str | None = "ns=2;s=Inspection.Trigger"
    heartbeat_node: str | None = None
    trigger_poll_s: float = Field(default=0.05, gt=0)
    timeout_s: float = Field(default=4.0, gt=0)
    username: str | None = None
    password: SecretStr | None = None


def next_sequence(value: Any) -> int:
    """The counter after ``value`` (what the server holds), in ``1 .. 2**31 - 1``."""
    current = value if isinstance(value, int) and not isinstance(value, bool) else 0
    return current + 1 if 0 <= current < INT32_MAX else 1


NODE_TYPES = {
    "part_id_node": ua.VariantType.String,
    "verdict_node": ua.VariantType.Int32,
    "sequence_node": ua.VariantType.Int32,
    "trigger_node": ua.VariantType.String,
    "heartbeat_node": ua.VariantType.Int32,
}


class _ConnectionLost(ConnectionError):
    """asyncua's watchdog saw the server go away."""


class OpcUaBus(LineBus):
    """The line bus over OPC UA.

    Parameters
    ----------
    spool : Spool
        This bus's verdict queue.
    config : OpcUaConfig
        Endpoint, node ids, credentials, backoff.
    clock : Callable[[], float]
        Seconds; retry times in the spool and heartbeat times are in it.
    """

    source = "opcua"

    def __init__(
        self, spool: Spool, config: OpcUaConfig, *, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(spool, config, clock=clock)
        self.config: OpcUaConfig = config
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_wake: asyncio.Event | None = None
        self._stop = threading.Event()
        self._lost: Exception | None = None
        self._last_trigger: str | None = None
        self._heartbeat_requested = False
        self._heartbeat_count = 0
        self._next_heartbeat = 0.0
        self.sequence = 0  # the last sequence value written
        self.bad_triggers = 0

    # ------------------------------------------------------------------ sync side

    def connect(self) -> None:
        """Start the bus thread: connect, and reconnect by itself; returns at once."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._closing.clear()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._main()), name="opcua-bus", daemon=True
        )
        self._thread.start()

    def heartbeat(self) -> None:
        """Count ``heartbeat_node`` up by one (from the bus thread, soon after the call)."""
        self._heartbeat_requested = True
        self._kick()

    def close(self, drain_timeout: float = 10.0) -> int:
        """Write what is pending for up to ``drain_timeout`` s, then disconnect.

        Returns
        -------
        int
            Verdicts still pending (kept in the spool for the next start).
        """
        if self._thread is None:
            return self.spool.pending()
        deadline = time.monotonic() + drain_timeout
        while self.spool.pending() > 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        self._closing.set()
        self._stop.set()
        self._kick()
        self._thread.join(timeout=30)
        self._thread = None
        self._set_state(BusState.DISCONNECTED)
        left = self.spool.pending()
        if left:
            logger.warning("opcua: %d verdicts still pending; written on the next start", left)
        return left

    def _kick(self) -> None:
        super()._kick()
        loop, event = self._loop, self._async_wake
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(event.set)

    # ------------------------------------------------------------------ the bus thread

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._async_wake = asyncio.Event()
        attempt = 0
        try:
            while not self._stop.is_set():
                try:
                    await self._session()
                    attempt = 0
                except Exception as error:
                    self.last_error = f"{type(error).__name__}: {error}"
                    logger.warning("opcua %s: %s", self.config.endpoint, self.last_error)
                if self._stop.is_set():
                    break
                if self._state is BusState.CONNECTED:
                    self._set_state(BusState.RECONNECTING)
                attempt += 1
                await self._sleep(self.backoff.delay(attempt))
        finally:
            self._loop = None

    async def _sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when woken (a stop, a new verdict)."""
        assert self._async_wake is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._async_wake.wait(), timeout=seconds)
        self._async_wake.clear()

    async def _session(self) -> None:
        """One connection: connect, write verdicts and poll the trigger until it fails."""
        config = self.config
        client = Client(config.endpoint, timeout=config.timeout_s)
        if config.username is not None:
            client.set_user(config.username)
            if config.password is not None:
                client.set_password(config.password.get_secret_value())
        self._lost = None

        async def lost(error: Exception) -> None:
            self._lost = error
            self._kick()

        client.connection_lost_callback = lost
        await client.connect()
        try:
            found = await self._check_nodes(client)
            nodes = [found["part_id_node"], found["verdict_node"], found["sequence_node"]]
            self.sequence = next_sequence(await nodes[2].read_value()) - 1
            trigger = found.get("trigger_node")
            if trigger is not None and self._last_trigger is None:
                # The value found at the first connect belongs to a part from before.
                self._last_trigger = str(await trigger.read_value() or "")
            heartbeat = found.get("heartbeat_node")
            self.last_error = None
            self._set_state(BusState.CONNECTED)
            await self._serve(nodes, trigger, heartbeat, client)
        finally:
            try:
                await asyncio.wait_for(client.disconnect(), timeout=config.timeout_s)
            except Exception as error:  # the server is gone: nothing to say goodbye to
                logger.debug("opcua: disconnect: %s", error)

    async def _check_nodes(self, client: Client) -> dict[str, Any]:
        """The configured nodes, each checked to exist with the type the bus writes.

        A wrong node id or type is a configuration error: the bus stays not connected
        (the fail-safe holds) and ``last_error`` names the field, rather than flapping
        between connected and failed writes.
        """
        found = {}
        for field, expected in NODE_TYPES.items():
            node_id = getattr(self.config, field)
            if node_id is None:
                continue
            try:
                node = client.get_node(node_id)
                kind = await node.read_data_type_as_variant_type()
            except Exception as error:
                raise ConnectionError(f"{field} {node_id}: {error}") from error
            if kind is not expected:
                raise ConnectionError(
                    f"{field} {node_id} holds {kind.name}, the bus writes {expected.name}"
                )
            found[field] = node
        return found

    async def _serve(self, nodes: list, trigger: Any, heartbeat: Any, client: Client) -> None:
        config = self.config
        next_poll = 0.0
        while not self._stop.is_set():
            if self._lost is not None:
                raise _ConnectionLost(f"connection lost: {self._lost}")
            written = 0
            for item in self.spool.due(self.clock(), limit=100):
                if self._stop.is_set():
                    break
                await self._write_verdict(client, nodes, item.key, item.body)
                written += 1
            if trigger is not None and time.monotonic() >= next_poll:
                next_poll = time.monotonic() + config.trigger_poll_s
                await self._poll_trigger(trigger)
            if heartbeat is not None:
                await self._heartbeat_if_due(heartbeat)
            if not written:
                await self._sleep(config.trigger_poll_s if trigger is not None else 0.5)

    async def _write_verdict(
        self, client: Client, nodes: list, key: str, body: dict[str, Any]
    ) -> None:
        code = VERDICT_CODES[Verdict(body["verdict"])]
        sequence = next_sequence(self.sequence)
        await client.write_values(
            nodes,
            [
                ua.Variant(str(body["part_id"]), ua.VariantType.String),
                ua.Variant(code, ua.VariantType.Int32),
                ua.Variant(sequence, ua.VariantType.Int32),
            ],
        )
        self.sequence = sequence
        self.spool.done(key)

    async def _poll_trigger(self, trigger: Any) -> None:
        value = await trigger.read_value()
        text = "" if value is None else str(value).strip()
        if text == self._last_trigger:
            return
        self._last_trigger = text
        if not text:
            return  # the PLC cleared it
        if not text.isprintable() or len(text) > 256:
            self.bad_triggers += 1
            logger.error("opcua: trigger value %r is not a part id: ignored", text[:80])
            return
        self._fire_trigger(text)

    async def _heartbeat_if_due(self, node: Any) -> None:
        now = self.clock()
        automatic = self.config.heartbeat_s is not None and now >= self._next_heartbeat
        if not (automatic or self._heartbeat_requested):
            return
        self._heartbeat_requested = False
        self._next_heartbeat = now + (self.config.heartbeat_s or 0.0)
        self._heartbeat_count = next_sequence(self._heartbeat_count)
        await node.write_value(ua.Variant(self._heartbeat_count, ua.VariantType.Int32))
