"""host_statuses: each host's last status in its own table

A host row carried its agent's last status (about 1 KiB of JSON). Every deploy bumps the
generation of each target host and reads host rows for the push, so a deploy to 10,000 hosts
rewrote and read 10 MiB of statuses it did not need. The status moves to host_statuses, a
row for each host (a host registered later gets its row when it first reports); the
downgrade moves it back.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 08:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "host_statuses",
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("observed", sa.JSON(), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_host_statuses_host_id_hosts")
        ),
        sa.PrimaryKeyConstraint("host_id", name=op.f("pk_host_statuses")),
    )
    # every host's, reported or not (an empty status reads as none): the time is that of
    # the host's last sign of life, or its registration
    op.execute(
        "INSERT INTO host_statuses (host_id, observed, reported_at) "
        "SELECT id, observed, COALESCE(last_seen, created_at) FROM hosts"
    )
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_column("observed")


def downgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("observed", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
    op.execute(
        "UPDATE hosts SET observed = (SELECT s.observed FROM host_statuses s "
        "WHERE s.host_id = hosts.id) "
        "WHERE id IN (SELECT host_id FROM host_statuses)"
    )
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.alter_column("observed", server_default=None)
    op.drop_table("host_statuses")
