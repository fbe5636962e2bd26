"""Whatever a client sends, the ingest parsers never answer 5xx (hypothesis through the app):
arbitrary bytes as JSON and NDJSON batches, as sent or gzip-encoded (whole, truncated or
corrupt), arbitrary JSON documents as batches, and OsmAnd fixes as arbitrary query strings,
form bodies and JSON bodies. Every refusal is the envelope."""

from __future__ import annotations

import gzip
import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from milepost_common.domain.api_keys.service import IssuedKey
from milepost_common.domain.devices.models import Device
from milepost_common.testing import fuzz

POSITIONS = "/ingest/v1/positions"
MEDIA_TYPES = ["application/json", "application/x-ndjson"]
OSMAND_NAMES = [
    "id",
    "deviceid",
    "timestamp",
    "lat",
    "lon",
    "location",
    "speed",
    "bearing",
    "heading",
    "altitude",
    "accuracy",
    "hdop",
    "batt",
    "charge",
    "driverUniqueId",
]

# The fixtures (one app, one device, one key) are shared by every example on purpose.
examples = settings(
    max_examples=fuzz.examples(default=30),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def position_like(device: Device) -> st.SearchStrategy[dict[str, Any]]:
    """An item with the fields of a position, each any JSON value or left out."""
    fields = {
        "device_id": st.sampled_from([device.unique_id, ""]) | json_values,
        "fix_time": st.sampled_from(["2026-01-01T00:00:00Z", "1970-01-01T00:00:00+14:00"])
        | json_values,
        "lat": st.floats(-90, 90) | json_values,
        "lon": st.floats(-180, 180) | json_values,
        "speed": json_values,
        "course": json_values,
        "altitude": json_values,
        "accuracy": json_values,
        "attributes": json_values,
    }
    return st.fixed_dictionaries({}, optional=fields)


def assert_no_server_error(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text)
    headers = {name.lower(): value for name, value in response.headers.items()}
    problem = fuzz.envelope_problem(response.status_code, headers, response.content)
    assert problem is None, problem


def push_headers(auth: dict[str, str], media_type: str, *, gzipped: bool) -> dict[str, str]:
    return {
        **auth,
        "Content-Type": media_type,
        **({"Content-Encoding": "gzip"} if gzipped else {}),
    }


class TestBatches:
    @examples
    @given(body=st.binary(max_size=2000), media_type=st.sampled_from(MEDIA_TYPES))
    async def test_any_bytes(
        self, client: httpx.AsyncClient, auth: dict[str, str], body: bytes, media_type: str
    ) -> None:
        response = await client.post(
            POSITIONS, content=body, headers=push_headers(auth, media_type, gzipped=False)
        )
        assert_no_server_error(response)

    @examples
    @given(
        body=st.binary(max_size=2000),
        media_type=st.sampled_from(MEDIA_TYPES),
        cut=st.integers(min_value=0, max_value=64),
        tail=st.binary(max_size=32),
    )
    async def test_any_bytes_gzipped_whole_cut_or_followed_by_garbage(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        body: bytes,
        media_type: str,
        cut: int,
        tail: bytes,
    ) -> None:
        encoded = gzip.compress(body)
        encoded = encoded[: len(encoded) - cut] + tail
        response = await client.post(
            POSITIONS, content=encoded, headers=push_headers(auth, media_type, gzipped=True)
        )
        assert_no_server_error(response)

    @examples
    @given(data=st.data(), gzipped=st.booleans())
    async def test_any_json_document(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        device: Device,
        data: st.DataObject,
        gzipped: bool,
    ) -> None:
        items = st.lists(position_like(device) | json_values, max_size=5)
        document = data.draw(st.fixed_dictionaries({"positions": items}) | json_values)
        body = json.dumps(document).encode()
        response = await client.post(
            POSITIONS,
            content=gzip.compress(body) if gzipped else body,
            headers=push_headers(auth, "application/json", gzipped=gzipped),
        )
        assert_no_server_error(response)

    @examples
    @given(data=st.data())
    async def test_any_ndjson_lines(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        device: Device,
        data: st.DataObject,
    ) -> None:
        line = st.builds(json.dumps, position_like(device) | json_values) | st.text(max_size=40)
        lines = data.draw(st.lists(line, max_size=6))
        response = await client.post(
            POSITIONS,
            content="\n".join(lines).encode(),
            headers=push_headers(auth, "application/x-ndjson", gzipped=False),
        )
        assert_no_server_error(response)


class TestOsmand:
    @examples
    @given(
        params=st.lists(
            st.tuples(st.sampled_from(OSMAND_NAMES) | st.text(max_size=10), st.text(max_size=30)),
            max_size=10,
        ),
        known_device=st.booleans(),
        method=st.sampled_from(["GET", "POST", "PUT"]),
    )
    async def test_any_query_string(
        self,
        client: httpx.AsyncClient,
        api_key: IssuedKey,
        device: Device,
        params: list[tuple[str, str]],
        known_device: bool,
        method: str,
    ) -> None:
        if known_device:
            params = [("id", device.unique_id), *params]
        response = await client.request(method, f"/ingest/osmand/{api_key.secret}", params=params)
        assert_no_server_error(response)

    @examples
    @given(body=st.binary(max_size=1000), gzipped=st.booleans())
    async def test_any_form_body(
        self, client: httpx.AsyncClient, api_key: IssuedKey, body: bytes, gzipped: bool
    ) -> None:
        response = await client.post(
            f"/ingest/osmand/{api_key.secret}",
            content=gzip.compress(body) if gzipped else body,
            headers=push_headers({}, "application/x-www-form-urlencoded", gzipped=gzipped),
        )
        assert_no_server_error(response)

    @examples
    @given(data=st.data(), raw=st.binary(max_size=200), use_raw=st.booleans())
    async def test_any_json_body(
        self,
        client: httpx.AsyncClient,
        api_key: IssuedKey,
        device: Device,
        data: st.DataObject,
        raw: bytes,
        use_raw: bool,
    ) -> None:
        location = st.fixed_dictionaries(
            {},
            optional={
                "timestamp": json_values,
                "coords": st.fixed_dictionaries(
                    {},
                    optional=dict.fromkeys(
                        ("latitude", "longitude", "speed", "heading", "altitude"), json_values
                    ),
                )
                | json_values,
                "battery": st.fixed_dictionaries(
                    {}, optional={"level": json_values, "is_charging": json_values}
                ),
                "is_moving": json_values,
                "extras": json_values,
                "activity": json_values,
            },
        )
        document = data.draw(
            st.fixed_dictionaries(
                {"location": location | json_values},
                optional={"device_id": st.just(device.unique_id) | json_values},
            )
            | json_values
        )
        response = await client.post(
            f"/ingest/osmand/{api_key.secret}",
            content=raw if use_raw else json.dumps(document).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert_no_server_error(response)
