"""Write the JSON Schemas of the custom resources deploy/kubernetes uses, from their npm models.

The models are the ones the `@kubernetes-models` packages publish, generated from Traefik's,
KEDA's and the Prometheus operator's own Go API types (the types their CRDs are generated
from): every field with its type, required fields, and string enums. The TypeScript
declarations (`*.d.ts`) are read and turned into JSON Schema (draft 2020-12) that refuses
unknown fields, as `kubectl apply --validate=strict` does; Kubernetes types they use
(ObjectMeta, LabelSelector, the HPA's behavior, IntOrString, Quantity, Secret and ConfigMap
key selectors) come from kubernetes-validate's strict schemas, inlined. No number
bounds or patterns: the models do not carry them.

    npm pack @kubernetes-models/traefik@2.0.0 @kubernetes-models/keda@2.0.0 \\
        @kubernetes-models/prometheus-operator@6.0.0
    mkdir traefik keda prometheus-operator \\
        && tar xzf kubernetes-models-traefik-2.0.0.tgz -C traefik \\
        && tar xzf kubernetes-models-keda-2.0.0.tgz -C keda \\
        && tar xzf kubernetes-models-prometheus-operator-6.0.0.tgz -C prometheus-operator
    uv run python deploy/kubernetes/schemas/generate.py traefik/package keda/package \\
        prometheus-operator/package

deploy/local/tests/test_kubernetes_manifests.py validates the rendered objects with them.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
KUBERNETES_VERSION = "v1.37.0"
# The kinds deploy/kubernetes uses: (package directory index, declaration file, output file).
KINDS = (
    (0, "traefik.io/v1alpha1/IngressRoute.d.ts", "traefik.io_v1alpha1_IngressRoute.json"),
    (0, "traefik.io/v1alpha1/Middleware.d.ts", "traefik.io_v1alpha1_Middleware.json"),
    (
        0,
        "traefik.io/v1alpha1/ServersTransport.d.ts",
        "traefik.io_v1alpha1_ServersTransport.json",
    ),
    (1, "keda.sh/v1alpha1/ScaledObject.d.ts", "keda.sh_v1alpha1_ScaledObject.json"),
    (
        1,
        "keda.sh/v1alpha1/TriggerAuthentication.d.ts",
        "keda.sh_v1alpha1_TriggerAuthentication.json",
    ),
    (2, "monitoring.coreos.com/v1/PodMonitor.d.ts", "monitoring.coreos.com_v1_PodMonitor.json"),
    (
        2,
        "monitoring.coreos.com/v1/PrometheusRule.d.ts",
        "monitoring.coreos.com_v1_PrometheusRule.json",
    ),
)
# Kubernetes' own types, by the models' names: kubernetes-validate's definitions, or any JSON.
KUBERNETES_TYPES = {
    "IIoK8sApimachineryPkgApisMetaV1ObjectMeta": "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
    "IIoK8sApimachineryPkgApisMetaV1ListMeta": "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta",
    "IIoK8sApimachineryPkgApisMetaV1Time": "io.k8s.apimachinery.pkg.apis.meta.v1.Time",
    "IIoK8sApimachineryPkgUtilIntstrIntOrString": "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
    "IIoK8sApimachineryPkgApisMetaV1LabelSelector": (
        "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"
    ),
    "IIoK8sApimachineryPkgApiResourceQuantity": "io.k8s.apimachinery.pkg.api.resource.Quantity",
    "IIoK8sApiCoreV1SecretKeySelector": "io.k8s.api.core.v1.SecretKeySelector",
    "IIoK8sApiCoreV1ConfigMapKeySelector": "io.k8s.api.core.v1.ConfigMapKeySelector",
    "IIoK8sApiBatchV1JobSpec": "io.k8s.api.batch.v1.JobSpec",
    "IIoK8sApiAutoscalingV2HorizontalPodAutoscalerBehavior": (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerBehavior"
    ),
    "IIoK8sApiextensionsApiserverPkgApisApiextensionsV1JSON": None,
}
TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|([A-Za-z_$][\w$]*)|(.))', re.S)
COMMENT = re.compile(r"/\*.*?\*/", re.S)


@dataclass
class Declarations:
    """One .d.ts file: its imports (name -> file) and its one interface or type alias."""

    path: Path
    imports: dict[str, Path]
    name: str
    extends: list[str]
    body: list[str]  # tokens of the interface body, or of the alias's type
    alias: bool


def tokens(text: str) -> list[str]:
    found = []
    for match in TOKEN.finditer(text):
        token = next((group for group in match.groups() if group is not None), None)
        if token is not None and token.strip():
            found.append(token)
    return found


def read(path: Path) -> Declarations:
    text = COMMENT.sub("", path.read_text())
    imports: dict[str, Path] = {}
    for names, module in re.findall(r"import \{([^}]*)\} from \"([^\"]+)\";", text):
        for name in (part.strip() for part in names.split(",")):
            if module.startswith("."):
                imports[name] = (path.parent / module).with_suffix("").with_suffix(".d.ts")
            else:
                imports[name] = Path(module)
    interface = re.search(r"export interface (\w+)(?: extends ([\w, ]+))? \{", text)
    if interface:
        start = interface.end()
        depth, end = 1, start
        while depth:
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        extends = [e.strip() for e in (interface.group(2) or "").split(",") if e.strip()]
        return Declarations(
            path, imports, interface.group(1), extends, tokens(text[start : end - 1]), False
        )
    alias = re.search(r"export type (\w+) = ([^;]+);", text)
    if not alias:
        raise ValueError(f"{path}: no interface or type alias")
    return Declarations(path, imports, alias.group(1), [], tokens(alias.group(2)), True)


class Converter:
    def __init__(self, kubernetes_defs: dict[str, Any]) -> None:
        self.kubernetes_defs = kubernetes_defs
        self.defs: dict[str, Any] = {}

    def ref(self, name: str, declarations: Declarations) -> dict[str, Any]:
        if name in KUBERNETES_TYPES:
            definition = KUBERNETES_TYPES[name]
            if definition is None:
                return {}
            self.kubernetes(definition)
            return {"$ref": f"#/$defs/{definition}"}
        if name not in self.defs:
            self.defs[name] = {}  # placeholder against cycles
            self.defs[name] = self.schema(read(declarations.imports[name]))
        return {"$ref": f"#/$defs/{name}"}

    def kubernetes(self, definition: str) -> None:
        if definition in self.defs:
            return
        schema = json.loads(
            json.dumps(self.kubernetes_defs[definition]).replace(
                "/api/_definitions.json#/$defs/", "#/$defs/"
            )
        )
        self.defs[definition] = schema
        for ref in re.findall(r'"#/\$defs/([^"]+)"', json.dumps(schema)):
            self.kubernetes(ref)

    def schema(self, declarations: Declarations) -> dict[str, Any]:
        if declarations.alias:
            value, _ = self.type(declarations.body, 0, declarations)
            return value
        properties: dict[str, Any] = {}
        required: list[str] = []
        for parent in declarations.extends:
            if parent == "TypeMeta":
                continue
            inherited = self.schema(read(declarations.imports[parent]))
            properties |= inherited["properties"]
            required += inherited.get("required", [])
        body, i = declarations.body, 0
        while i < len(body):
            name = json.loads(body[i])
            optional = body[i + 1] == "?"
            i += 2 if optional else 1
            assert body[i] == ":", (declarations.path, body[i])  # noqa: S101 - a generator
            properties[name], i = self.type(body, i + 1, declarations)
            assert body[i] == ";", (declarations.path, body[i])  # noqa: S101
            i += 1
            if not optional:
                required.append(name)
        schema: dict[str, Any] = {
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
        }
        if required:
            schema["required"] = sorted(set(required))
        return schema

    def type(self, body: list[str], i: int, declarations: Declarations) -> tuple[Any, int]:
        options = []
        while True:
            option, i = self.primary(body, i, declarations)
            options.append(option)
            if i < len(body) and body[i] == "|":
                i += 1
                continue
            break
        if len(options) == 1:
            return options[0], i
        if all("const" in option for option in options):
            return {"type": "string", "enum": [option["const"] for option in options]}, i
        return {"anyOf": options}, i

    def primary(self, body: list[str], i: int, declarations: Declarations) -> tuple[Any, int]:
        token = body[i]
        if token == "Array":  # noqa: S105 - a type's name, not a password
            assert body[i + 1] == "<"  # noqa: S101
            items, i = self.type(body, i + 2, declarations)
            assert body[i] == ">"  # noqa: S101
            return {"type": "array", "items": items}, i + 1
        if token == "{":  # noqa: S105 - { [key: string]: T; }
            assert body[i + 1 : i + 6] == ["[", "key", ":", "string", "]"]  # noqa: S101
            assert body[i + 6] == ":"  # noqa: S101
            values, i = self.type(body, i + 7, declarations)
            if body[i] == ";":
                i += 1
            assert body[i] == "}"  # noqa: S101
            return {"type": "object", "additionalProperties": values}, i + 1
        if token.startswith('"'):
            return {"const": json.loads(token)}, i + 1
        if token in ("string", "number", "boolean"):
            return {"type": token}, i + 1
        if token in ("any", "unknown", "object"):
            return {}, i + 1
        return self.ref(token, declarations), i + 1


def main(argv: list[str]) -> None:
    packages = [Path(arg).resolve() for arg in argv]
    kubernetes_defs = json.loads(
        (
            files("kubernetes_validate")
            / "kubernetes-json-schema"
            / f"{KUBERNETES_VERSION}-local-strict"
            / "_definitions.json"
        ).read_text()
    )["$defs"]
    for package_index, declaration, output in KINDS:
        package = packages[package_index]
        version = json.loads((package / "package.json").read_text())
        converter = Converter(kubernetes_defs)
        root = converter.schema(read(package / declaration))
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "description": (
                f"Generated by deploy/kubernetes/schemas/generate.py from {version['name']}"
                f" {version['version']} (npm), {declaration}; Kubernetes types from"
                f" kubernetes-validate {KUBERNETES_VERSION}-local-strict."
            ),
            **root,
            "$defs": dict(sorted(converter.defs.items())),
        }
        (HERE / output).write_text(json.dumps(schema, indent=1, sort_keys=False) + "\n")
        print(f"{output}: {len(converter.defs)} definitions")


if __name__ == "__main__":
    main(sys.argv[1:])
