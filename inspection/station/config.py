"""The station's configuration: one YAML file, overridden by ``INSPECTION_*`` variables.

:func:`load_config` reads ``edge/station.yaml`` (every field is commented there) into a
:class:`StationConfig`. An environment variable overrides a field of the file, nested
fields with ``__``: ``INSPECTION_CYCLE_TIME_MS=800``, ``INSPECTION_BUS__PORT=1884``,
``INSPECTION_RECORDS__URL=postgresql+psycopg://...``. Unknown fields are refused (a typo
in a station file must not silently fall back to a default).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from inspection.errors import UserError, one_line
from inspection.line.mqtt import MqttConfig
from inspection.line.opcua import OpcUaConfig

if TYPE_CHECKING:
    from inspection.io import HeightEncoding


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Section):
    """What decides the parts.

    Attributes
    ----------
    path : Path
        An edge bundle folder (``manifest.json``: run torch-free by
        :class:`~inspection.edge.runtime.EdgeRuntime`), a model folder or an exported
        ``.onnx`` graph (:func:`~inspection.pipeline.load_detector` and the line's
        :class:`~inspection.pipeline.Inspector`).
    standard : Path | None
        The defect standard for a model folder or ``.onnx`` (a bundle carries its own);
        ``None``: the product's standard in the standards folder.
    verify : bool
        Check every model file against its recorded SHA-256 before the first part.
    threads : int | None
        Inference threads (ONNX Runtime intra-op, torch); ``None``: the library's default.
    normality : Path | None
        A feature normality model of the product (``inspection train --normal-only``:
        a model folder or ``.onnx``) fused with a model folder or ``.onnx`` ``path``
        (:class:`~inspection.models.fusion.FusedDetector`): what only it finds goes to
        REVIEW instead of passing. ``None``: the model alone.
    review_from : float | None
        A review band (:func:`~inspection.pipeline.with_review_band`): a part that would
        pass with a part score of at least this, under the model's image threshold, goes
        to REVIEW instead. ``None``: no band.
    guard_band : Path | None
        The gauge's guard band (``guard_band.json``, written by ``inspection evaluate``;
        :func:`~inspection.pipeline.with_guard_band`): a defect read within its
        uncertainty of a clause's limit goes to REVIEW instead of passing. ``None``:
        readings taken as exact.
    profiler_dents : bool
        Search each frame's height map (a station with a 3D profiler) for dents the
        camera missed (:func:`~inspection.pipeline.with_profiler_dents`), on the part's
        face: for faces with no designed recess as gently dished as a dent.
    """

    path: Path
    standard: Path | None = None
    verify: bool = True
    threads: int | None = Field(default=None, ge=1)
    normality: Path | None = None
    review_from: float | None = Field(default=None, gt=0)
    guard_band: Path | None = None
    profiler_dents: bool = False


class SimulatorSource(_Section):
    """Synthetic parts (:class:`~inspection.capture.simulator.SimulatedLine`).

    Attributes
    ----------
    n : int | None
        Parts to make; ``None``: forever. The daemon exits once a finite source is done.
    seed, defect_rate, size : int, float, int
        As :class:`~inspection.capture.simulator.SimulatedLine` takes them.
    rate_hz : float | None
        Parts per second; ``None``: as fast as the station decides them.
    distinct : int | None
        Synthesise only this many parts and send them round again under new part ids
        (soak tests measure the daemon, not the generator); ``None``: every part new.
    first_index : int
        Index of the first part (a restarted simulator continues with new ids).
    profiler : bool
        The simulated station also has a 3D profiler: frames carry height maps, and
        dents are measured on them (size and depth).
    """

    kind: Literal["simulator"] = "simulator"
    n: int | None = Field(default=None, ge=0)
    seed: int = 0
    defect_rate: float = Field(default=0.5, ge=0, le=1)
    size: int = Field(default=256, ge=32)
    rate_hz: float | None = Field(default=None, gt=0)
    distinct: int | None = Field(default=None, ge=1)
    first_index: int = Field(default=0, ge=0)
    profiler: bool = False


class HeightEncodingConfig(_Section):
    """How a profiler's integer height maps read in mm (:class:`~inspection.io.HeightEncoding`:
    GenICam's Scan3dCoordinateScale, Scan3dCoordinateOffset and Scan3dInvalidDataValue).

    Attributes
    ----------
    scale_mm : float
        mm per count (negative for a range: distance from the sensor).
    offset_mm : float
        mm at count 0.
    invalid : int | None
        The count of a point the profiler missed.
    """

    scale_mm: float = Field(allow_inf_nan=False)
    offset_mm: float = Field(default=0.0, allow_inf_nan=False)
    invalid: int | None = Field(default=None, strict=True)

    @field_validator("scale_mm")
    @classmethod
    def _not_zero(cls, scale: float) -> float:
        if scale == 0:
            raise ValueError("a height map's z scale cannot be 0")
        return scale

    def encoding(self) -> HeightEncoding:
        from inspection.io import HeightEncoding  # cv2 and friends: not at import

        return HeightEncoding(self.scale_mm, self.offset_mm, self.invalid)


class FolderSourceConfig(_Section):
    """Parts as image files dropped in a folder (:class:`~inspection.capture.folder.FolderSource`).

    Attributes
    ----------
    inbox : Path
        The watched folder.
    done_dir, failed_dir : Path | None
        Where a part's files go once recorded (``failed``: not inspected, with the
        reason beside it); ``None``: ``inbox/done`` and ``inbox/failed``.
    settle_s : float
        A file is taken once its size and mtime stayed unchanged this long.
    poll_s : float
        Pause between scans of an empty inbox.
    mm_per_px : float | None
        The station's scale, unless a sidecar gives one.
    unreadable_after_s : float
        An image that still does not decode this long after settling is not inspected
        (moved to ``failed_dir`` with the reason).
    height_encoding : HeightEncodingConfig | None
        How the integer height maps beside the images (``<stem>.height.tiff`` or
        ``.height.png``) read in mm; ``None``: they are float mm.
    """

    kind: Literal["folder"] = "folder"
    inbox: Path
    done_dir: Path | None = None
    failed_dir: Path | None = None
    settle_s: float = Field(default=1.0, ge=0)
    poll_s: float = Field(default=0.2, gt=0)
    mm_per_px: float | None = Field(default=None, gt=0)
    unreadable_after_s: float = Field(default=10.0, ge=0)
    height_encoding: HeightEncodingConfig | None = None


class MotionOptions(_Section):
    """Part-present detection by frame difference.

    See :class:`~inspection.capture.trigger.MotionTrigger` for the meaning of each field.
    """

    threshold: float = Field(default=25.0, gt=0)
    min_area: int = Field(default=500, ge=1)
    settle_frames: int = Field(default=3, ge=1)


class CameraSourceConfig(_Section):
    """Parts from a camera, one per trigger (:class:`~inspection.station.sources.CameraParts`).

    Attributes
    ----------
    device : str
        A device index (``"0"``), a stream URL (``rtsp://...``) or a video file.
    camera_id : str
        The camera's id on every frame.
    width, height, fps : int | float | None
        Asked of the device; ``None``: its own.
    loop : bool
        A video file starts again at its end; ``False``: its end counts as a lost
        camera, reopened after the backoff (so the file plays again, later).
    mm_per_px : float | None
        The calibrated scale.
    trigger : {"bus", "motion"}
        ``bus``: the line's part-present message with the part id; ``motion``: frame
        difference (part ids made up from the station and the time).
    motion : MotionOptions
        The motion trigger's settings.
    read_timeout_s : float
        A triggered part with no new frame within this is not inspected (with why).
    backoff_min_s, backoff_max_s : float
        Reconnect delays of a lost camera.
    """

    kind: Literal["camera"] = "camera"
    device: str = "0"
    camera_id: str = "cam0"
    width: int | None = Field(default=None, ge=1)
    height: int | None = Field(default=None, ge=1)
    fps: float | None = Field(default=None, gt=0)
    loop: bool = True
    mm_per_px: float | None = Field(default=None, gt=0)
    trigger: Literal["bus", "motion"] = "bus"
    motion: MotionOptions = MotionOptions()
    read_timeout_s: float = Field(default=2.0, gt=0)
    backoff_min_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=10.0, gt=0)


SourceSection = Annotated[
    SimulatorSource | FolderSourceConfig | CameraSourceConfig, Field(discriminator="kind")
]


class NoBus(_Section):
    """No line bus: verdicts are recorded only (a bench, or a station being set up)."""

    kind: Literal["none"] = "none"


BusSection = Annotated[MqttConfig | OpcUaConfig | NoBus, Field(discriminator="kind")]


class RecordsConfig(_Section):
    """Where every part is recorded (:class:`~inspection.records.RecordStore`).

    Attributes
    ----------
    url : str
        SQLAlchemy URL or SQLite file path.
    evidence_dir, spool_path : Path | None
        Evidence images, and the spool records wait in while the database is down;
        ``None``: next to a SQLite file.
    evidence : {"none", "not_pass", "all"}
        Which parts' images are kept as evidence.
    busy_timeout_s : float
        How long a write waits for a locked database before the record is spooled;
        short, since a verdict is published only once its part is recorded.
    """

    url: str = "var/records.db"
    evidence_dir: Path | None = None
    spool_path: Path | None = None
    evidence: Literal["none", "not_pass", "all"] = "not_pass"
    busy_timeout_s: float = Field(default=1.0, gt=0)


class CloudConfig(_Section):
    """Payloads to the cloud report service (store and forward).

    Attributes
    ----------
    url : str
        The service's base URL.
    token_file : Path
        A file holding the API key (kept out of the config and the logs).
    outbox : Path
        The outbox's SQLite file.
    """

    url: str = Field(pattern=r"^https?://")
    token_file: Path
    outbox: Path = Path("var/outbox.db")


class MetricsConfig(_Section):
    """The ``/metrics``, ``/healthz`` and ``/readyz`` endpoint.

    Attributes
    ----------
    enabled : bool
        Serve it at all.
    host : str
        Address to listen on (loopback by default: put a proxy in front to expose it).
    port : int
        TCP port; ``0``: a free one (logged).
    """

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9108, ge=0, le=65535)


class StationConfig(BaseSettings):
    """Everything a station daemon is configured with (see ``edge/station.yaml``)."""

    model_config = SettingsConfigDict(
        env_prefix="INSPECTION_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    station: str = Field(default="station-1", min_length=1, pattern=r"^[^/#+\s]+$")
    line: str = Field(default="line-1", min_length=1, pattern=r"^[^/#+\s]+$")
    product: str = "bracket"
    model: ModelConfig
    source: SourceSection = SimulatorSource()
    cycle_time_ms: int = Field(default=1500, ge=1)
    late_verdict: Literal["REJECT", "REVIEW"] = "REJECT"
    workers: int = Field(default=2, ge=1, le=64)
    max_inflight: int = Field(default=4, ge=1)
    bus: BusSection = NoBus()
    records: RecordsConfig = RecordsConfig()
    state_dir: Path = Path("var/state")
    cloud: CloudConfig | None = None
    metrics: MetricsConfig = MetricsConfig()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True
    drain_timeout_s: float = Field(default=30.0, gt=0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment first: an INSPECTION_* variable overrides the YAML file (which
        # arrives as init arguments); no .env file (a station is configured in one place).
        return env_settings, init_settings

    def resolved(self, base: Path) -> StationConfig:
        """The config with relative paths made absolute against ``base`` (the YAML's
        folder), so that the daemon does not depend on its working directory."""

        def fix(path: Path | None) -> Path | None:
            return None if path is None or path.is_absolute() else base / path

        records = self.records
        url = records.url
        if "://" not in url and not Path(url).is_absolute():
            url = str(base / url)
        updates: dict[str, Any] = {
            "state_dir": fix(self.state_dir) or self.state_dir,
            "model": self.model.model_copy(
                update={
                    "path": fix(self.model.path) or self.model.path,
                    "standard": fix(self.model.standard) or self.model.standard,
                    "normality": fix(self.model.normality) or self.model.normality,
                    "guard_band": fix(self.model.guard_band) or self.model.guard_band,
                }
            ),
            "records": records.model_copy(
                update={
                    "url": url,
                    "evidence_dir": fix(records.evidence_dir) or records.evidence_dir,
                    "spool_path": fix(records.spool_path) or records.spool_path,
                }
            ),
        }
        if self.source.kind == "folder":
            source = self.source
            updates["source"] = source.model_copy(
                update={
                    "inbox": fix(source.inbox) or source.inbox,
                    "done_dir": fix(source.done_dir) or source.done_dir,
                    "failed_dir": fix(source.failed_dir) or source.failed_dir,
                }
            )
        if self.cloud is not None:
            updates["cloud"] = self.cloud.model_copy(
                update={
                    "token_file": fix(self.cloud.token_file) or self.cloud.token_file,
                    "outbox": fix(self.cloud.outbox) or self.cloud.outbox,
                }
            )
        return self.model_copy(update=updates)


def load_config(path: str | Path | None = None, **overrides: Any) -> StationConfig:
    """The station config from a YAML file, ``INSPECTION_*`` variables and ``overrides``.

    Relative paths in the file are taken from the file's folder.

    Raises
    ------
    UserError
        A missing or malformed file, or a field the schema refuses (every problem named).
    """
    data: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"{path}: no such station config") from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise UserError(f"{path}: not a readable YAML file ({one_line(error)})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise UserError(f"{path}: a station config is a mapping of fields")
        data = loaded or {}
        base = path.resolve().parent
    data.update(overrides)
    try:
        config = StationConfig(**data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}{_from_environment(e['loc'])}"
            for e in error.errors()
        )
        where = f"{path}: " if path is not None else ""
        raise UserError(f"{where}invalid station config: {problems}") from None
    return config.resolved(base)


def _from_environment(loc: tuple) -> str:
    """`` (from INSPECTION_X__Y)`` when the environment set the field a problem is in: the
    file is then not where the mistake is."""
    for depth in range(len(loc), 0, -1):
        name = "INSPECTION_" + "__".join(str(part).upper() for part in loc[:depth])
        if name in os.environ:
            return f" (from {name})"
    return ""
