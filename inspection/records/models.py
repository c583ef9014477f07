"""The records of every part: SQLAlchemy 2 typed declarative models.

One row per station, per part (a part id is unique within its station), per inspection
(the decision and every version that made it, or the reason a captured part was never
decided), per defect, per cloud report and per operator review. The schema itself is
created and upgraded by the Alembic migrations in ``migrations/`` (see
:func:`inspection.records.db.open_records`); a change here needs a new revision there, and
a test checks that the models and the migrations agree.

Times are timezone-aware UTC in Python and stored as UTC (SQLite keeps no time zone).
Torch-free.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# Named constraints, so that migrations can refer to (and SQLite batch mode recreate) them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    Stored as naive UTC (SQLite has no time zone; PostgreSQL's ``timestamp`` neither) and
    read back with ``tzinfo=UTC``. A naive datetime given to it is refused: it would be
    ambiguous.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}: give a timezone (UTC)")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Station(Base):
    """An inspection station (camera, model and line position)."""

    __tablename__ = "stations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Part(Base):
    """A part seen at a station; ``(station, part_id)`` is unique: a part is recorded once."""

    __tablename__ = "parts"
    __table_args__ = (UniqueConstraint("station_id", "part_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"))
    part_id: Mapped[str] = mapped_column(String(256))
    product: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    station: Mapped[Station] = relationship()
    inspection: Mapped[Inspection | None] = relationship(
        back_populates="part", cascade="all, delete-orphan", passive_deletes=True
    )


class Inspection(Base):
    """The decision on one part and everything that made it, or why there was none.

    A part captured but never decided (camera lost, daemon killed, cycle time missed before
    any verdict) has ``verdict`` NULL and ``not_inspected`` saying why; it never counts as
    a PASS.
    """

    __tablename__ = "inspections"
    __table_args__ = (
        CheckConstraint(
            "verdict IS NOT NULL OR not_inspected IS NOT NULL", name="decided_or_reason"
        ),
        CheckConstraint(
            "verdict IS NULL OR verdict IN ('PASS', 'REJECT', 'REVIEW')", name="verdict"
        ),
        # What the console asks: the latest parts, by verdict, by station, over a window.
        Index("ix_inspections_captured_at", "captured_at"),
        Index("ix_inspections_verdict_captured_at", "verdict", "captured_at"),
        Index("ix_inspections_station_id_captured_at", "station_id", "captured_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    part_ref: Mapped[int] = mapped_column(ForeignKey("parts.id", ondelete="CASCADE"), unique=True)
    # The station again (also on the part), so that "station over time" is one index.
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"))
    verdict: Mapped[str | None] = mapped_column(String(16))
    severity: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str | None] = mapped_column(String(16))
    not_inspected: Mapped[str | None] = mapped_column(Text)
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    scores: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    timings_ms: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    standard_id: Mapped[str | None] = mapped_column(String(128))
    standard_version: Mapped[str | None] = mapped_column(String(64))
    model_version: Mapped[str | None] = mapped_column(String(128))
    calibration_version: Mapped[str | None] = mapped_column(String(128))
    software_version: Mapped[str | None] = mapped_column(String(64))
    path: Mapped[str | None] = mapped_column(String(16))  # "edge" or "cloud"
    captured_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # SHA-256 of each evidence image, in frame order (files under the evidence folder).
    evidence: Mapped[list[str]] = mapped_column(JSON, default=list)

    part: Mapped[Part] = relationship(back_populates="inspection")
    station: Mapped[Station] = relationship()
    defects: Mapped[list[Defect]] = relationship(
        back_populates="inspection", cascade="all, delete-orphan", passive_deletes=True
    )
    reports: Mapped[list[ReportRecord]] = relationship(
        back_populates="inspection", cascade="all, delete-orphan", passive_deletes=True
    )
    reviews: Mapped[list[Review]] = relationship(
        back_populates="inspection", cascade="all, delete-orphan", passive_deletes=True
    )


class Defect(Base):
    """One defect of an inspection and what the standard said about it."""

    __tablename__ = "defects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    inspection_id: Mapped[int] = mapped_column(
        ForeignKey("inspections.id", ondelete="CASCADE"), index=True
    )
    defect_class: Mapped[str] = mapped_column(String(64))
    attributes: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    zone: Mapped[str | None] = mapped_column(String(64))
    clause_id: Mapped[str | None] = mapped_column(String(64))
    severity: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    score: Mapped[float | None] = mapped_column(Float)
    frame_index: Mapped[int] = mapped_column(Integer, default=0)
    bbox: Mapped[list[int] | None] = mapped_column(JSON)  # [x0, y0, x1, y1] in pixels
    # Where a 3D profiler sized it: the box of the depression its sizes were read on.
    footprint_bbox: Mapped[list[int] | None] = mapped_column(JSON)

    inspection: Mapped[Inspection] = relationship(back_populates="defects")


class ReportRecord(Base):
    """A structured report the cloud decoder wrote for an inspection."""

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    inspection_id: Mapped[int] = mapped_column(
        ForeignKey("inspections.id", ondelete="CASCADE"), index=True
    )
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    decoder_version: Mapped[str | None] = mapped_column(String(128))
    adapter_version: Mapped[str | None] = mapped_column(String(128))
    # Whether the report agrees with the edge's decision (inspection.decoder.crosscheck).
    agreed: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    inspection: Mapped[Inspection] = relationship(back_populates="reports")


class Review(Base):
    """An operator's decision on an inspection (an override, or a confirmation)."""

    __tablename__ = "reviews"
    __table_args__ = (CheckConstraint("decision IN ('PASS', 'REJECT', 'REVIEW')", name="decision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    inspection_id: Mapped[int] = mapped_column(
        ForeignKey("inspections.id", ondelete="CASCADE"), index=True
    )
    reviewer: Mapped[str] = mapped_column(String(128))
    decision: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    # The defect class the reviewer named (a REJECT exported as training data goes there).
    defect_class: Mapped[str | None] = mapped_column(String(64))
    # SHA-256 of the defect mask (PNG in the evidence folder) the reviewer drew or accepted.
    mask: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    inspection: Mapped[Inspection] = relationship(back_populates="reviews")


class StandardVersion(Base):
    """One saved version of a defect standard (its YAML, as uploaded or edited).

    Versions of a standard count up from 1; the text is kept whole, so that any two can be
    compared and any one activated again.
    """

    __tablename__ = "standard_versions"
    __table_args__ = (UniqueConstraint("standard_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    standard_id: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    # The version the standard's own text declares (``version:`` in the YAML).
    declared_version: Mapped[str | None] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    author: Mapped[str] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ProductSetting(Base):
    """What a product is inspected and reported with: its standard version and adapter."""

    __tablename__ = "product_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product: Mapped[str] = mapped_column(String(128), unique=True)
    standard_id: Mapped[str | None] = mapped_column(String(128))
    standard_version: Mapped[int | None] = mapped_column(Integer)
    # The decoder's LoRA adapter for this product's reports (None: the base decoder).
    adapter: Mapped[str | None] = mapped_column(String(64))
    updated_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Question(Base):
    """A question asked about a part in the console, typed or spoken, and its answer."""

    __tablename__ = "questions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    inspection_id: Mapped[int] = mapped_column(
        ForeignKey("inspections.id", ondelete="CASCADE"), index=True
    )
    asker: Mapped[str] = mapped_column(String(128))
    question: Mapped[str] = mapped_column(Text)
    # SHA-256 of the spoken clip in the evidence folder (WAV), when it was spoken.
    audio: Mapped[str | None] = mapped_column(String(64))
    transcript: Mapped[str | None] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    # Whether the decoder's answer agreed with the rule engine (whose verdict stands).
    agreed: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ActivityEvent(Base):
    """Who changed what from the console: standards, activations, adapters, logins."""

    __tablename__ = "activity"
    __table_args__ = (Index("ix_activity_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(256))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
