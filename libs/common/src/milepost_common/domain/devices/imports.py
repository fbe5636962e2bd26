"""Operators' CSV import of an organization's devices: every valid row registered, the
others reported line by line with a code."""

from __future__ import annotations

import csv
import io

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.audit import service as audit
from milepost_common.domain.devices.errors import DeviceLimitReached
from milepost_common.domain.devices.models import Device
from milepost_common.domain.devices.repository import DeviceRepository
from milepost_common.domain.devices.schemas import (
    IMPORT_COLUMNS,
    MAX_IMPORT_ROWS,
    DeviceImportReport,
    ImportRow,
    ImportRowCode,
    ImportRowStatus,
    VehicleCreate,
)
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.principals import Principal
from milepost_common.errors import BadRequest, PayloadTooLarge


def _failure(line: int, unique_id: str | None, code: ImportRowCode, message: str) -> ImportRow:
    return ImportRow(
        line=line, unique_id=unique_id, status=ImportRowStatus.FAILED, code=code, message=message
    )


def _taken(line: int, unique_id: str) -> ImportRow:
    return _failure(line, unique_id, ImportRowCode.UNIQUE_ID_TAKEN, "This unique_id is in use.")


def _parse_rows(text: str) -> list[tuple[int, dict[str, str]]]:
    """The non-blank rows by line number. Raises BadRequest for a file the csv module cannot
    read (a field over its size limit) or without the header."""
    try:
        return _read_rows(text)
    except csv.Error as exc:
        raise BadRequest(f"The CSV cannot be read: {exc}.") from None


def _read_rows(text: str) -> list[tuple[int, dict[str, str]]]:
    # newline="": lines end in \n, \r\n or a lone \r (as the csv module expects its input).
    source = io.StringIO(text.lstrip("\ufeff"), newline="")
    reader = csv.reader(source, skipinitialspace=True)
    header = [name.strip() for name in next(reader, [])]
    if "unique_id" not in header or "name" not in header:
        raise BadRequest(
            "The CSV needs a header line with at least unique_id and name "
            f"(known columns: {', '.join(IMPORT_COLUMNS)})."
        )
    rows: list[tuple[int, dict[str, str]]] = []
    # A row is reported at the line it starts on: a quoted value may span lines, and
    # the reader's line_num is where the row ends.
    first_line = reader.line_num + 1
    for record in reader:
        line, first_line = first_line, reader.line_num + 1
        values = {
            name: value.strip()
            for name, value in zip(header, record, strict=False)
            if name in IMPORT_COLUMNS
        }
        if not any(values.values()):
            continue
        if len(rows) >= MAX_IMPORT_ROWS:
            raise PayloadTooLarge(f"At most {MAX_IMPORT_ROWS} devices per import.")
        rows.append((line, values))
    return rows


async def import_devices(
    session: AsyncSession, actor: Principal, org: Organization, text: str
) -> DeviceImportReport:
    """Register every valid row of a CSV (``unique_id,name[,plate][,speed_limit_kmh]``);
    the others are reported with a code, line by line. Raises BadRequest without the
    header and PayloadTooLarge over 10,000 rows. Audited once (``devices.import``)."""
    parsed = _parse_rows(text)
    candidates: list[tuple[int, VehicleCreate]] = []
    report: dict[int, ImportRow] = {}
    seen: set[str] = set()
    for line, values in parsed:
        unique_id = values.get("unique_id") or None
        held = next((name for name, value in values.items() if "\x00" in value), None)
        if held is not None:
            # Postgres stores no NUL: without this the whole file would be refused (422).
            shown = unique_id.replace("\x00", "\ufffd") if unique_id else None
            report[line] = _failure(
                line, shown, ImportRowCode.INVALID_FIELD, f"{held}: holds a NUL character."
            )
            continue
        try:
            # An empty cell is an absent value: a missing name reads "Field required".
            data = VehicleCreate.model_validate({k: v for k, v in values.items() if v})
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(p) for p in problem["loc"])
            report[line] = _failure(
                line, unique_id, ImportRowCode.INVALID_FIELD, f"{where}: {problem['msg']}"
            )
            continue
        if data.unique_id in seen:
            report[line] = _failure(
                line, data.unique_id, ImportRowCode.DUPLICATE_IN_FILE, "Repeated in this file."
            )
            continue
        seen.add(data.unique_id)
        candidates.append((line, data))

    repository = DeviceRepository(session)
    taken: set[str] = set()
    if candidates:
        taken = await repository.unique_ids_taken([data.unique_id for _, data in candidates])

    await repository.relock_org(org)
    room = (
        None
        if org.max_devices is None
        else org.max_devices - await repository.count_for_org(org.id)
    )
    devices: list[tuple[int, Device]] = []
    for line, data in candidates:
        if data.unique_id in taken:
            report[line] = _taken(line, data.unique_id)
        elif room is not None and len(devices) >= room:
            report[line] = _failure(
                line, data.unique_id, ImportRowCode.DEVICE_LIMIT, DeviceLimitReached.default_message
            )
        else:
            devices.append((line, Device(org_id=org.id, **data.model_dump())))
    # An id taken since it was looked up (the same file sent twice at once, another
    # organization's import or registration) fails its line, not the whole file.
    inserted = await repository.insert_new([device for _, device in devices])
    for line, device in devices:
        if device.unique_id not in inserted:
            report[line] = _taken(line, device.unique_id)
    devices = [(line, device) for line, device in devices if device.unique_id in inserted]
    for line, device in devices:
        report[line] = ImportRow(
            line=line,
            unique_id=device.unique_id,
            status=ImportRowStatus.CREATED,
            device_id=device.id,
        )
    result = DeviceImportReport(
        created=len(devices),
        failed=len(report) - len(devices),
        rows=[report[line] for line in sorted(report)],
    )
    await audit.record(
        session,
        actor,
        "devices.import",
        target_type="organization",
        target_id=org.id,
        org_id=org.id,
        diff={
            "created": result.created,
            "failed": result.failed,
            "unique_ids": [device.unique_id for _, device in devices][:1000],
        },
    )
    return result
