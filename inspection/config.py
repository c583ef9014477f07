"""Settings read from the environment (``INSPECTION_*``) or a ``.env`` file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    """Where things live. Every value can be set as ``INSPECTION_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="INSPECTION_", env_file=".env", extra="ignore")

    standards_dir: Path = REPO_ROOT / "datasets" / "standards"
    models_dir: Path = REPO_ROOT / "models"
    calibration_dir: Path = REPO_ROOT / "calibration"
    runs_dir: Path = Path("runs")
    station: str = "station-1"
    log_level: str = "INFO"
    # Images above this many pixels are refused by inspection.io.read_image (or scaled,
    # where the caller passes max_side) before their pixels are decoded. 50 Mpx is twice
    # the 5-25 Mpx frames line cameras commonly deliver; decoded, it is 150 MB at 8-bit
    # RGB, 300 MB at 16-bit, a few times that while tiling. Above it, time and memory
    # run away: a 12000 x 9000 frame (108 Mpx) took 200 s and 9.4 GB in `ask`.
    max_image_pixels: int = Field(default=50_000_000, gt=0)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def default_model_dir() -> Path:
    """The shipped default detection model: ``<models_dir>/default``."""
    return get_settings().models_dir / "default"


def standard_path(name_or_path: str | Path) -> Path:
    """A standard file given by path, or by product name in ``standards_dir``."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    return get_settings().standards_dir / f"{name_or_path}.yaml"
