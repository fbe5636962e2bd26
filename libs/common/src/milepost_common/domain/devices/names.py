"""A vehicle's name (and plate) on the rows that name it by id: trips, stops, alerts, report
rows, exports.

Given only where the row's organization holds the device now and the row belongs to the
device's current tenure (at or after ``assigned_at``); a row of an earlier tenure carries
null, never the name another organization chose (DECISIONS.md, device transfer). The same
rule three ways: a SQLAlchemy condition to join in a read's own statement, a SQL fragment
for the raw report query, and a Python check for a row already loaded.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import ColumnElement, and_, case, or_
from sqlmodel import col

from milepost_common.domain.devices.models import Device

ReadT = TypeVar("ReadT", bound=BaseModel)


def in_tenure(row_org_id: Any, row_time: Any) -> ColumnElement[bool]:
    """True where ``Device`` (joined) is held by the row's organization and the row is of
    its current tenure."""
    return and_(
        col(Device.org_id) == row_org_id,
        or_(col(Device.assigned_at).is_(None), row_time >= col(Device.assigned_at)),
    )


def name_column(row_org_id: Any, row_time: Any) -> ColumnElement[str | None]:
    """The joined ``Device``'s name for a row of its current tenure, else NULL."""
    return case((in_tenure(row_org_id, row_time), col(Device.name)), else_=None)


def plate_column(row_org_id: Any, row_time: Any) -> ColumnElement[str | None]:
    """The joined ``Device``'s plate for a row of its current tenure, else NULL."""
    return case((in_tenure(row_org_id, row_time), col(Device.plate)), else_=None)


def in_tenure_sql(device: str, row_org_id: str, row_time: str) -> str:
    """``in_tenure`` as a SQL fragment for raw statements (arguments are SQL expressions the
    caller writes, never input)."""
    return (
        f"({device}.org_id = {row_org_id} AND ({device}.assigned_at IS NULL"
        f" OR {row_time} >= {device}.assigned_at))"
    )


def holds(device: Device, row_org_id: uuid.UUID, row_time: datetime) -> bool:
    """``in_tenure`` for a device and a row already loaded."""
    return device.org_id == row_org_id and (
        device.assigned_at is None or row_time >= device.assigned_at
    )


def name_of(device: Device | None, row_org_id: uuid.UUID, row_time: datetime) -> str | None:
    """The device's name for a row of its current tenure, else None."""
    return device.name if device is not None and holds(device, row_org_id, row_time) else None


def read_as(schema: type[ReadT], row: object, vehicle_name: str | None) -> ReadT:
    """``row`` (a table row) as ``schema``, with the ``vehicle_name`` found for it."""
    return schema.model_validate(row).model_copy(update={"vehicle_name": vehicle_name})
