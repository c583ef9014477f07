"""Settings read from the environment (``INSPECTION_*``) or a ``.env`` file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

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
