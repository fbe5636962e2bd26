"""The invariants of every pod deploy/kubernetes runs, on the rendered overlays: hardening,
resources, probes, zero-downtime rollouts, the schema wait, scaling, disruption budgets, the
images the Dockerfile builds, and the settings each process loads from its environment (with
the secrets only the processes that use them get)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from app_support import load_settings
from kubernetes_support import (
    APPS,
    INIT_CONTAINER,
    OVERLAYS,
    SETTINGS,
    WORKERS,
    Object,
    Pod,
    container_env,
    dockerfile_stages,
    find,
    image_name,
    image_targets,
    known_variables,
    lookup,
    of_kind,
    pod,
    pods,
    render,
    secret_variables,
    selects,
    settings_class,
    target_of,
)

from milepost_common.tasks import QUEUE_WEBHOOKS
from milepost_worker.celery_app import PROCESSING_QUEUES
from milepost_worker.cli import consumed_queues, ping_parser
from milepost_worker.settings import WorkerSettings

# The image each Milepost pod runs (a Dockerfile target).
TARGETS = {
    "api": "api",
    "admin": "admin",
    "ingest": "ingest",
    "worker": "worker",
    "worker-webhooks": "worker",
    "beat": "beat",
    "migrate": "migrate",
}
# How long the gateway may still send a request to a pod that has begun terminating: the
# EndpointSlice update reaching Traefik (its CRD provider's throttle, at most 5 s, plus the
# watch's delay). The preStop pause must outlast it.
GATEWAY_DEREGISTRATION_S = 10
# After the pause: in-flight requests and open live streams get this long.
APP_DRAIN_S = 30
API_TOKEN_KEYS = {"MILEPOST_AUTH__JWT_KEYS", "MILEPOST_AUTH__JWT_ACTIVE_KID"}
ADMIN_TOKEN_KEYS = {
    "MILEPOST_AUTH__ADMIN_JWT_KEYS",
    "MILEPOST_AUTH__ADMIN_JWT_ACTIVE_KID",
    "MILEPOST_ADMIN__COOKIE_KEY",
}
DB_URL, REDIS_URL = "MILEPOST_DB__URL", "MILEPOST_REDIS__URL"
SECRETS_KEY, PEPPER = "MILEPOST_AUTH__SECRETS_KEY", "MILEPOST_AUTH__API_KEY_PEPPER"


def cases() -> list[Any]:
    """(overlay, pod name) for every Milepost pod of every overlay."""
    return [
        pytest.param(overlay, p.name, id=f"{overlay}-{p.name}")
        for overlay in OVERLAYS
        for p in pods(render(overlay))
        if p.milepost
    ]


def queues_of(container: Object) -> set[str]:
    return consumed_queues(container.get("args", [])[1:]) or set(PROCESSING_QUEUES)


def expected_secrets(p: Pod, container: Object) -> set[str]:
    """What the code says each process uses: its realms' token keys, the webhook secrets key
    where the settings declare it or the webhooks queue is consumed, the API key pepper in the
    apps (they issue or check API keys), Postgres everywhere but beat, Redis everywhere but
    the schema's processes."""
    if container["name"] == INIT_CONTAINER or p.name == "migrate":
        return {DB_URL}
    cls = SETTINGS[p.name]
    expected = {REDIS_URL} if p.name == "beat" else {DB_URL, REDIS_URL}
    if "api" in cls.token_realms:
        expected |= API_TOKEN_KEYS
    if "admin" in cls.token_realms:
        expected |= ADMIN_TOKEN_KEYS
    if cls.uses_secrets_key or (p.name in WORKERS and QUEUE_WEBHOOKS in queues_of(container)):
        expected.add(SECRETS_KEY)
    if p.name in APPS:
        expected.add(PEPPER)
    return expected


@pytest.mark.parametrize(("overlay", "name"), cases())
class TestEveryPod:
    def test_runs_hardened(self, overlay: str, name: str) -> None:
        p = pod(render(overlay), name)
        spec = p.spec

        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        assert spec["enableServiceLinks"] is False
        assert not {"hostNetwork", "hostPID", "hostIPC"} & set(spec)
        for container in p.containers():
            context = container["securityContext"]
            assert context == {
                "runAsNonRoot": True,
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }, container["name"]

    def test_writes_only_to_its_own_empty_dirs(self, overlay: str, name: str) -> None:
        p = pod(render(overlay), name)
        volumes = {v["name"]: v for v in p.spec.get("volumes", [])}

        for container in p.containers():
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, container["name"]  # noqa: S108 - an emptyDir of its own
            assert all(set(volumes[v]) == {"name", "emptyDir"} for v in mounts.values())
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            if "PROMETHEUS_MULTIPROC_DIR" in env:
                assert env["PROMETHEUS_MULTIPROC_DIR"] in mounts

    def test_requests_resources_and_limits_its_memory(self, overlay: str, name: str) -> None:
        for container in pod(render(overlay), name).containers():
            resources = container["resources"]
            # No CPU limit: throttling would only add latency; requests schedule the pods.
            assert set(resources["requests"]) == {"cpu", "memory"}, container["name"]
            assert set(resources["limits"]) == {"memory"}, container["name"]

    def test_runs_its_dockerfile_target(self, overlay: str, name: str) -> None:
        p = pod(render(overlay), name)
        stages = dockerfile_stages()

        assert target_of(p.main) == TARGETS[name]
        assert TARGETS[name] in image_targets()
        image_command = stages[TARGETS[name]].cmd
        assert image_command
        command = p.main.get("command") or p.main.get("args") or image_command
        assert command[0] == image_command[0]
        for init in p.spec.get("initContainers", []):
            assert init["image"] == p.main["image"]

    def test_reads_every_setting_it_needs_from_its_environment(
        self, overlay: str, name: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        objects = render(overlay)
        p = pod(objects, name)

        for container in p.containers():
            env = container_env(objects, container)
            cls = settings_class(p, container)
            own = {e["name"] for e in container.get("env", []) if e["name"].startswith("MILEPOST_")}
            assert own <= known_variables(cls), container["name"]

            settings = load_settings(cls, env, monkeypatch)

            assert settings.env == "production"
            if DB_URL in env:
                assert urlsplit(settings.db.url).hostname == urlsplit(env[DB_URL]).hostname
            if REDIS_URL in env:
                assert settings.redis.url == env[REDIS_URL]

    def test_gets_the_secrets_it_uses_and_no_other(self, overlay: str, name: str) -> None:
        p = pod(render(overlay), name)

        for container in p.containers():
            assert secret_variables(container) == expected_secrets(p, container), container["name"]

    def test_holds_the_keys_of_its_own_realm_only(
        self, overlay: str, name: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        objects = render(overlay)
        p = pod(objects, name)
        container = p.main

        settings = load_settings(
            settings_class(p, container), container_env(objects, container), monkeypatch
        )

        held = {f for f in ("jwt_keys", "admin_jwt_keys") if getattr(settings.auth, f)}
        assert held == {"api": {"jwt_keys"}, "admin": {"admin_jwt_keys"}}.get(name, set())
        assert (settings.auth.secrets_key is not None) == (name in {"api", "worker-webhooks"})


def test_the_shared_config_names_only_variables_some_process_reads() -> None:
    known = set().union(*(known_variables(cls) for cls in SETTINGS.values()))
    for overlay in OVERLAYS:
        (config,) = [
            o
            for o in of_kind(render(overlay), "ConfigMap")
            if o["metadata"]["name"].startswith("milepost-config-")
        ]
        assert set(config["data"]) <= known
        assert not set(config["data"]) & (API_TOKEN_KEYS | ADMIN_TOKEN_KEYS | {SECRETS_KEY})


@pytest.mark.parametrize("overlay", OVERLAYS)
class TestApps:
    @pytest.mark.parametrize("app", APPS)
    def test_probes_health_and_ready_on_the_port_it_listens_on(
        self, overlay: str, app: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        objects = render(overlay)
        container = pod(objects, app).main
        http = getattr(
            load_settings(SETTINGS[app], container_env(objects, container), monkeypatch), app
        )

        # The HTTP port, and the metrics port of their own (test_kubernetes_network.py).
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert ports == {"http": http.port, "metrics": http.metrics_port}
        assert http.host == "0.0.0.0"  # noqa: S104 - inside its pod
        for probe, path in (
            ("startupProbe", "health"),
            ("livenessProbe", "health"),
            ("readinessProbe", "ready"),
        ):
            assert container[probe]["httpGet"] == {"path": f"/{app}/{path}", "port": "http"}

    @pytest.mark.parametrize("app", APPS)
    def test_rolls_out_without_downtime(self, overlay: str, app: str) -> None:
        deployment = find(render(overlay), "Deployment", app)
        spec = deployment["spec"]["template"]["spec"]
        (container,) = spec["containers"]

        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] >= 1
        pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pause >= GATEWAY_DEREGISTRATION_S
        assert spec["terminationGracePeriodSeconds"] >= pause + APP_DRAIN_S

    @pytest.mark.parametrize("app", APPS)
    def test_is_scaled_by_its_hpa_only(self, overlay: str, app: str) -> None:
        objects = render(overlay)

        hpa = find(objects, "HorizontalPodAutoscaler", app)
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": app,
        }
        assert "replicas" not in find(objects, "Deployment", app)["spec"]
        service = find(objects, "Service", app)
        assert service["spec"]["selector"] == {"app.kubernetes.io/name": app}
        assert service["spec"]["ports"][0]["targetPort"] == "http"


@pytest.mark.parametrize("overlay", OVERLAYS)
class TestWorkersAndJobs:
    @pytest.mark.parametrize("name", [*APPS, *WORKERS])
    def test_waits_for_its_releases_schema_before_starting(self, overlay: str, name: str) -> None:
        p = pod(render(overlay), name)

        (init,) = p.spec["initContainers"]
        assert init["name"] == INIT_CONTAINER
        assert init["command"][:3] == ["milepost-migrate", "--check", "--wait"]
        assert int(init["command"][3]) >= 60

    def test_the_migrate_job_upgrades_the_schema(self, overlay: str) -> None:
        job = find(render(overlay), "Job", "migrate")
        container = job["spec"]["template"]["spec"]["containers"][0]

        assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
        assert "command" not in container  # the image's CMD: milepost-migrate
        assert dockerfile_stages()["migrate"].cmd == ["milepost-migrate"]

    def test_exactly_one_beat_even_during_rollouts(self, overlay: str) -> None:
        objects = render(overlay)
        beat = find(objects, "Deployment", "beat")

        assert beat["spec"]["replicas"] == 1
        assert beat["spec"]["strategy"] == {"type": "Recreate"}
        scaled = {
            o["spec"]["scaleTargetRef"]["name"]
            for o in [
                *of_kind(objects, "HorizontalPodAutoscaler"),
                *of_kind(objects, "ScaledObject"),
            ]
        }
        assert "beat" not in scaled

    @pytest.mark.parametrize("name", WORKERS)
    def test_workers_scale_on_the_depth_of_the_queues_they_consume(
        self, overlay: str, name: str
    ) -> None:
        objects = render(overlay)
        deployment = find(objects, "Deployment", name)
        container = pod(objects, name).main
        scaled = find(objects, "ScaledObject", name)
        redis_url = container_env(objects, container)[REDIS_URL]

        assert "replicas" not in deployment["spec"]
        assert scaled["spec"]["scaleTargetRef"] == {"name": name}
        triggers = scaled["spec"]["triggers"]
        assert {t["metadata"]["listName"] for t in triggers} == queues_of(container)
        for trigger in triggers:
            assert trigger["type"] == "redis"
            # Celery's lists are in the broker's DB, the one in the processes' URL.
            assert trigger["metadata"]["databaseIndex"] == urlsplit(redis_url).path.strip("/")
            auth = find(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])
            params = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
            address = lookup(objects, "Secret", params["address"]["name"])["address"]
            assert address == urlsplit(redis_url).netloc.rsplit("@", 1)[-1]
        # Never to zero: a batch never waits for a pod to start; two survive a lost pod.
        assert scaled["spec"]["minReplicaCount"] >= (2 if overlay == "production" else 1)

    @pytest.mark.parametrize("name", WORKERS)
    def test_workers_finish_their_tasks_before_being_killed(self, overlay: str, name: str) -> None:
        p = pod(render(overlay), name)
        limits = WorkerSettings(_env_file=None)
        hard_limit = (
            limits.worker.task_time_limit_s
            if queues_of(p.main) & set(PROCESSING_QUEUES)
            else limits.webhook_task_limits_s[1]
        )

        assert p.spec["terminationGracePeriodSeconds"] > hard_limit
        rollout = p.workload["spec"]["strategy"]["rollingUpdate"]
        assert rollout["maxUnavailable"] == 0

    @pytest.mark.parametrize("name", WORKERS)
    def test_each_worker_pod_probes_its_own_node(self, overlay: str, name: str) -> None:
        container = pod(render(overlay), name).main
        probe = container["livenessProbe"]
        command = ping_parser().parse_args(probe["exec"]["command"][1:])
        args = container["args"]
        node = args[args.index("--hostname") + 1] if "--hostname" in args else "celery@%h"

        assert probe["exec"]["command"][0] == "milepost-worker-ping"
        assert command.liveness
        assert command.node == node  # the node this pod's worker runs as, not another's
        # The ping's wait and the interpreter's start fit in the probe's time.
        assert command.timeout + 3 <= probe["timeoutSeconds"]

    def test_every_app_and_worker_group_has_a_disruption_budget(self, overlay: str) -> None:
        objects = render(overlay)
        budgets = of_kind(objects, "PodDisruptionBudget")

        for name in [*APPS, *WORKERS]:
            labels = pod(objects, name).labels
            (budget,) = [b for b in budgets if selects(b["spec"]["selector"], labels)]
            assert budget["spec"]["maxUnavailable"] == 1
            assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
        for budget in budgets:
            chosen = [
                p.name for p in pods(objects) if selects(budget["spec"]["selector"], p.labels)
            ]
            assert len(chosen) == 1, budget["metadata"]["name"]
            assert chosen != ["beat"]


def test_images_of_the_backing_services_are_pinned_and_dev_only() -> None:
    for overlay in OVERLAYS:
        for p in pods(render(overlay)):
            for container in p.containers():
                image = image_name(container["image"])
                if p.milepost:
                    assert image.startswith("milepost-"), container["image"]
                else:
                    assert overlay == "dev"
                    assert ":" in container["image"]
                    assert not container["image"].endswith(":latest")
