"""Database objects written in raw SQL (not in the models), and the autogenerate filter.

Partitions of ``positions`` are created by ``milepost_ensure_position_partitions`` and the
append-only trigger of ``audit_log`` is plain SQL; both have their own tests.
"""

from __future__ import annotations

import re
from typing import Any

PARTITION_NAME = re.compile(r"^positions_p\d{8}$")
REVISIONS_TABLE = "schema_revisions"

ENSURE_PARTITIONS_FUNCTION = """
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

APPEND_ONLY_AUDIT = (
    """
CREATE OR REPLACE FUNCTION milepost_audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END $$
""",
    """
CREATE TRIGGER audit_log_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION milepost_audit_log_append_only()
""",
    """
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION milepost_audit_log_append_only()
""",
)


def include_object(
    _obj: Any, name: str | None, type_: str, _reflected: bool, _compare_to: Any
) -> bool:
    """Skip what the models do not describe: partitions of ``positions`` and the migrations'
    own record of the revisions applied (``schema_revisions``, like ``alembic_version``)."""
    if type_ != "table" or name is None:
        return True
    return not (PARTITION_NAME.match(name) or name == REVISIONS_TABLE)
