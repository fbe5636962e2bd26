"""bench/scale.py's pure parts: the lag-flatness verdict, the gateway fleet, the batching."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the benchmarks run from the checkout's root, not installed
    sys.path.insert(0, str(ROOT))

from bench.scale import GatewayPusher, Sample, gateway_fleet, verdict  # noqa: E402


def series(lags: list[float], every_s: float = 10.0) -> list[Sample]:
    return [Sample(i * every_s, lag, 0, 0) for i, lag in enumerate(lags)]


def test_a_lag_that_wobbles_around_the_same_level_is_flat() -> None:
    lags = [0.4, 1.8, 0.9, 2.1, 0.7] * 6 + [1.2]  # 300 s
    judged = verdict(series(lags))
    assert judged.flat
    assert judged.first_max_s == 2.1
    assert judged.last_max_s == 2.1
    assert abs(judged.slope_s_per_min) < 0.2


def test_a_lag_that_keeps_growing_is_not_flat() -> None:
    lags = [1.0 + 0.5 * i for i in range(31)]  # +3 s a minute for 300 s
    judged = verdict(series(lags))
    assert not judged.flat
    assert judged.last_max_s == 16.0
    assert judged.slope_s_per_min == pytest.approx(3.0)
    assert "falls behind" in judged.reason


def test_a_start_up_spike_that_recovers_is_flat_and_growth_within_tolerance_too() -> None:
    assert verdict(series([9.0, 4.0, 1.0] + [1.0] * 28)).flat
    assert verdict(series([1.0] * 25 + [5.5] * 6), tolerance_s=5.0).flat
    assert not verdict(series([1.0] * 25 + [6.5] * 6), tolerance_s=5.0).flat


def test_the_windows_shrink_for_short_probes_and_too_short_a_series_is_refused() -> None:
    probe = series([1.0, 1.0, 1.2, 3.0, 6.0, 9.0, 12.0])  # 60 s, window 20 s
    assert not verdict(probe, window_s=20.0).flat
    with pytest.raises(ValueError, match="span"):
        verdict(series([1.0, 1.0, 1.0]), window_s=60.0)


def test_the_gateway_fleet_is_the_simulators_with_trackers_only() -> None:
    specs = gateway_fleet(1500)
    assert {s.transport for s in specs} == {"batch"}
    assert specs[0].unique_id == "scale-0001"
    assert specs[-1].unique_id == "scale-1500"
    assert len({s.unique_id for s in specs}) == 1500
    assert specs[1].role == "low_battery"  # the simulator's roles are kept


def test_a_round_goes_out_in_batches_of_at_most_the_batch_size() -> None:
    from datetime import UTC, datetime

    from milepost_sim.fleet import Fleet

    sizes: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        n = len(json.loads(request.content)["positions"])
        sizes.append(n)
        return httpx.Response(
            202, json={"accepted": n, "rejected": 0, "duplicates": 0, "errors": []}
        )

    now = datetime.now(UTC)
    fleet = Fleet(gateway_fleet(25), 1, now.replace(hour=0, minute=0, second=0, microsecond=0))
    fixes = [f for f in (v.fix_at(now) for v in fleet.vehicles) if f is not None]
    client = httpx.Client(base_url="http://gateway", transport=httpx.MockTransport(answer))
    with GatewayPusher("http://gateway", "key", batch=10, client=client) as pusher:
        assert pusher.push_batch(fixes) is not None
    assert sizes == [10] * (len(fixes) // 10) + ([len(fixes) % 10] if len(fixes) % 10 else [])
    assert pusher.stats.accepted == len(fixes)
    assert pusher.stats.batches == len(sizes)
