"""app_policies: the security rules an admin allowed for one app (issue 18 item 5)

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-06 11:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "app_policies",
        sa.Column("app", sa.String(length=63), nullable=False),
        sa.Column("allow", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("app", name=op.f("pk_app_policies")),
    )


def downgrade() -> None:
    op.drop_table("app_policies")
