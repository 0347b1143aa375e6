"""volume_purges: apps removed with their volumes, per host (issue 18 item 4, issue 20 item 3)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 14:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "volume_purges",
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"], name=op.f("fk_volume_purges_app_id_apps")),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_volume_purges_host_id_hosts")
        ),
        sa.PrimaryKeyConstraint("host_id", "app_id", name=op.f("pk_volume_purges")),
    )


def downgrade() -> None:
    op.drop_table("volume_purges")
