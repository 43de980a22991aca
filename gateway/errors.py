"""The one error hierarchy of the gateway, its clients and its emulators.

Every error raised by our code, and every foreign exception once mapped at a boundary, is a
:class:`GatewayError`. Each class carries, as class attributes:

* ``status``: the HTTP status it is answered with;
* ``phase``: :attr:`Phase.BEFORE_DECAPSULATION` (answered in the clear, RFC 9458 §5.2),
  :attr:`Phase.AFTER_DECAPSULATION` (answered inside an encapsulated response), or
  :attr:`Phase.LOCAL` (never answered to a client: configuration, startup, client side);
* ``reason``: a short constant label, safe for metrics and logs;
* ``problem_type``: an RFC 9457 problem type URI, where one is registered.

Messages are fixed strings chosen by our code. They never contain payload bytes, inner header
values, key material or tokens: callers pass only counts, names of fields and limits.

The tree::

    GatewayError                          status  phase
    ├── ProtocolError                     400     before   malformed protocol input
    │   ├── BhttpError                    400     after    invalid Binary HTTP (RFC 9292 §4)
    │   │   └── BhttpLimitError           413     after    a configured BHTTP limit exceeded
    │   ├── KeyConfigError                400     before   invalid key config or key list
    │   ├── EncapsulationError            400     before   request could not be decapsulated
    │   │   ├── MalformedRequestHeader    400     before   short header, unknown algorithm
    │   │   ├── UnknownKeyId              400     before   problem ohttp-key
    │   │   ├── SuiteNotAllowed           400     before   problem ohttp-key
    │   │   └── DecryptionFailed          400     before   HPKE open failed
    │   ├── ResponseDecryptionFailed      502     local    client: response did not open
    │   ├── ChunkedStreamError            400     before   chunked framing broken
    │   │   └── TruncatedStream           400     before   no valid final chunk
    │   ├── AzureFramingError             502     local    Azure-profile framing broken
    │   └── ContextReused                 500     local    one-shot context used twice
    ├── RequestRefused                    400     after    refused by policy
    │   ├── PathNotAllowed                403     after
    │   ├── BodyTooLarge                  413     after
    │   ├── ExpectContinueRefused         400     after    RFC 9458 §5.1
    │   ├── ReplayDetected                400     after    RFC 9458 §6.5, problem date
    │   └── DateOutOfWindow               400     after    RFC 9458 §6.5, problem date
    ├── OuterRequestError                 400     before   the outer request is unusable
    │   ├── UnsupportedMediaType          415     before
    │   ├── EncapsulatedBodyTooLarge      413     before
    │   └── NotReady                      503     before   no attested key loaded yet
    ├── UpstreamError                     502     after    the co-located Whisper container
    │   ├── UpstreamUnavailable           502     after
    │   └── UpstreamTimeout               504     after
    ├── TrustError                        503     local    attestation or key release
    │   ├── EvidenceError                                  evidence not obtained or parsed
    │   ├── VerificationError                              evidence or token failed checks
    │   ├── AttestationServiceError                        MAA unreachable or refused
    │   └── KeyReleaseError                                KMS unreachable or refused
    └── ConfigError                       500     local    a setting is missing or invalid
"""

from __future__ import annotations

import enum
from typing import ClassVar

PROBLEM_OHTTP_KEY = "https://iana.org/assignments/http-problem-types#ohttp-key"
PROBLEM_DATE = "https://iana.org/assignments/http-problem-types#date"


class Phase(enum.Enum):
    """Where an error arises relative to decapsulation, which decides how it is answered."""

    BEFORE_DECAPSULATION = "before"
    AFTER_DECAPSULATION = "after"
    LOCAL = "local"


class GatewayError(Exception):
    """Base of every error our code raises. The message is safe to log; see the module docstring."""

    status: ClassVar[int] = 500
    phase: ClassVar[Phase] = Phase.LOCAL
    reason: ClassVar[str] = "internal"
    problem_type: ClassVar[str | None] = None

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message())

    @classmethod
    def default_message(cls) -> str:
        return (cls.__doc__ or cls.__name__).strip().splitlines()[0]

    @property
    def message(self) -> str:
        return str(self.args[0])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


# --- protocol -------------------------------------------------------------------------------


class ProtocolError(GatewayError):
    """Malformed or refused protocol input."""

    status = 400
    phase = Phase.BEFORE_DECAPSULATION
    reason = "protocol"


class BhttpError(ProtocolError):
    """Invalid Binary HTTP message."""

    phase = Phase.AFTER_DECAPSULATION
    reason = "bhttp"


class BhttpLimitError(BhttpError):
    """Binary HTTP message exceeds a configured limit."""

    status = 413
    reason = "bhttp_limit"


class KeyConfigError(ProtocolError):
    """Invalid key configuration."""

    reason = "key_config"


class EncapsulationError(ProtocolError):
    """Encapsulated request could not be processed."""

    reason = "encapsulation"


class MalformedRequestHeader(EncapsulationError):
    """Malformed encapsulated request header."""

    reason = "malformed_header"


class UnknownKeyId(EncapsulationError):
    """Key identifier unknown."""

    reason = "unknown_key"
    problem_type = PROBLEM_OHTTP_KEY


class SuiteNotAllowed(EncapsulationError):
    """HPKE suite not accepted for this key."""

    reason = "suite_not_allowed"
    problem_type = PROBLEM_OHTTP_KEY


class DecryptionFailed(EncapsulationError):
    """Decryption failed."""

    reason = "decryption_failed"


class ResponseDecryptionFailed(ProtocolError):
    """Encapsulated response could not be decrypted."""

    status = 502
    phase = Phase.LOCAL
    reason = "response_decryption_failed"


class ChunkedStreamError(ProtocolError):
    """Malformed chunked OHTTP stream."""

    reason = "chunked_stream"


class TruncatedStream(ChunkedStreamError):
    """Stream ended without a valid final chunk."""

    reason = "truncated_stream"


class AzureFramingError(ProtocolError):
    """Malformed Azure-profile response framing."""

    status = 502
    phase = Phase.LOCAL
    reason = "azure_framing"


class ContextReused(ProtocolError):
    """Response context already used."""

    status = 500
    phase = Phase.LOCAL
    reason = "context_reused"


# --- refusals after decapsulation -------------------------------------------------------------


class RequestRefused(GatewayError):
    """Request refused."""

    status = 400
    phase = Phase.AFTER_DECAPSULATION
    reason = "refused"


class PathNotAllowed(RequestRefused):
    """Path not allowed."""

    status = 403
    reason = "path_not_allowed"


class BodyTooLarge(RequestRefused):
    """Request body too large."""

    status = 413
    reason = "body_too_large"


class ExpectContinueRefused(RequestRefused):
    """Expect: 100-continue is not supported."""

    reason = "expect_continue"


class ReplayDetected(RequestRefused):
    """Request replayed."""

    reason = "replay"
    problem_type = PROBLEM_DATE


class DateOutOfWindow(RequestRefused):
    """Date not acceptable."""

    reason = "date"
    problem_type = PROBLEM_DATE


# --- the outer request ---------------------------------------------------------------------


class OuterRequestError(GatewayError):
    """Outer request not acceptable."""

    status = 400
    phase = Phase.BEFORE_DECAPSULATION
    reason = "outer_request"


class UnsupportedMediaType(OuterRequestError):
    """Unsupported media type."""

    status = 415
    reason = "media_type"


class EncapsulatedBodyTooLarge(OuterRequestError):
    """Encapsulated request too large."""

    status = 413
    reason = "outer_body_too_large"


class NotReady(OuterRequestError):
    """Gateway not ready: no attested key is loaded."""

    status = 503
    reason = "not_ready"


# --- the upstream --------------------------------------------------------------------------


class UpstreamError(GatewayError):
    """Upstream failed."""

    status = 502
    phase = Phase.AFTER_DECAPSULATION
    reason = "upstream"


class UpstreamUnavailable(UpstreamError):
    """Upstream unavailable."""

    reason = "upstream_unavailable"


class UpstreamTimeout(UpstreamError):
    """Upstream timed out."""

    status = 504
    reason = "upstream_timeout"


# --- trust ---------------------------------------------------------------------------------


class TrustError(GatewayError):
    """Attestation or key release failed."""

    status = 503
    reason = "trust"


class EvidenceError(TrustError):
    """Attestation evidence could not be obtained or parsed."""

    reason = "evidence"


class VerificationError(TrustError):
    """Verification failed."""

    reason = "verification"


class AttestationServiceError(TrustError):
    """Attestation service failed."""

    reason = "attestation_service"


class KeyReleaseError(TrustError):
    """Key release failed."""

    reason = "key_release"


# --- configuration -------------------------------------------------------------------------


class ConfigError(GatewayError):
    """Invalid configuration."""

    reason = "config"
