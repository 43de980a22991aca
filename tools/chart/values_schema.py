"""The chart's values.schema.json, built from one table of our values plus Kubernetes definitions.

Accepts nothing at run time: the schema is the data below. Guarantees a draft-07 schema (Helm 3
and Helm 4 read draft-07) in which every object, ours and Kubernetes', either lists its properties
with ``additionalProperties: false`` or is a typed map, so a typo'd key or a wrong type fails
``helm lint`` / ``helm install``. Kubernetes pass-through values (affinity, tolerations, env, ...)
use the strict definitions of Kubernetes 1.29 (the chart's lowest version) bundled with
kubernetes-validate, copied with their transitive references. Never edits values.yaml.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

Schema = dict[str, Any]

K8S_VERSION = "1.29.0"
_K8S_PREFIX = "io.k8s."
# Keys of the Kubernetes definitions that carry no validation and only bloat the chart.
_DROPPED_KEYS = frozenset({"description", "x-kubernetes-group-version-kind"})
# Opaque in Kubernetes, written by the API server only (managedFields): never a value, so closed.
_SERVER_WRITTEN = frozenset({"io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1"})


# --- building blocks ---


def obj(properties: dict[str, Schema], description: str = "") -> Schema:
    """A closed object: exactly these properties, all optional."""
    schema: Schema = {"type": "object", "additionalProperties": False, "properties": properties}
    if description:
        schema["description"] = description
    return schema


def string(pattern: str | None = None, enum: list[str] | None = None) -> Schema:
    schema: Schema = {"type": "string"}
    if pattern is not None:
        schema["pattern"] = pattern
    if enum is not None:
        schema["enum"] = enum
    return schema


def integer(minimum: int | None = None, maximum: int | None = None) -> Schema:
    schema: Schema = {"type": "integer"}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


def number(minimum: float, maximum: float | None = None) -> Schema:
    schema: Schema = {"type": "number", "minimum": minimum}
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


BOOLEAN: Schema = {"type": "boolean"}
STRING_MAP: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
PORT = integer(1, 65535)
HTTPS_URL = string(pattern=r"^(https://[^\s]+)?$")
DIGEST = string(pattern=r"^(sha256:[a-f0-9]{64})?$")
DURATION = string(pattern=r"^[0-9]+(ms|s|m|h)$")
CIDR = string(pattern=r"^[0-9a-fA-F:.]+/[0-9]{1,3}$")
K8S_NAME = string(pattern=r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$")


def k8s(name: str) -> Schema:
    """A reference to a Kubernetes definition, e.g. ``core.v1.Affinity``."""
    return {"$ref": f"#/definitions/{_K8S_PREFIX}api.{name}"}


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def image(description: str) -> Schema:
    return obj(
        {
            "repository": string(pattern=r"^[^\s@:]+(:[0-9]+)?(/[^\s@:]+)*$"),
            "tag": string(pattern=r"^[\w][\w.-]{0,127}$|^$"),
            "digest": DIGEST,
            "pullPolicy": string(enum=["Always", "IfNotPresent", "Never"]),
        },
        description,
    )


def probe() -> Schema:
    return obj(
        {
            "periodSeconds": integer(1),
            "failureThreshold": integer(1),
            "timeoutSeconds": integer(1),
        }
    )


def https_egress() -> Schema:
    return obj({"enabled": BOOLEAN, "cidrs": array(CIDR)})


def monitor() -> Schema:
    return obj(
        {"enabled": BOOLEAN, "interval": DURATION, "scrapeTimeout": DURATION, "labels": STRING_MAP}
    )


# --- the values ---

GATEWAY = obj(
    {
        "nativeSidecar": BOOLEAN,
        "image": image("The gateway image."),
        "port": PORT,
        "metricsPort": PORT,
        "workers": integer(1, 64),
        "keyAgreement": string(enum=["process", "thread"]),
        "logLevel": string(enum=["debug", "info", "warning", "error"]),
        "allowedPaths": array(string(pattern=r"^/[^\s,]*$")),
        "limits": obj(
            {
                "maxBodyBytes": integer(1),
                "maxConcurrency": integer(1),
                "upstreamConnectTimeout": number(0.001),
                "upstreamReadTimeout": number(0.001),
                "replayWindow": integer(1),
                "replayCapacity": integer(1024, 1 << 26),
                "drainTimeout": integer(0),
                "bodyIdleTimeout": number(0.05, 3600),
                "bodyMinRate": integer(0, 1 << 30),
                "bodyRateGrace": number(1, 86_400),
            }
        ),
        "attestation": obj(
            {
                "evidenceProvider": string(enum=["azure-vtpm", "sev-guest", "simulated"]),
                "maaUrl": HTTPS_URL,
            }
        ),
        "kms": obj(
            {
                "backend": string(enum=["akv", "ccf", "dev"]),
                "akv": obj(
                    {
                        "vaultUrl": HTTPS_URL,
                        "keyName": string(pattern=r"^[0-9A-Za-z-]*$"),
                        "keyId": {"type": ["integer", "null"], "minimum": 0, "maximum": 255},
                    }
                ),
                "ccf": obj(
                    {
                        "url": HTTPS_URL,
                        "serviceCertSecret": obj({"name": K8S_NAME, "key": string()}),
                    }
                ),
            }
        ),
        "caBundle": obj({"configMap": K8S_NAME, "key": string()}),
        "dev": obj(
            {"enabled": BOOLEAN, "seedSecret": obj({"name": K8S_NAME, "key": string()})},
            "Dev mode: NOT confidential.",
        ),
        "kubernetesEvents": obj({"enabled": BOOLEAN}),
        "extraEnv": array(k8s("core.v1.EnvVar")),
        "resources": k8s("core.v1.ResourceRequirements"),
        "securityContext": k8s("core.v1.SecurityContext"),
        "startupProbe": probe(),
        "readinessProbe": probe(),
        "livenessProbe": probe(),
    }
)

WHISPER = obj(
    {
        "image": image("The Whisper image."),
        "command": array(string()),
        "args": array(string()),
        "env": array(k8s("core.v1.EnvVar")),
        "port": PORT,
        "gpu": integer(0, 16),
        "resources": k8s("core.v1.ResourceRequirements"),
        "securityContext": k8s("core.v1.SecurityContext"),
        "cacheMountPath": string(pattern=r"^/"),
        "cacheSizeLimit": string(pattern=r"^[0-9]+(Ki|Mi|Gi|Ti)?$"),
        "healthPath": string(pattern=r"^/"),
        "startupTimeoutSeconds": integer(10),
        "extraVolumeMounts": array(k8s("core.v1.VolumeMount")),
        "extraVolumes": array(k8s("core.v1.Volume")),
    }
)

NETWORK_POLICY = obj(
    {
        "enabled": BOOLEAN,
        "ingress": obj(
            {
                "from": array(k8s("networking.v1.NetworkPolicyPeer")),
                "metrics": obj({"enabled": BOOLEAN, "namespace": K8S_NAME}),
            }
        ),
        "egress": obj(
            {
                "dns": obj({"enabled": BOOLEAN, "namespace": K8S_NAME, "podLabels": STRING_MAP}),
                "maa": https_egress(),
                "kms": https_egress(),
                "entraId": https_egress(),
                "imds": obj({"enabled": BOOLEAN, "cidr": CIDR}),
                "kubeApiServer": obj({"cidrs": array(CIDR)}),
            }
        ),
        "publicExcept": array(CIDR),
    }
)

METRICS = obj(
    {
        "serviceMonitor": monitor(),
        "podMonitor": monitor(),
        "prometheusRule": obj(
            {
                "enabled": BOOLEAN,
                "labels": STRING_MAP,
                "alertLabels": STRING_MAP,
                "tokenExpirySeconds": integer(60),
                "keyMaxAgeSeconds": integer(60),
                "decapsulationErrorRatio": number(0, 1),
                "upstreamErrorRatio": number(0, 1),
                "latencyP99Seconds": number(0.001),
            }
        ),
        "dashboard": obj(
            {"enabled": BOOLEAN, "label": string(), "labelValue": string(), "namespace": K8S_NAME}
        ),
    }
)

VALUES = obj(
    {
        "nameOverride": K8S_NAME,
        "fullnameOverride": K8S_NAME,
        "commonLabels": STRING_MAP,
        "replicaCount": integer(1),
        "revisionHistoryLimit": integer(0),
        "imagePullSecrets": array(k8s("core.v1.LocalObjectReference")),
        "runtimeClassName": K8S_NAME,
        "priorityClassName": K8S_NAME,
        "podAnnotations": STRING_MAP,
        "podLabels": STRING_MAP,
        "terminationGracePeriodSeconds": integer(1),
        "nodeSelector": STRING_MAP,
        "tolerations": array(k8s("core.v1.Toleration")),
        "affinity": k8s("core.v1.Affinity"),
        "topologySpreadConstraints": array(k8s("core.v1.TopologySpreadConstraint")),
        "podSecurityContext": k8s("core.v1.PodSecurityContext"),
        "serviceAccount": obj(
            {
                "create": BOOLEAN,
                "name": K8S_NAME,
                "annotations": STRING_MAP,
                "workloadIdentity": obj(
                    {
                        "enabled": BOOLEAN,
                        "clientId": string(pattern=r"^([0-9a-fA-F-]{36})?$"),
                        "tenantId": string(pattern=r"^([0-9a-fA-F-]{36})?$"),
                        "tokenExpirationSeconds": {
                            "anyOf": [{"const": 0}, integer(3600, 86400)],
                        },
                    }
                ),
            }
        ),
        "gateway": GATEWAY,
        "attestationDevice": obj(
            {
                "mode": string(enum=["none", "devicePlugin", "hostPath"]),
                "path": string(pattern=r"^/dev/"),
                "resourceName": string(pattern=r"^[a-z0-9.-]+/[a-zA-Z0-9._-]+$"),
                "groupId": integer(0),
            }
        ),
        "service": obj(
            {
                "type": string(enum=["ClusterIP", "NodePort", "LoadBalancer"]),
                "port": PORT,
                "annotations": STRING_MAP,
            }
        ),
        "whisper": WHISPER,
        "podDisruptionBudget": obj({"enabled": BOOLEAN, "minAvailable": integer(0)}),
        "autoscaling": obj(
            {
                "enabled": BOOLEAN,
                "minReplicas": integer(1),
                "maxReplicas": integer(1),
                "targetCPUUtilizationPercentage": integer(0, 100),
                "targetInFlightRequests": integer(0),
            }
        ),
        "networkPolicy": NETWORK_POLICY,
        "metrics": METRICS,
        "tests": obj({"image": obj({"repository": string(), "tag": string(), "digest": DIGEST})}),
        "releasePolicy": obj({"configMap": BOOLEAN}),
        # Helm passes this to subcharts; it must be allowed at the top level.
        "global": {"type": "object", "additionalProperties": False, "properties": {}},
    }
)


# --- Kubernetes definitions ---


def _k8s_definitions() -> dict[str, Schema]:
    base = resources.files("kubernetes_validate") / "kubernetes-json-schema"
    path = base / f"v{K8S_VERSION}-local-strict" / "_definitions.json"
    loaded: dict[str, Schema] = json.loads(path.read_text(encoding="utf-8"))["$defs"]
    return loaded


def _refs(node: object) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            found.add(ref.rsplit("/", 1)[-1])
        for value in node.values():
            found |= _refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _refs(value)
    return found


def _rewrite(node: object) -> object:
    """Draft-07 spelling: ``#/$defs/x`` becomes ``#/definitions/x``; documentation keys go."""
    if isinstance(node, dict):
        out: dict[str, object] = {}
        for key, value in node.items():
            if key in _DROPPED_KEYS and not isinstance(value, dict):
                continue
            if key == "$ref" and isinstance(value, str):
                out[key] = "#/definitions/" + value.rsplit("/", 1)[-1]
            else:
                out[key] = _rewrite(value)
        return out
    if isinstance(node, list):
        return [_rewrite(value) for value in node]
    return node


def build() -> Schema:
    """The complete values.schema.json document."""
    available = _k8s_definitions()
    wanted = sorted(_refs(VALUES))
    closure: dict[str, Schema] = {}
    while wanted:
        name = wanted.pop()
        if name in closure:
            continue
        closure[name] = available[name]
        wanted.extend(sorted(_refs(available[name]) - closure.keys()))
    schema: Schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "ohttp-gateway chart values",
        **VALUES,
        "definitions": {name: _rewrite(closure[name]) for name in sorted(closure)},
    }
    for name in _SERVER_WRITTEN & closure.keys():
        schema["definitions"][name]["additionalProperties"] = False
    return schema


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"
