"""defects: the box of the depression a 3D profiler sized a dent on (footprint_bbox)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 18:05:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: parts recorded before, and every defect no profiler sized, have none.
    with op.batch_alter_table("defects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("footprint_bbox", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("defects", schema=None) as batch_op:
        batch_op.drop_column("footprint_bbox")
