"""Initial schema: stations, parts, inspections, defects, reports, reviews.

Revision ID: 0001
Revises: (none)
Create Date: 2026-12-03 12:14:08.732851
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stations")),
        sa.UniqueConstraint("name", name=op.f("uq_stations_name")),
    )
    op.create_table(
        "parts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("station_id", sa.Integer(), nullable=False),
        sa.Column("part_id", sa.String(length=256), nullable=False),
        sa.Column("product", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["station_id"],
            ["stations.id"],
            name=op.f("fk_parts_station_id_stations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_parts")),
        sa.UniqueConstraint("station_id", "part_id", name=op.f("uq_parts_station_id_part_id")),
    )
    op.create_table(
        "inspections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("part_ref", sa.Integer(), nullable=False),
        sa.Column("station_id", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=True),
        sa.Column("severity", sa.String(length=16), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=True),
        sa.Column("not_inspected", sa.Text(), nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.Column("timings_ms", sa.JSON(), nullable=False),
        sa.Column("standard_id", sa.String(length=128), nullable=True),
        sa.Column("standard_version", sa.String(length=64), nullable=True),
        sa.Column("model_version", sa.String(length=128), nullable=True),
        sa.Column("calibration_version", sa.String(length=128), nullable=True),
        sa.Column("software_version", sa.String(length=64), nullable=True),
        sa.Column("path", sa.String(length=16), nullable=True),
        sa.Column("captured_at", sa.DateTime(), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.CheckConstraint(
            "verdict IS NULL OR verdict IN ('PASS', 'REJECT', 'REVIEW')",
            name=op.f("ck_inspections_verdict"),
        ),
        sa.CheckConstraint(
            "verdict IS NOT NULL OR not_inspected IS NOT NULL",
            name=op.f("ck_inspections_decided_or_reason"),
        ),
        sa.ForeignKeyConstraint(
            ["part_ref"],
            ["parts.id"],
            name=op.f("fk_inspections_part_ref_parts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["station_id"],
            ["stations.id"],
            name=op.f("fk_inspections_station_id_stations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inspections")),
        sa.UniqueConstraint("part_ref", name=op.f("uq_inspections_part_ref")),
    )
    with op.batch_alter_table("inspections", schema=None) as batch_op:
        batch_op.create_index("ix_inspections_captured_at", ["captured_at"], unique=False)
        batch_op.create_index(
            "ix_inspections_station_id_captured_at", ["station_id", "captured_at"], unique=False
        )
        batch_op.create_index(
            "ix_inspections_verdict_captured_at", ["verdict", "captured_at"], unique=False
        )

    op.create_table(
        "defects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("inspection_id", sa.Integer(), nullable=False),
        sa.Column("defect_class", sa.String(length=64), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("zone", sa.String(length=64), nullable=True),
        sa.Column("clause_id", sa.String(length=64), nullable=True),
        sa.Column("severity", sa.String(length=16), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("frame_index", sa.Integer(), nullable=False),
        sa.Column("bbox", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["inspection_id"],
            ["inspections.id"],
            name=op.f("fk_defects_inspection_id_inspections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_defects")),
    )
    with op.batch_alter_table("defects", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_defects_inspection_id"), ["inspection_id"], unique=False
        )

    op.create_table(
        "reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("inspection_id", sa.Integer(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("decoder_version", sa.String(length=128), nullable=True),
        sa.Column("adapter_version", sa.String(length=128), nullable=True),
        sa.Column("agreed", sa.Boolean(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["inspection_id"],
            ["inspections.id"],
            name=op.f("fk_reports_inspection_id_inspections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reports")),
    )
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reports_inspection_id"), ["inspection_id"], unique=False
        )

    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("inspection_id", sa.Integer(), nullable=False),
        sa.Column("reviewer", sa.String(length=128), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "decision IN ('PASS', 'REJECT', 'REVIEW')", name=op.f("ck_reviews_decision")
        ),
        sa.ForeignKeyConstraint(
            ["inspection_id"],
            ["inspections.id"],
            name=op.f("fk_reviews_inspection_id_inspections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews")),
    )
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reviews_inspection_id"), ["inspection_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reviews_inspection_id"))

    op.drop_table("reviews")
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reports_inspection_id"))

    op.drop_table("reports")
    with op.batch_alter_table("defects", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_defects_inspection_id"))

    op.drop_table("defects")
    with op.batch_alter_table("inspections", schema=None) as batch_op:
        batch_op.drop_index("ix_inspections_verdict_captured_at")
        batch_op.drop_index("ix_inspections_station_id_captured_at")
        batch_op.drop_index("ix_inspections_captured_at")

    op.drop_table("inspections")
    op.drop_table("parts")
    op.drop_table("stations")
