"""What the key lifecycle tells the outside world (e.g. Kubernetes events and annotations).

The lifecycle (:mod:`gateway.trust.lifecycle`) calls a :class:`Notifier` at each milestone. A
Kubernetes notifier (events on the pod, annotations with the active key ids) plugs in here; the
default, :class:`NoopNotifier`, does nothing. Arguments are constants and short texts only: key
ids, the error's ``reason``, and for a refusal the KMS's own code and stated reason (already
screened by :func:`gateway.trust.kms.refused` to hold no token or key). Never: a token, a key, or
evidence bytes.

Implementations must return quickly and never raise: the lifecycle does not wait on them, and a
notifier that fails (Kubernetes unreachable) must not block serving. :func:`safely` enforces the
second rule for any implementation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

logger = logging.getLogger("gateway.trust.notifier")


class Notifier(Protocol):
    def attestation_succeeded(self, issuer: str, expires_at: int) -> None: ...

    def attestation_failed(self, step: str, reason: str) -> None: ...

    def key_released(self, key_ids: Sequence[int], origin: str) -> None: ...

    def key_rotated(self, active: Sequence[int], retired: Sequence[int]) -> None: ...

    def release_refused(self, code: str, detail: str) -> None: ...


class NoopNotifier:
    """The default: nothing outside the process is told."""

    def attestation_succeeded(self, issuer: str, expires_at: int) -> None:
        return None

    def attestation_failed(self, step: str, reason: str) -> None:
        return None

    def key_released(self, key_ids: Sequence[int], origin: str) -> None:
        return None

    def key_rotated(self, active: Sequence[int], retired: Sequence[int]) -> None:
        return None

    def release_refused(self, code: str, detail: str) -> None:
        return None


class SafeNotifier:
    """Wraps a notifier so that whatever it raises is logged (by type) and swallowed."""

    def __init__(self, inner: Notifier) -> None:
        self._inner = inner

    def _call(self, name: str, *args: object) -> None:
        try:
            getattr(self._inner, name)(*args)
        except Exception as error:  # noqa: BLE001 - a notifier must never stop the lifecycle
            logger.warning(
                "notifier_failed",
                extra={"event": "notifier_failed", "error_type": type(error).__name__},
            )

    def attestation_succeeded(self, issuer: str, expires_at: int) -> None:
        self._call("attestation_succeeded", issuer, expires_at)

    def attestation_failed(self, step: str, reason: str) -> None:
        self._call("attestation_failed", step, reason)

    def key_released(self, key_ids: Sequence[int], origin: str) -> None:
        self._call("key_released", list(key_ids), origin)

    def key_rotated(self, active: Sequence[int], retired: Sequence[int]) -> None:
        self._call("key_rotated", list(active), list(retired))

    def release_refused(self, code: str, detail: str) -> None:
        self._call("release_refused", code, detail)


def safely(notifier: Notifier | None) -> Notifier:
    return SafeNotifier(notifier or NoopNotifier())
