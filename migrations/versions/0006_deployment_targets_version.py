"""deployments.targets_version: a counter bumped by every write of a deployment's targets

The rollout controller keeps a deployment's target rows between passes; it trusts its copy
while the counter is the one it wrote last (before: while the rows' newest updated_at was,
which trusted clocks and took a query a pass). The index on (deployment_id, updated_at) that
served that query goes: the unique constraint's index on (deployment_id, host_id) serves the
reads by deployment, and a pass that marks 10,000 targets healthy no longer updates it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 08:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("targets_version", sa.Integer(), nullable=False, server_default="0")
        )
    op.drop_index("ix_deployment_hosts_deployment_id_updated_at", table_name="deployment_hosts")


def downgrade() -> None:
    op.create_index(
        "ix_deployment_hosts_deployment_id_updated_at",
        "deployment_hosts",
        ["deployment_id", "updated_at"],
        unique=False,
    )
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_column("targets_version")
