"""The pusher's wire format and its retries (against a recorded transport; the real ingest
behind the gateway is exercised in tests/e2e/test_sim.py)."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime

import httpx
import pytest

from milepost_sim.fixes import SimFix
from milepost_sim.push import BatchFormat, Pusher, PushRefused, retry_after_s

FIX = SimFix("van-1", datetime(2026, 3, 2, 8, 0, 1, tzinfo=UTC), 52.52, 13.405, 42.5)
ANSWER = {"batch_id": "b", "accepted": 1, "rejected": 0, "duplicates": 0, "errors": []}


def pusher_with(
    answers: list[httpx.Response],
    seen: list[httpx.Request],
    *,
    fmt: BatchFormat = "json",
    compress: bool = False,
    max_attempts: int = 10,
) -> tuple[Pusher, list[float]]:
    slept: list[float] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    client = httpx.Client(base_url="http://gateway", transport=httpx.MockTransport(handle))
    pusher = Pusher(
        "http://gateway",
        "mpk_secret",
        fmt=fmt,
        compress=compress,
        max_attempts=max_attempts,
        client=client,
        sleep=slept.append,
    )
    return pusher, slept


def accepted() -> httpx.Response:
    return httpx.Response(202, json=ANSWER)


class TestBatches:
    def test_json_batch_carries_the_key_and_an_idempotency_key(self) -> None:
        seen: list[httpx.Request] = []
        pusher, _ = pusher_with([accepted()], seen)

        pusher.push_batch([FIX])

        request = seen[0]
        assert request.url.path == "/ingest/v1/positions"
        assert request.headers["Authorization"] == "Bearer mpk_secret"
        assert request.headers["Idempotency-Key"]
        assert json.loads(request.content) == {"positions": [FIX.to_item()]}
        assert pusher.stats.accepted == 1

    def test_ndjson_gzip_batch_decodes_to_one_line_per_fix(self) -> None:
        seen: list[httpx.Request] = []
        pusher, _ = pusher_with([accepted()], seen, fmt="ndjson", compress=True)

        pusher.push_batch([FIX, FIX])

        request = seen[0]
        assert request.headers["Content-Type"] == "application/x-ndjson"
        assert request.headers["Content-Encoding"] == "gzip"
        lines = gzip.decompress(request.content).decode().splitlines()
        assert [json.loads(line) for line in lines] == [FIX.to_item(), FIX.to_item()]


class TestRetries:
    @pytest.mark.parametrize("status", [429, 503])
    def test_deferred_batch_is_sent_again_after_retry_after_with_the_same_key(
        self, status: int
    ) -> None:
        seen: list[httpx.Request] = []
        deferred = httpx.Response(status, headers={"Retry-After": "7"}, json={"error": {}})
        pusher, slept = pusher_with([deferred, accepted()], seen)

        answer = pusher.push_batch([FIX])

        assert answer == ANSWER
        assert slept == [7.0]
        assert seen[0].headers["Idempotency-Key"] == seen[1].headers["Idempotency-Key"]
        assert seen[0].content == seen[1].content
        assert pusher.stats.retries == 1

    def test_without_retry_after_the_wait_grows(self) -> None:
        seen: list[httpx.Request] = []
        pusher, slept = pusher_with([httpx.Response(502), httpx.Response(502), accepted()], seen)

        pusher.push_batch([FIX])

        assert slept == [0.25, 0.5]

    def test_gives_up_after_the_last_attempt_and_counts_the_fixes_failed(self) -> None:
        seen: list[httpx.Request] = []
        pusher, slept = pusher_with([httpx.Response(503)] * 3, seen, max_attempts=3)

        assert pusher.push_batch([FIX]) is None
        assert pusher.stats.failed == 1
        assert len(slept) == 2

    def test_a_refusal_is_not_retried(self) -> None:
        seen: list[httpx.Request] = []
        pusher, slept = pusher_with([httpx.Response(401, json={"error": {}})], seen)

        with pytest.raises(PushRefused, match="401"):
            pusher.push_batch([FIX])
        assert slept == []

    def test_retry_after_may_be_an_http_date(self) -> None:
        now = datetime(2026, 3, 2, 8, 0, 0, tzinfo=UTC)
        response = httpx.Response(503, headers={"Retry-After": "Mon, 02 Mar 2026 08:00:12 GMT"})

        assert retry_after_s(response, now) == 12.0


class TestOsmand:
    def test_fix_goes_as_query_parameters_with_knots(self) -> None:
        seen: list[httpx.Request] = []
        pusher, _ = pusher_with([httpx.Response(200)], seen)

        assert pusher.push_osmand(FIX)

        params = seen[0].url.params
        assert seen[0].url.path == "/ingest/osmand/mpk_secret"
        assert params["id"] == "van-1"
        assert params["timestamp"] == str(int(FIX.fix_time.timestamp()))
        assert float(params["speed"]) * 1.852 == pytest.approx(42.5)

    def test_an_unknown_phone_is_its_own_rejection_not_the_end_of_the_run(self) -> None:
        # A phone deleted in the console: ingest answers 400 "Unknown device." to its fixes;
        # the whole background fleet stopped with it.
        seen: list[httpx.Request] = []
        unknown = httpx.Response(
            400, json={"error": {"code": "bad_request", "message": "Unknown device."}}
        )
        pusher, _ = pusher_with([unknown, httpx.Response(200)], seen)

        first, second = pusher.push_osmand(FIX), pusher.push_osmand(FIX)

        assert (first, second) == (False, True)
        assert (pusher.stats.rejected, pusher.stats.codes["unknown_device"]) == (1, 1)

    def test_a_refused_key_still_stops_the_run(self) -> None:
        pusher, _ = pusher_with([httpx.Response(401, json={"error": {"code": "unauthorized"}})], [])

        with pytest.raises(PushRefused):
            pusher.push_osmand(FIX)
