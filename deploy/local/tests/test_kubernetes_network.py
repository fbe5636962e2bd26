"""The network of deploy/kubernetes, on the rendered overlays.

- The apps trust X-Forwarded-For from the pod network only, where the network policies let
  only the gateway reach their HTTP port.
- The network policies deny by default and allow exactly: gateway -> the apps' HTTP port,
  apps and workers -> Postgres and Redis, the webhook senders -> the internet on 443/80,
  everyone -> DNS; and where the monitoring component is taken (production), Prometheus ->
  the port each app and worker serves its metrics on (a port of their own, never one anyone
  else reaches), through the one policy `prometheus-scrape`, nothing else.
- No app serves /metrics on its HTTP port in Kubernetes: each is given a metrics port.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from typing import Any

import pytest
from app_support import client_seen_by_app, load_settings
from kubernetes_support import (
    APPS,
    SETTINGS,
    WORKERS,
    Object,
    Pod,
    container_env,
    find,
    lookup,
    of_kind,
    pod,
    pods,
    render,
    selects,
)

OUTSIDE = "203.0.113.7"  # TEST-NET-3: a client on the internet
SPOOFED = "198.51.100.9"
GATEWAY_PEER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "traefik"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "traefik"}},
}
# The monitoring component's one scrape policy and its one peer: kube-prometheus-stack's
# Prometheus pods in the namespace `monitoring`.
PROMETHEUS_POLICY = "prometheus-scrape"
PROMETHEUS_PEER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}
# The kustomizations that take the monitoring component.
WITH_MONITORING = {"production"}
POSTGRES_CLIENTS = {"api", "admin", "ingest", "worker", "worker-webhooks", "migrate"}
REDIS_CLIENTS = {"api", "admin", "ingest", "worker", "worker-webhooks", "beat"}
WEBHOOK_SENDERS = {"api", "worker-webhooks"}
NOT_THE_INTERNET = [  # must stay unreachable for webhook senders (cloud metadata included)
    "10.0.0.1",
    "172.16.0.1",
    "192.168.0.1",
    "169.254.169.254",
    "127.0.0.1",
    "100.64.0.1",
]


class TestForwardedHeaders:
    @pytest.mark.parametrize("app", APPS)
    async def test_app_trusts_the_pod_network_where_only_the_gateway_reaches_it(
        self, overlay: str, app: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        objects = render(overlay)
        pod_cidr = ipaddress.ip_network(
            lookup(objects, "ConfigMap", "milepost-network")["pod-cidr"]
        )
        http = getattr(
            load_settings(
                SETTINGS[app], container_env(objects, pod(objects, app).main), monkeypatch
            ),
            app,
        )
        gateway = str(pod_cidr.network_address + 7)

        assert ipaddress.ip_network(http.forwarded_allow_ips) == pod_cidr
        assert pod_cidr.is_private
        assert await client_seen_by_app(http.forwarded_allow_ips, gateway, OUTSIDE) == OUTSIDE
        assert await client_seen_by_app(http.forwarded_allow_ips, OUTSIDE, SPOOFED) == OUTSIDE
        # Trusting the pod network is trusting the gateway: no one else may connect to the
        # HTTP port (Prometheus reaches the metrics port only: TestNetworkPolicies).
        assert ingress_by_port(objects, pod(objects, app)).get("http") == [GATEWAY_PEER]


# --- network policies -------------------------------------------------------------------


def policies_for(objects: list[Object], p: Pod, direction: str) -> list[Object]:
    return [
        policy
        for policy in of_kind(objects, "NetworkPolicy")
        if direction in policy["spec"]["policyTypes"]
        and selects(policy["spec"]["podSelector"], p.labels)
    ]


def container_ports(p: Pod) -> set[Any]:
    """The ports a policy can name for the pod: its containers' port names and numbers."""
    return {
        key
        for container in p.containers()
        for port in container.get("ports", [])
        for key in (port.get("name"), port["containerPort"])
        if key is not None
    }


def port_name(p: Pod, port: Any) -> Any:
    """A policy's port as the pod knows it: the name of the container port it is (by name or
    by number), else the number itself."""
    for container in p.containers():
        for declared in container.get("ports", []):
            if port in (declared.get("name"), declared["containerPort"]):
                return declared.get("name", declared["containerPort"])
    return port


def ingress_peers(objects: list[Object], p: Pod) -> list[tuple[Object, Any]]:
    """Who may connect to the pod, on which of its ports, through every policy that selects
    it (a policy's named port the pod does not have opens nothing). A rule without `from`
    or `ports` would open the pod to everyone or on every port: never allowed."""
    rules = [
        (policy["metadata"]["name"], rule)
        for policy in policies_for(objects, p, "Ingress")
        for rule in policy["spec"].get("ingress", [])
    ]
    for name, rule in rules:
        assert rule.get("from"), f"{name}: from anyone"
        assert rule.get("ports"), f"{name}: on any port"
    return [
        (peer, port_name(p, port["port"]))
        for _, rule in rules
        for peer in rule["from"]
        for port in rule["ports"]
        if isinstance(port["port"], int) or port["port"] in container_ports(p)
    ]


def ingress_by_port(objects: list[Object], p: Pod) -> dict[Any, list[Object]]:
    """The pod's ports anyone may reach -> who may reach each."""
    by_port: dict[Any, list[Object]] = defaultdict(list)
    for peer, port in ingress_peers(objects, p):
        by_port[port].append(peer)
    return dict(by_port)


def scraped_ports(objects: list[Object], p: Pod) -> set[str]:
    """The ports the PodMonitors scrape on the pod (at /metrics)."""
    ports = set()
    for monitor in of_kind(objects, "PodMonitor"):
        if selects(monitor["spec"]["selector"], p.labels):
            for endpoint in monitor["spec"]["podMetricsEndpoints"]:
                assert endpoint["path"] == "/metrics", monitor["metadata"]["name"]
                ports.add(endpoint["port"])
    return ports


def egress(objects: list[Object], p: Pod) -> list[tuple[Object, int]]:
    return [
        (peer, port["port"])
        for policy in policies_for(objects, p, "Egress")
        for rule in policy["spec"].get("egress", [])
        for peer in rule["to"]
        for port in rule["ports"]
    ]


def reaches_internet_only(peer: Object) -> bool:
    block = peer.get("ipBlock")
    if block is None or block["cidr"] not in ("0.0.0.0/0", "::/0"):
        return False
    excluded = [ipaddress.ip_network(e) for e in block.get("except", [])]
    if block["cidr"] == "::/0":
        return {"::1/128", "fc00::/7", "fe80::/10"} <= {str(e) for e in excluded}
    return all(
        any(ipaddress.ip_address(a) in e for e in excluded if e.version == 4)
        for a in NOT_THE_INTERNET
    )


def in_namespace(objects: list[Object], peer: Object, names: set[str]) -> bool:
    """A peer of pods of this namespace that selects exactly the pods named `names`."""
    if set(peer) != {"podSelector"}:
        return False
    chosen = {p.name for p in pods(objects) if selects(peer["podSelector"], p.labels)}
    return chosen == names


class TestNetworkPolicies:
    def test_everything_is_denied_by_default(self, overlay: str) -> None:
        policy = find(render(overlay), "NetworkPolicy", "default-deny")

        assert policy["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}

    def test_every_policy_selects_pods_that_exist(self, overlay: str) -> None:
        objects = render(overlay)

        for policy in of_kind(objects, "NetworkPolicy"):
            assert any(selects(policy["spec"]["podSelector"], p.labels) for p in pods(objects))

    def test_the_http_port_from_the_gateway_only_the_metrics_port_from_prometheus_only(
        self, overlay: str
    ) -> None:
        objects = render(overlay)
        scrape = [PROMETHEUS_PEER] if overlay in WITH_MONITORING else None

        for p in pods(objects):
            peers = ingress_by_port(objects, p)
            if p.name in APPS:
                # The HTTP port from the gateway only; the metrics port from Prometheus only.
                expected = {"http": [GATEWAY_PEER], "metrics": scrape}
                assert peers == {k: v for k, v in expected.items() if v}, p.name
            elif p.name in WORKERS:
                assert peers == ({"metrics": scrape} if scrape else {}), p.name
            elif p.name == "postgres":
                port = port_name(p, 5432)
                assert list(peers) == [port]
                assert [in_namespace(objects, peer, POSTGRES_CLIENTS) for peer in peers[port]] == [
                    True
                ]
            elif p.name == "redis":
                port = port_name(p, 6379)
                assert list(peers) == [port]
                clients, keda = peers[port]
                assert in_namespace(objects, clients, REDIS_CLIENTS)
                assert keda["namespaceSelector"]["matchLabels"] == {
                    "kubernetes.io/metadata.name": "keda"
                }
            else:
                assert peers == {}, p.name

    @pytest.mark.parametrize("app", APPS)
    def test_no_app_serves_metrics_on_its_http_port(
        self, overlay: str, app: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        objects = render(overlay)
        p = pod(objects, app)
        http = getattr(
            load_settings(SETTINGS[app], container_env(objects, p.main), monkeypatch), app
        )
        ports = {port["name"]: port["containerPort"] for port in p.main["ports"]}

        # MILEPOST_<APP>__METRICS_PORT is set: web.serve serves the metrics there, the app
        # has no /metrics route (web.app), so the gateway's port carries none.
        assert http.metrics_port is not None
        assert ports == {"http": http.port, "metrics": http.metrics_port}
        assert http.metrics_host is None  # bound where the app is: every interface of the pod
        assert http.host == "0.0.0.0"  # noqa: S104 - inside its pod
        annotations = p.workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(http.metrics_port)

    def test_prometheus_reaches_only_the_metrics_ports_through_one_policy(
        self, overlay: str
    ) -> None:
        objects = render(overlay)
        with_prometheus = [
            policy
            for policy in of_kind(objects, "NetworkPolicy")
            for rule in policy["spec"].get("ingress", [])
            for peer in rule["from"]
            if peer.get("namespaceSelector") == PROMETHEUS_PEER["namespaceSelector"]
            or peer.get("podSelector") == PROMETHEUS_PEER["podSelector"]
        ]
        scrape = [
            p
            for p in of_kind(objects, "NetworkPolicy")
            if p["metadata"]["name"] == PROMETHEUS_POLICY
        ]

        if overlay not in WITH_MONITORING:
            assert (with_prometheus, scrape, of_kind(objects, "PodMonitor")) == ([], [], [])
            return
        (policy,) = scrape
        assert with_prometheus == [policy]
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        assert set(policy["spec"]) == {"podSelector", "policyTypes", "ingress"}
        assert [rule["from"] for rule in policy["spec"]["ingress"]] == [[PROMETHEUS_PEER]]
        chosen = {p.name for p in pods(objects) if selects(policy["spec"]["podSelector"], p.labels)}
        assert chosen == {*APPS, *WORKERS}
        for p in pods(objects):
            peers = ingress_by_port(objects, p)
            scraped = scraped_ports(objects, p)
            from_prometheus = {port for port, who in peers.items() if PROMETHEUS_PEER in who}
            if p.name in (*APPS, *WORKERS):
                # Exactly the ports the PodMonitors scrape: the pod's metrics port.
                assert scraped == {"metrics"} == from_prometheus, p.name
                assert scraped <= container_ports(p), p.name
            else:
                assert (from_prometheus, scraped) == (set(), set()), p.name
            # Each scraped port reached by Prometheus alone, never a port anyone else reaches.
            for port in scraped:
                assert peers[port] == [PROMETHEUS_PEER], (p.name, port)

    def test_each_pod_goes_only_where_it_must(self, overlay: str) -> None:
        objects = render(overlay)
        postgres = f"{overlay}-postgres"
        redis = f"{overlay}-redis"
        backing = {
            "dev": {
                postgres: lambda peer: in_namespace(objects, peer, {"postgres"}),
                redis: lambda peer: in_namespace(objects, peer, {"redis"}),
            },
            "production": {
                postgres: lambda peer: (
                    set(peer) == {"ipBlock"}
                    and ipaddress.ip_network(peer["ipBlock"]["cidr"]).is_private
                ),
                redis: lambda peer: (
                    set(peer) == {"ipBlock"}
                    and ipaddress.ip_network(peer["ipBlock"]["cidr"]).is_private
                ),
            },
        }[overlay]

        for p in pods(objects):
            allowed = set()
            for peer, port in egress(objects, p):
                if peer.get("podSelector") == {"matchLabels": {"k8s-app": "kube-dns"}}:
                    assert port == 53
                    allowed.add("dns")
                elif port == 5432 and backing[postgres](peer):
                    allowed.add("postgres")
                elif port == 6379 and backing[redis](peer):
                    allowed.add("redis")
                elif port in (443, 80) and reaches_internet_only(peer):
                    allowed.add("internet")
                else:
                    pytest.fail(f"{p.name} may reach {peer} on {port}")
            expected = {"dns"}
            expected |= {"postgres"} if p.name in POSTGRES_CLIENTS else set()
            expected |= {"redis"} if p.name in REDIS_CLIENTS else set()
            expected |= {"internet"} if p.name in WEBHOOK_SENDERS else set()
            assert allowed == expected, p.name
