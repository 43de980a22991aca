"""Kubernetes events and pod annotations for the key lifecycle, off the request path.

:class:`KubernetesNotifier` is the key lifecycle's notifier (attestation succeeded or failed, key
released, key rotated, release refused) for a gateway running in a pod. Each milestone becomes a
core/v1 Event whose ``involvedObject`` is the gateway's own pod, and refreshes the pod's
``ohttp-gateway/*`` annotations (active key ids, attestation summary) with a merge patch. The
official ``kubernetes`` client talks to the API server with the in-cluster service account (token
and CA from the standard paths, TLS verified); docs/kubernetes.md lists the RBAC this needs.

Guarantees: a notifier method only appends to a bounded queue (the oldest event is dropped when it
is full) and returns; one daemon thread makes the API calls, each with a short timeout and no
retries. Every failure or drop is counted in ``ohttp_gateway_kubernetes_errors_total{reason}`` and
logged once per reason; nothing is raised to the caller, so an unreachable, refusing or slow API
server never blocks the lifecycle or serving. Repeats of one event (a retried failure) are
aggregated into its ``count``, as Kubernetes' own recorders do.

Never: a token, a key or evidence in an event or annotation. Messages are fixed templates; the
only texts from elsewhere (a step, a reason, the KMS's refusal, the MAA issuer) are screened first.
"""

from __future__ import annotations

import collections
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.incluster_config import InClusterConfigLoader

from gateway.config import Settings
from gateway.errors import ConfigError
from gateway.server.logs import log_event
from gateway.server.metrics import GatewayMetrics

ANNOTATION_PREFIX = "ohttp-gateway/"
COMPONENT = "ohttp-gateway"
QUEUE_SIZE = 64
TIMEOUT = (1.0, 2.0)  # connect, read: seconds per API call
ANNOTATION_RETRY = 10.0  # seconds before a failed annotation patch is tried again
AGGREGATED = 32  # distinct events remembered for aggregation
WITHHELD = "(withheld)"

_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}")
_TEXT = re.compile(r"[ -~]{1,300}")
# A run of base64/hex this long is a token, a key or a ciphertext, never part of a message.
_BLOB = re.compile(r"[A-Za-z0-9+/=_-]{40,}")
_STATUS_REASONS = {401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict"}


def screened(text: object, pattern: re.Pattern[str] = _TEXT) -> str:
    """``text`` if it is short printable ASCII with nothing token-like in it, else a mask."""
    if isinstance(text, str) and pattern.fullmatch(text) and not _BLOB.search(text):
        return text
    return WITHHELD


def failure_reason(error: BaseException) -> str:
    """The metric label of a failed API call: a closed set."""
    if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
        error = error.reason
    if isinstance(error, ApiException) and not error.status and error.__context__ is not None:
        error = error.__context__  # the client wraps a TLS failure as a status-0 ApiException
    if isinstance(error, ApiException):
        status = int(error.status or 0)
        if status == 429:
            return "throttled"
        return _STATUS_REASONS.get(status, "server_error" if status >= 500 else "rejected")
    if isinstance(error, urllib3.exceptions.SSLError):
        return "tls"
    # Checked before timeouts: urllib3 2 derives NewConnectionError from ConnectTimeoutError.
    if isinstance(error, urllib3.exceptions.NewConnectionError):
        return "unreachable"
    if isinstance(error, urllib3.exceptions.TimeoutError):
        return "timeout"
    if isinstance(error, urllib3.exceptions.HTTPError | OSError):
        return "unreachable"
    return "unexpected"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ids(key_ids: Sequence[int]) -> str:
    return ",".join(str(int(k)) for k in key_ids) or "none"


@dataclass(frozen=True)
class PodRef:
    """The gateway's own pod: the subject of its events and the target of its annotations."""

    name: str
    namespace: str


@dataclass
class _Recorded:
    name: str
    count: int
    first: str


class KubernetesNotifier:
    """The lifecycle's notifier for a pod; see the module docstring. :meth:`close` stops it."""

    def __init__(
        self,
        api: client.CoreV1Api,
        pod: PodRef,
        metrics: GatewayMetrics,
        *,
        provider: str,
        dev: bool,
        timeout: tuple[float, float] = TIMEOUT,
    ) -> None:
        self.api, self.pod, self.metrics, self.timeout = api, pod, metrics, timeout
        self._events: collections.deque[tuple[str, str, str]] = collections.deque()
        self._recorded: collections.OrderedDict[tuple[str, str], _Recorded] = (
            collections.OrderedDict()
        )
        self._annotations = {"attestation-provider": provider, "dev-mode": str(dev).lower()}
        self._annotate_at: float | None = time.monotonic()  # when the annotations are due
        self._active: list[int] = []
        self._uid: str | None = None
        self._logged: set[str] = set()
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="kubernetes-notifier", daemon=True)
        self._thread.start()

    # --- the lifecycle's notifier interface (gateway.trust.notifier.Notifier) -------------------

    def attestation_succeeded(self, issuer: str, expires_at: int) -> None:
        expiry = datetime.fromtimestamp(int(expires_at), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        issuer = screened(issuer)
        message = f"MAA token from {issuer}, expires {expiry}"
        self._post("Normal", "AttestationSucceeded", message)
        self._annotate(
            {"maa-issuer": issuer, "token-expires-at": expiry, "last-attestation": "succeeded"}
        )

    def attestation_failed(self, step: str, reason: str) -> None:
        step, reason = screened(step, _LABEL), screened(reason, _LABEL)
        self._post("Warning", "AttestationFailed", f"attestation failed at {step}: {reason}")
        self._annotate({"last-attestation": f"failed at {step}: {reason}"})

    def key_released(self, key_ids: Sequence[int], origin: str) -> None:
        self._active = sorted({*self._active, *key_ids})
        origin = screened(origin, _LABEL)
        self._post("Normal", "KeyReleased", f"key ids {_ids(key_ids)} released by {origin}")
        self._annotate({"key-ids": _ids(self._active)})

    def key_rotated(self, active: Sequence[int], retired: Sequence[int]) -> None:
        self._active = sorted(active)
        message = f"serving key ids {_ids(active)}; retired {_ids(retired)}"
        self._post("Normal", "KeyRotated", message)
        self._annotate({"key-ids": _ids(self._active)})

    def release_refused(self, code: str, detail: str) -> None:
        code = screened(code, _LABEL) if code else "no code"
        detail = screened(detail) if detail else "no reason given"
        self._post("Warning", "KeyReleaseRefused", f"the KMS refused key release: {code}: {detail}")

    def close(self, timeout: float = 1.0) -> None:
        """Stop the worker; whatever is still queued is dropped."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout)

    # --- the caller's side: O(1), never blocks on the API --------------------------------------

    def _post(self, kind: str, reason: str, message: str) -> None:
        with self._wake:
            if len(self._events) >= QUEUE_SIZE:
                self._events.popleft()
                self._failed("dropped", "queue_full")
            self._events.append((kind, reason, message))
            self._wake.notify()

    def _annotate(self, values: Mapping[str, str]) -> None:
        with self._wake:
            self._annotations.update(values)
            self._annotate_at = time.monotonic()
            self._wake.notify()

    def _failed(self, reason: str, call: str) -> None:
        self.metrics.kubernetes_errors.labels(reason).inc()
        if reason not in self._logged:  # once per reason: an outage must not flood the logs
            self._logged.add(reason)
            log_event("kubernetes_call_failed", logging.WARNING, reason=reason, call=call)

    # --- the worker thread -----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and not self._events and not self._annotations_due():
                    self._wake.wait(self._idle_wait())
                if self._stopping:
                    return
                event = self._events.popleft() if self._events else None
                annotations = None if event else dict(self._annotations)
                if annotations is not None:
                    self._annotate_at = None
            if event is not None:
                self._guarded("event", self._record, *event)
            elif annotations is not None and not self._guarded(
                "annotate", self._patch_pod, annotations
            ):
                with self._wake:  # retry later, with whatever is then the latest state
                    if self._annotate_at is None:
                        self._annotate_at = time.monotonic() + ANNOTATION_RETRY

    def _annotations_due(self) -> bool:
        return self._annotate_at is not None and self._annotate_at <= time.monotonic()

    def _idle_wait(self) -> float | None:
        if self._annotate_at is None:
            return None
        return max(0.0, self._annotate_at - time.monotonic())

    def _guarded(self, call: str, action: Callable[..., None], *args: Any) -> bool:
        try:
            action(*args)
        except Exception as error:  # noqa: BLE001 - nothing from Kubernetes may reach the caller
            self._failed(failure_reason(error), call)
            return False
        return True

    def _patch_pod(self, annotations: Mapping[str, str]) -> None:
        body = {
            "metadata": {"annotations": {ANNOTATION_PREFIX + k: v for k, v in annotations.items()}}
        }
        answer = self._call(self.api.patch_namespaced_pod, self.pod.name, self.pod.namespace, body)
        self._uid = self._uid or answer.get("metadata", {}).get("uid")

    def _record(self, kind: str, reason: str, message: str) -> None:
        if self._uid is None:
            pod = self._call(self.api.read_namespaced_pod, self.pod.name, self.pod.namespace)
            self._uid = pod.get("metadata", {}).get("uid")
        now, key = _now(), (reason, message)
        seen = self._recorded.get(key)
        if seen is not None:
            patch = {"count": seen.count + 1, "lastTimestamp": now}
            try:
                self._call(self.api.patch_namespaced_event, seen.name, self.pod.namespace, patch)
                seen.count += 1
                return
            except ApiException as error:
                if error.status != 404:  # expired (events live about an hour): record anew
                    raise
        name = f"{self.pod.name}.{secrets.token_hex(8)}"
        body = self._event(name, kind, reason, message, now)
        self._call(self.api.create_namespaced_event, self.pod.namespace, body)
        self._recorded[key] = _Recorded(name, 1, now)
        while len(self._recorded) > AGGREGATED:
            self._recorded.popitem(last=False)

    def _event(self, name: str, kind: str, reason: str, message: str, now: str) -> dict[str, Any]:
        involved = {"apiVersion": "v1", "kind": "Pod", "name": self.pod.name}
        involved |= {"namespace": self.pod.namespace} | ({"uid": self._uid} if self._uid else {})
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": self.pod.namespace},
            "involvedObject": involved,
            "type": kind,
            "reason": reason,
            "message": message,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.pod.name,
        }

    def _call(self, method: Callable[..., Any], *args: Any) -> dict[str, Any]:
        """One API call with the short timeout; the answer's JSON, undecoded into models."""
        response = method(*args, _request_timeout=self.timeout, _preload_content=False)
        try:
            answer = json.loads(response.data or b"{}")
        finally:
            response.release_conn()
        return answer if isinstance(answer, dict) else {}


def in_cluster_api(settings: Settings, environ: Mapping[str, str]) -> client.CoreV1Api:
    """A CoreV1Api for the pod's service account: the API server from KUBERNETES_SERVICE_HOST and
    _PORT, the token and CA from the configured files (the token is re-read as kubelet rotates
    it). TLS is always verified. Raises ConfigError when any of them is missing."""
    configuration = client.Configuration()
    loader = InClusterConfigLoader(  # type: ignore[no-untyped-call]
        token_filename=str(settings.kubernetes_token_file),
        cert_filename=str(settings.kubernetes_ca_file),
        environ=environ,
    )
    try:
        loader.load_and_set(configuration)  # type: ignore[no-untyped-call]
    except (ConfigException, OSError) as error:
        raise ConfigError("Kubernetes in-cluster configuration is incomplete") from error
    configuration.verify_ssl = True
    configuration.retries = False  # one short attempt: the next milestone brings fresh state
    return client.CoreV1Api(client.ApiClient(configuration))


def kubernetes_notifier(
    settings: Settings,
    metrics: GatewayMetrics,
    environ: Mapping[str, str],
    timeout: tuple[float, float] = TIMEOUT,
) -> KubernetesNotifier | None:
    """The notifier ``--kubernetes-events`` asks for, or None. ``auto`` enables it when the pod's
    name and namespace are set and the in-cluster configuration loads; ``on`` raises ConfigError
    when it does not."""
    mode = settings.kubernetes_events
    if mode == "off" or not (settings.pod_name and settings.pod_namespace):
        return None
    try:
        api = in_cluster_api(settings, environ)
    except ConfigError:
        if mode == "on":
            raise
        metrics.kubernetes_errors.labels("config").inc()
        log_event("kubernetes_events_disabled", logging.WARNING, reason="config")
        return None
    pod = PodRef(settings.pod_name, settings.pod_namespace)
    return KubernetesNotifier(
        api, pod, metrics, provider=settings.evidence_provider, dev=settings.dev, timeout=timeout
    )
