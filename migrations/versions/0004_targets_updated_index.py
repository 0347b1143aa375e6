"""deployment_hosts: index (deployment_id, updated_at)

The rollout controller reads a deployment's newest target updated_at on every pass (to see
whether anyone else wrote its targets); with this index that is one index lookup, where it
read all of a deployment's rows. It replaces the index on deployment_id alone, which it
begins with.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 03:30:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_deployment_hosts_deployment_id_updated_at",
        "deployment_hosts",
        ["deployment_id", "updated_at"],
        unique=False,
    )
    op.drop_index("ix_deployment_hosts_deployment_id", table_name="deployment_hosts")


def downgrade() -> None:
    op.create_index(
        "ix_deployment_hosts_deployment_id", "deployment_hosts", ["deployment_id"], unique=False
    )
    op.drop_index("ix_deployment_hosts_deployment_id_updated_at", table_name="deployment_hosts")
