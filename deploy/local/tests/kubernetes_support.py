"""deploy/kubernetes as the tests see it: each kustomization rendered once by `kubectl
kustomize`, and what a pod of it runs: its image's Dockerfile stage, its environment as the
container would get it, and the settings its process loads from that environment (with
app_support.load_settings)."""

from __future__ import annotations

import base64
import re
import subprocess
import sysconfig
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from app_support import APPS as APPS  # the tests' apps, from here as before
from app_support import SETTINGS as PROCESS_SETTINGS

from milepost_common.settings import CommonSettings

REPO = Path(__file__).resolve().parents[3]
KUBERNETES = REPO / "deploy" / "kubernetes"
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
OVERLAYS = ("dev", "production")
KUSTOMIZATIONS = {
    "base": KUBERNETES / "base",
    **{name: KUBERNETES / "overlays" / name for name in OVERLAYS},
}
WORKERS = ("worker", "worker-webhooks")
# The settings class each process loads (`milepost-migrate`, also the init containers': the
# common one).
SETTINGS: dict[str, type[CommonSettings]] = {**PROCESS_SETTINGS, "migrate": CommonSettings}
INIT_CONTAINER = "wait-for-schema"
# Pods of the dev overlay's own Postgres and Redis: upstream images, not Milepost processes.
BACKING_SERVICES = ("postgres", "redis")
# kustomize's generated names end in a content hash.
GENERATED = re.compile(r"^(?P<name>.+)-[a-z0-9]{10}$")

Object = dict[str, Any]


def tool(name: str) -> str:
    return str(Path(sysconfig.get_path("scripts")) / name)


@cache
def rendered_text(kustomization: str) -> str:
    return subprocess.run(
        [tool("kubectl"), "kustomize", str(KUSTOMIZATIONS[kustomization])],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@cache
def render(kustomization: str) -> list[Object]:
    """The kustomization's objects, parsed once: a test that changes one copies it first."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [doc for doc in yaml.load_all(rendered_text(kustomization), Loader=loader) if doc]


def find(objects: list[Object], kind: str, name: str) -> Object:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def of_kind(objects: list[Object], kind: str) -> list[Object]:
    return [o for o in objects if o["kind"] == kind]


def generated_as(name: str, base_name: str) -> bool:
    match = GENERATED.match(name)
    return name == base_name or (match is not None and match["name"] == base_name)


@dataclass(frozen=True)
class Pod:
    """A workload's pod template."""

    name: str  # the workload's app.kubernetes.io/name
    kind: str
    workload: Object
    spec: Object

    @property
    def labels(self) -> dict[str, str]:
        labels: dict[str, str] = self.workload["spec"]["template"]["metadata"]["labels"]
        return labels

    @property
    def namespace(self) -> str | None:
        namespace: str | None = self.workload["metadata"].get("namespace")
        return namespace

    def containers(self, *, init: bool = True) -> list[Object]:
        found: list[Object] = list(self.spec["containers"])
        return [*self.spec.get("initContainers", []), *found] if init else found

    @property
    def main(self) -> Object:
        (container,) = self.spec["containers"]
        return container

    @property
    def milepost(self) -> bool:
        return self.name not in BACKING_SERVICES


def pods(objects: list[Object]) -> Iterator[Pod]:
    for o in objects:
        if o["kind"] in {"Deployment", "StatefulSet", "Job"}:
            template = o["spec"]["template"]
            yield Pod(
                template["metadata"]["labels"]["app.kubernetes.io/name"],
                o["kind"],
                o,
                template["spec"],
            )


def pod(objects: list[Object], name: str) -> Pod:
    (found,) = [p for p in pods(objects) if p.name == name]
    return found


# --- the Dockerfile ---------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    base: str
    env: dict[str, str]
    cmd: list[str] | None


@cache
def dockerfile_stages() -> dict[str, Stage]:
    """Each named stage: what it is built FROM, its ENV (inherited from its base stage), CMD."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    stages: dict[str, Stage] = {}
    current: str | None = None
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "FROM":
            base, current = words[1], words[3]
            inherited = stages[base].env if base in stages else {}
            stages[current] = Stage(base, dict(inherited), None)
        elif words[0] == "ENV" and current:
            for pair in words[1:]:
                name, _, value = pair.partition("=")
                stages[current].env[name] = value.strip('"')
        elif words[0] == "CMD" and current:
            stages[current] = Stage(
                stages[current].base, stages[current].env, yaml.safe_load(line[3:])
            )
    return stages


def image_targets() -> set[str]:
    """The stages built as images: those with a command of their own."""
    return {name for name, stage in dockerfile_stages().items() if stage.cmd}


def image_name(image: str) -> str:
    """`registry/path/milepost-api:0.1.0` -> `milepost-api`."""
    return image.rsplit("/", 1)[-1].split("@")[0].split(":")[0]


def target_of(container: Object) -> str:
    return image_name(container["image"]).removeprefix("milepost-")


# --- environments and settings ----------------------------------------------------------


def secret_data(secret: Object) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}


def lookup(objects: list[Object], kind: str, name: str) -> dict[str, str]:
    """A ConfigMap's or Secret's data. The production overlay renders no Secret (they are the
    cluster's): its references resolve against the dev overlay's, the same names and keys."""
    for candidates in (objects, render("dev") if kind == "Secret" else []):
        for o in candidates:
            if o["kind"] == kind and generated_as(o["metadata"]["name"], name):
                return secret_data(o) if kind == "Secret" else dict(o.get("data", {}))
    raise AssertionError(f"{kind} {name} is not defined")


def secret_variables(container: Object) -> set[str]:
    """The variables whose values come from a Secret."""
    assert not any("secretRef" in source for source in container.get("envFrom", []))
    return {
        entry["name"]
        for entry in container.get("env", [])
        if "secretKeyRef" in entry.get("valueFrom", {})
    }


def container_env(objects: list[Object], container: Object) -> dict[str, str]:
    """The environment the container's process starts with: its image's ENV, then envFrom,
    then env (later wins, as in Kubernetes)."""
    stage = dockerfile_stages().get(target_of(container))
    env = dict(stage.env) if stage else {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env |= lookup(objects, "ConfigMap", source["configMapRef"]["name"])
        else:
            env |= lookup(objects, "Secret", source["secretRef"]["name"])
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
            continue
        ref = entry["valueFrom"]
        for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
            if key in ref:
                data = lookup(objects, kind, ref[key]["name"])
                assert ref[key]["key"] in data, f"{entry['name']}: {ref[key]} has no such key"
                env[entry["name"]] = data[ref[key]["key"]]
    return env


def settings_class(pod: Pod, container: Object) -> type[CommonSettings]:
    return CommonSettings if container["name"] == INIT_CONTAINER else SETTINGS[pod.name]


def known_variables(cls: type[CommonSettings]) -> set[str]:
    """Every MILEPOST_ variable the settings class reads."""
    names = set()
    for field, info in cls.model_fields.items():
        group = info.annotation
        if isinstance(group, type) and hasattr(group, "model_fields"):
            names |= {f"MILEPOST_{field}__{sub}".upper() for sub in group.model_fields}
        else:
            names.add(f"MILEPOST_{field}".upper())
    return names


# --- label selectors --------------------------------------------------------------------


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Kubernetes' LabelSelector semantics (an empty selector selects everything)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        present = key in labels
        if not {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]:
            return False
    return True
