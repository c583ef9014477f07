"""What the report service runs with: one frozen dataclass, defaults from ``inspection.config``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspection.config import default_model_dir, get_settings
from inspection.errors import UserError

DEFAULT_MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
"""A fused payload is a few KB; a ``tokens`` payload of a large tiled frame a few MB
(``MAX_TENSOR_ELEMENTS`` float16 elements are 8 MB, 10.7 MB in base64)."""


def default_decoder_dir() -> Path:
    """The shipped default model's report decoder: ``<models_dir>/default/decoder``."""
    return default_model_dir() / "decoder"


def default_standards_dirs() -> tuple[Path, ...]:
    """The shipped standards (``INSPECTION_STANDARDS_DIR``, default ``datasets/standards``)."""
    return (get_settings().standards_dir,)


def default_db_path() -> Path:
    """``<runs_dir>/serve/service.db``: reports and API keys."""
    return get_settings().runs_dir / "serve" / "service.db"


@dataclass(frozen=True)
class ServeSettings:
    """How the report service runs.

    Attributes
    ----------
    decoder_dir : Path
        The report decoder (default: the shipped ``models/default/decoder``).
    adapter : str | None
        LoRA adapter to decode with: ``None`` keeps the decoder's active one
        (``adapters/ACTIVE``), ``"none"`` the base alone, else a saved adapter's name.
    standards_dirs : tuple[Path, ...]
        Folders of standard YAML files; a payload names its standard by id and content
        version (:attr:`~inspection.standards.Standard.version`).
    db_path : Path
        SQLite file (WAL) of the reports and, unless ``keys_db`` is set, the API keys.
    keys_db : Path | None
        A separate SQLite file for the API keys.
    max_batch : int
        Most parts decoded in one ``decode`` call.
    max_wait_ms : float
        How long the batcher waits for a batch to fill after its first part.
    max_queue : int
        Parts waiting at most; past it the service answers 503 with ``Retry-After``.
    max_payload_bytes : int
        Largest request body; larger ones get 413 before any parsing.
    open_without_keys : bool
        Serve without authentication while no API key exists (loopback development
        only: ``inspection serve`` sets it for a loopback host). Otherwise every
        ``/v1`` request needs a valid key.
    verify : bool
        Check the decoder's files against its model's manifest before loading.
    device : str
        Torch device of the decoder.
    decode_timeout_s : float
        A request gives up (503) when its report takes longer than this.
    """

    decoder_dir: Path = field(default_factory=default_decoder_dir)
    adapter: str | None = None
    standards_dirs: tuple[Path, ...] = field(default_factory=default_standards_dirs)
    db_path: Path = field(default_factory=default_db_path)
    keys_db: Path | None = None
    max_batch: int = 16
    max_wait_ms: float = 20.0
    max_queue: int = 512
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    open_without_keys: bool = False
    verify: bool = True
    device: str = "cpu"
    decode_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_queue < 1 or self.max_payload_bytes < 1:
            raise UserError("--max-batch, --max-queue and --max-payload-bytes must be positive")
        if self.max_wait_ms < 0 or self.decode_timeout_s <= 0:
            raise UserError("--max-wait-ms must be >= 0 and --timeout-s > 0")
        object.__setattr__(self, "decoder_dir", Path(self.decoder_dir))
        object.__setattr__(self, "db_path", Path(self.db_path))
        object.__setattr__(self, "standards_dirs", tuple(Path(p) for p in self.standards_dirs))

    @property
    def keys_path(self) -> Path:
        """Where the API keys live."""
        return Path(self.keys_db) if self.keys_db is not None else self.db_path


ENV_PREFIX = "INSPECTION_SERVE_"


def settings_from_env(environ: Mapping[str, str] | None = None) -> ServeSettings:
    """Settings from ``INSPECTION_SERVE_*`` variables, for deployments that start the app
    themselves (``uvicorn --factory inspection.serve.app:app_from_env``, Ray Serve).

    ``DECODER``, ``ADAPTER``, ``STANDARDS`` (folders joined by ``os.pathsep``), ``DB``,
    ``KEYS_DB``, ``MAX_BATCH``, ``MAX_WAIT_MS``, ``MAX_QUEUE``, ``MAX_PAYLOAD_BYTES``,
    ``DEVICE``, ``NO_VERIFY`` (``1``). Authentication is always on: a deployment has keys.

    Raises
    ------
    UserError
        A value that is not a number where one is needed, naming the variable.
    """
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        value = env.get(ENV_PREFIX + name)
        return value if value else None

    def number(name: str, kind: type) -> Any:
        try:
            return kind(get(name))
        except ValueError:
            raise UserError(f"{ENV_PREFIX}{name}={get(name)!r} is not a number") from None

    fields: dict[str, Any] = {}
    for name, key in (("DECODER", "decoder_dir"), ("DB", "db_path"), ("KEYS_DB", "keys_db")):
        if get(name):
            fields[key] = Path(get(name))
    if get("STANDARDS"):
        fields["standards_dirs"] = tuple(Path(p) for p in get("STANDARDS").split(os.pathsep) if p)
    for name, kind in (("MAX_BATCH", int), ("MAX_QUEUE", int), ("MAX_PAYLOAD_BYTES", int),
                       ("MAX_WAIT_MS", float)):  # fmt: skip
        if get(name):
            fields[name.lower()] = number(name, kind)
    if get("ADAPTER"):
        fields["adapter"] = get("ADAPTER")
    if get("DEVICE"):
        fields["device"] = get("DEVICE")
    fields["verify"] = get("NO_VERIFY") not in ("1", "true", "yes")
    return ServeSettings(**fields)
