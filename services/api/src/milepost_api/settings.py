"""Settings of the api app: the common groups plus its own `api` group (MILEPOST_API__*)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from milepost_common.settings import (
    CommonSettings,
    DbSettings,
    DownloadSettings,
    HttpSettings,
    PlanCacheMode,
    load_settings,
)


class ApiHttp(HttpSettings, DownloadSettings):
    port: int = Field(8001, ge=1, le=65535)
    public_url: str = Field(
        "http://127.0.0.1:8080",
        description="Where people reach the platform: the invitation and reset links that owners"
        " hand out start here and open the api's own pages (/api/account/...).",
    )
    latest_positions_cache_s: int = Field(
        10,
        ge=0,
        description="Upper bound (a drop racing a fill is stale at most this long); the worker"
        " drops the entry on every position event. Also the longest a process serves its own"
        " copy without asking Redis, should Redis's reports of changes stop reaching it"
        " unnoticed.",
    )
    summary_cache_s: int = Field(60, ge=0, description="Summary reports cached this long.")
    summary_concurrency: int = Field(
        2,
        ge=1,
        description="Summary reports computed at once by one api process (a cached one is"
        " not computed); the others wait their turn. Each is work for the process's one"
        " thread, so more at once would add only their memory: a year of a 1,000-vehicle"
        " fleet holds ~240 MB while it is written.",
    )
    stream_auth_timeout_s: float = Field(5.0, gt=0, description="First message must be auth.")
    stream_ping_interval_s: float = Field(20.0, gt=0)
    stream_queue_size: int = Field(
        256, ge=1, description="Messages buffered per connection before it is cut off (4429)."
    )
    max_alert_rules_per_org: int = Field(
        1000,
        ge=1,
        description="Alert rules one organization may have: every rule is checked against"
        " every fix of the vehicles it covers (~0.6 µs each in the worker), so the count is"
        " bounded for the tenants sharing the workers; one more answers 409.",
    )
    max_rule_vehicles_per_org: int = Field(
        100_000,
        ge=1,
        description="Vehicles the alert rules of one organization may name in all (a rule"
        " for every vehicle, `vehicle_ids: null`, names none): the workers read every"
        " enabled rule's list for each of the organization's batches (100 rules of 10,000"
        " vehicles: 0.8 s a batch); a list that would go over answers 409.",
    )
    max_geofence_vertices_per_org: int = Field(
        200_000,
        ge=1,
        description="Vertices the geofences of one organization may hold in all (a circle"
        " counts one): the workers read every fence a rule watches for each batch and measure"
        " every covered fix against it; a geometry that would go over answers 409.",
    )
    max_webhooks_per_org: int = Field(
        50,
        ge=1,
        description="Webhook endpoints one organization may have (each event is delivered to"
        " every one); one more answers 409.",
    )
    max_api_keys_per_org: int = Field(
        100,
        ge=1,
        description="Usable (not revoked, not expired) ingest keys one organization may have:"
        " each key has the ingest rate limit to itself, so the count bounds what one"
        " organization can push; one more answers 409.",
    )
    max_users_per_org: int = Field(
        1000,
        ge=1,
        description="Active members (invitations not yet accepted included) one organization"
        " may have: each member has the api rate limit and stream_max_per_user streams to"
        " itself; one more invitation answers 409.",
    )
    stream_max_per_user: int = Field(
        20,
        ge=1,
        description="Streams one user may hold open in one api process; one more is closed"
        " with 1008 (every tab of a browser and every app holds one).",
    )
    stream_max_per_org: int = Field(
        200,
        ge=1,
        description="Streams the users of one organization may hold open in one api process"
        " in all: each of the organization's events is handed to every one of them in the"
        " event loop the process's tenants share; one more is closed with 1008.",
    )
    stream_send_timeout_s: float = Field(
        5.0, gt=0, description="A client that cannot take one message this long is cut off."
    )


class ApiDb(DbSettings):
    # Every api query is a short keyed lookup whose best plan does not depend on its
    # parameters; by default Postgres re-plans a prepared statement per execution while a
    # custom plan looks cheaper, which for the position history (one index probe per daily
    # partition) costs three times the execution (measured 1.3-1.5 ms vs 0.5 ms).
    plan_cache_mode: PlanCacheMode = "force_generic_plan"


class ApiSettings(CommonSettings):
    token_realms = ("api",)
    uses_secrets_key = True  # webhook secrets: created, rotated, used by the test ping

    db: ApiDb = ApiDb()
    api: ApiHttp = ApiHttp()


@lru_cache
def get_settings() -> ApiSettings:
    return load_settings(ApiSettings)
