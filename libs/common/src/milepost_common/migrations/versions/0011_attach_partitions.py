"""Position partitions are made beside positions and attached, never blocking its readers

``CREATE TABLE … PARTITION OF positions`` takes an ACCESS EXCLUSIVE lock on positions: it
waited behind every open reader (an organization export holds one for its whole download) and
every ingest insert and history read queued behind it, for up to the lock timeout on each
hourly run and each deploy. A partition is now created as a table of its own and attached
(``ALTER TABLE positions ATTACH PARTITION``), which takes SHARE UPDATE EXCLUSIVE on positions:
reads and inserts go on meanwhile. The attach builds the partition's indexes (empty, at once).

Revision ID: 0011_attach_partitions
Revises: 0010_foreign_key_indexes
Create Date: 2026-12-13 09:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011_attach_partitions"
down_revision: str | None = "0010_foreign_key_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Raw SQL frozen with this revision (the live copy is in migrations/objects.py).
ATTACHING = """
CREATE OR REPLACE FUNCTION milepost_ensure_position_partitions(first_day date, last_day date)
RETURNS integer LANGUAGE plpgsql AS $$
-- Daily partitions with UTC-midnight bounds; existing ones are left alone. Each is created
-- alone and attached: SHARE UPDATE EXCLUSIVE on positions, which no reader or writer holds.
DECLARE
    day date := first_day;
    created integer := 0;
    name text;
BEGIN
    WHILE day <= last_day LOOP
        name := 'positions_p' || to_char(day, 'YYYYMMDD');
        IF to_regclass(name) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I (LIKE positions INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                name);
            EXECUTE format(
                'ALTER TABLE positions ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                name, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
            created := created + 1;
        END IF;
        day := day + 1;
    END LOOP;
    RETURN created;
END $$;
"""

# 0001's, as it was.
CREATING = """
CREATE OR REPLACE FUNCTION milepost_ensure_position_partitions(first_day date, last_day date)
RETURNS integer LANGUAGE plpgsql AS $$
-- Daily partitions with UTC-midnight bounds; existing ones are left alone.
DECLARE
    day date := first_day;
    created integer := 0;
    name text;
BEGIN
    WHILE day <= last_day LOOP
        name := 'positions_p' || to_char(day, 'YYYYMMDD');
        IF to_regclass(name) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF positions FOR VALUES FROM (%L) TO (%L)',
                name, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
            created := created + 1;
        END IF;
        day := day + 1;
    END LOOP;
    RETURN created;
END $$;
"""


def upgrade() -> None:
    op.execute(ATTACHING)


def downgrade() -> None:
    op.execute(CREATING)
