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
    │   ├── MethodNotAllowed              405     after
    │   ├── BodyTooLarge                  413     after
    │   ├── ExpectContinueRefused         400     after    RFC 9458 §5.1
    │   ├── ReplayDetected                400     after    RFC 9458 §6.5, problem date
    │   ├── DateOutOfWindow               400     after    RFC 9458 §6.5, problem date
    │   └── TranscriptionRequestInvalid   400     after    demo backend: bad form field
    │       └── AudioInvalid              400     after    demo backend: not a usable WAV
    ├── OuterRequestError                 400     before   the outer request is unusable
    │   ├── UnsupportedMediaType          415     before
    │   ├── EncapsulatedBodyTooLarge      413     before
    │   ├── HeadersTooLarge               431     before
    │   ├── BodyTimeout                   408     before   body stalled, or below the minimum rate
    │   ├── NotReady                      503     before   no attested key loaded yet
    │   └── Overloaded                    503     before   concurrency limit reached
    │       └── ReplayMemoryFull          503     before   no room to remember one more enc
    ├── UpstreamError                     502     after    the co-located Whisper container
    │   ├── UpstreamUnavailable           502     after
    │   ├── UpstreamTimeout               504     after
    │   └── RecognizerFailed              502     after    demo backend: recogniser worker died
    ├── TrustError                        503     local    attestation or key release
    │   ├── EvidenceError                                  evidence not obtained or parsed
    │   │   ├── MalformedReport                            SNP ATTESTATION_REPORT unparsable
    │   │   │   └── UnsupportedReportVersion               not version 2, 3 or 5
    │   │   ├── MalformedHclReport                         HCL report / runtime claims unparsable
    │   │   │   └── UnsupportedHclReportType               e.g. TDX (4)
    │   │   ├── MalformedCertificates                      PEM chain / THIM JSON / cert table
    │   │   ├── EvidenceDeviceError                        sev-guest ioctl / configfs-tsm failed
    │   │   ├── HclReportStale                             report lacks the written user-data
    │   │   └── TpmError                                   a TPM command failed
    │   │       ├── TpmUnavailable                         the TPM could not be opened
    │   │       ├── TpmObjectMissing                       NV index or persistent key absent
    │   │       ├── TpmPolicyFailed                        PCR policy refused (PCRs changed)
    │   │       └── TpmKeyLost                             ephemeral key gone (TPM reset)
    │   ├── VerificationError                              evidence or token failed checks
    │   │   ├── CertificateChainError                      ARK → ASK → VCEK refused
    │   │   │   ├── UntrustedRoot                          ARK is not a pinned root
    │   │   │   ├── MissingAmdRoot                         no pinned root for this product
    │   │   │   ├── RootSignatureInvalid                   ARK not self-signed
    │   │   │   ├── AskSignatureInvalid                    ASK not signed by the ARK
    │   │   │   ├── VcekSignatureInvalid                   VCEK not signed by the ASK
    │   │   │   ├── CertificateNotValidNow                 outside notBefore/notAfter
    │   │   │   └── VcekExtensionsInvalid                  AMD TCB/hwID extensions missing
    │   │   ├── ReportSignatureInvalid                     ECDSA P-384 over 0..0x29F fails
    │   │   ├── ChipIdMismatch                             report CHIP_ID != VCEK hwID
    │   │   ├── TcbMismatch                                REPORTED_TCB != VCEK TCB
    │   │   ├── BindingError                               evidence does not bind our data
    │   │   │   ├── RuntimeDataMismatch                    hash(runtime data) != REPORT_DATA
    │   │   │   ├── InitTimeDataMismatch                   hash(init-time data) != HOST_DATA
    │   │   │   └── ReportDataMismatch                     REPORT_DATA/user-data not expected
    │   │   ├── PolicyViolation                            report refused by policy
    │   │   │   ├── DebugNotAllowed / MigrationAgentNotAllowed / SmtNotAllowed
    │   │   │   ├── VmplNotAllowed / TcbBelowMinimum / MeasurementNotAllowed
    │   │   │   └── SigningKeyNotAllowed                   VLEK or no key where VCEK required
    │   │   ├── TokenError                                 MAA token refused
    │   │   │   ├── MalformedToken / UnsignedToken / TokenAlgorithmNotAllowed
    │   │   │   ├── TokenKeyUnknown / TokenKeySourceMismatch / TokenSignatureInvalid
    │   │   │   ├── TokenExpired / TokenNotYetValid / TokenIssuedInFuture
    │   │   │   ├── TokenIssuerMismatch / TokenClaimsInvalid
    │   │   │   └── SigningKeysInvalid                     the /certs JWKS is unusable
    │   │   ├── TpmVerificationError                       TPM quote or certification refused
    │   │   │   ├── TpmStructureInvalid                    malformed TPMS_ATTEST / TPM2B_PUBLIC
    │   │   │   ├── TpmSignatureInvalid                    AIK signature does not verify
    │   │   │   ├── TpmNonceMismatch                       qualifying data is not the nonce
    │   │   │   ├── QuotePcrMismatch                       wrong PCR selection or digest
    │   │   │   ├── CertifiedKeyMismatch                   certified key / AIK not as required
    │   │   │   └── UntrustedAik                           AIK cert not from a trusted vTPM CA
    │   │   ├── ReceiptError                               CCF ledger receipt refused
    │   │   │   ├── MalformedReceipt                       receipt JSON/cert unparsable
    │   │   │   ├── ReceiptClaimsMismatch                  claims_digest != SHA-256(key hex)
    │   │   │   ├── ReceiptSignatureInvalid                Merkle root signature fails
    │   │   │   └── ReceiptEndorsementInvalid              node cert not endorsed by service
    │   │   └── AttestationPolicyError                     client: gateway attestation refused
    │   │       ├── AttestationDocumentInvalid             document malformed, section missing
    │   │       ├── SimulatedEvidenceNotAllowed            dev-mode gateway, not --allow-simulated
    │   │       ├── AttestationTypeNotAllowed              x-ms-attestation-type not allowed
    │   │       ├── ComplianceStatusNotAllowed             x-ms-compliance-status not allowed
    │   │       ├── TokenTooOld                            iat older than the policy's maximum age
    │   │       ├── ClaimsMissing                          runtime or SNP claims section absent
    │   │       ├── DebuggableGuest                        is-debuggable claim true
    │   │       ├── LaunchMeasurementNotAllowed            not in the policy allowlist
    │   │       ├── HostDataNotAllowed                     not in the policy allowlist
    │   │       ├── IdKeyDigestNotAllowed                  not in the policy allowlist
    │   │       ├── SvnBelowMinimum                        a TCB SVN or guest SVN too low
    │   │       ├── KeyBindingMismatch                     user-data does not bind the key configs
    │   │       ├── EvidenceClaimsMismatch                 evidence and token claims disagree
    │   │       └── KeyConfigsChanged                      keys in use are not the attested ones
    │   ├── AttestationDocumentUnavailable                 client: document not served
    │   ├── AttestationServiceError                        MAA unreachable or refused
    │   │   └── AttestationRefused                         MAA answered 4xx (carries its code)
    │   └── KeyReleaseError                                KMS unreachable or refused
    │       ├── KeyReleaseRefused                          KMS answered 4xx (carries reason)
    │       ├── ReleaseResponseInvalid                     answer unparsable or unbound
    │       │   ├── ReleaseSignatureInvalid                JWS signature does not verify
    │       │   ├── ReleaseCertificateInvalid              x5c chain refused
    │       │   ├── VaultHostMismatch                      certificate does not name the vault
    │       │   └── UnencryptedRelease                     key came back unwrapped
    │       ├── KeyUnwrapFailed                            RSA-OAEP / AES-KWP unwrap failed
    │       └── ReleasedKeyInvalid                         not a P-256/P-384 key, bad COSE_Key
    ├── ClientError                       502     local    client: the exchange failed
    │   ├── ClientConnectionFailed                         relay or gateway unreachable
    │   ├── OuterResponseRefused                           a clear non-200 answer (carries status)
    │   └── KeyConfigRejected                              problem ohttp-key again after a refresh
    └── ConfigError                       500     local    a setting is missing or invalid
        └── ReplayMemoryError                      shared replay table not created/mapped
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


class MethodNotAllowed(RequestRefused):
    """Method not allowed."""

    status = 405
    reason = "method_not_allowed"


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


class TranscriptionRequestInvalid(RequestRefused):
    """Transcription request invalid."""

    reason = "transcription_request"


class AudioInvalid(TranscriptionRequestInvalid):
    """Audio not usable: only PCM WAV is accepted."""

    reason = "audio"


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


class HeadersTooLarge(OuterRequestError):
    """Request header fields too large."""

    status = 431
    reason = "headers_too_large"


class BodyTimeout(OuterRequestError):
    """Request body not received in time."""

    # The sender went quiet for longer than the idle timeout, or fell below the minimum rate.
    # Answered in the clear until something was decrypted; in a chunked request whose head was
    # already decrypted it is answered encapsulated (or ends a response already streaming).
    status = 408
    reason = "body_timeout"


class NotReady(OuterRequestError):
    """Gateway not ready: no attested key is loaded."""

    status = 503
    reason = "not_ready"


class Overloaded(OuterRequestError):
    """Gateway busy: try again later."""

    status = 503
    reason = "overloaded"


class ReplayMemoryFull(Overloaded):
    """Gateway busy: try again later."""

    reason = "replay_memory_full"


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


class RecognizerFailed(UpstreamError):
    """Speech recogniser failed."""

    reason = "recognizer"


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


# Evidence parsing and acquisition.


class MalformedReport(EvidenceError):
    """SNP attestation report is malformed."""

    reason = "malformed_report"


class UnsupportedReportVersion(MalformedReport):
    """SNP attestation report version is not supported."""

    reason = "unsupported_report_version"


class MalformedHclReport(EvidenceError):
    """HCL report is malformed."""

    reason = "malformed_hcl_report"


class UnsupportedHclReportType(MalformedHclReport):
    """HCL report type is not supported (only SEV-SNP is)."""

    reason = "unsupported_hcl_report_type"


class MalformedCertificates(EvidenceError):
    """Certificate chain is malformed."""

    reason = "malformed_certificates"


class EvidenceDeviceError(EvidenceError):
    """The attestation device did not produce a report."""

    reason = "evidence_device"


# Evidence verification: one class per way evidence can fail, so every tampering is named.


class CertificateChainError(VerificationError):
    """AMD certificate chain refused."""

    reason = "certificate_chain"


class UntrustedRoot(CertificateChainError):
    """ARK is not a pinned AMD root."""

    reason = "untrusted_root"


class MissingAmdRoot(CertificateChainError):
    """No pinned AMD root is shipped for this product."""

    reason = "missing_amd_root"


class RootSignatureInvalid(CertificateChainError):
    """ARK is not validly self-signed."""

    reason = "root_signature"


class AskSignatureInvalid(CertificateChainError):
    """ASK is not signed by the ARK."""

    reason = "ask_signature"


class VcekSignatureInvalid(CertificateChainError):
    """VCEK is not signed by the ASK."""

    reason = "vcek_signature"


class CertificateNotValidNow(CertificateChainError):
    """A certificate in the AMD chain is outside its validity period."""

    reason = "certificate_validity"


class VcekExtensionsInvalid(CertificateChainError):
    """VCEK lacks valid AMD TCB or hardware-id extensions."""

    reason = "vcek_extensions"


class ReportSignatureInvalid(VerificationError):
    """SNP report signature does not verify with the VCEK."""

    reason = "report_signature"


class ChipIdMismatch(VerificationError):
    """SNP report chip id does not match the VCEK hardware id."""

    reason = "chip_id_mismatch"


class TcbMismatch(VerificationError):
    """SNP report reported TCB does not match the VCEK TCB."""

    reason = "tcb_mismatch"


class BindingError(VerificationError):
    """Evidence does not bind the expected data."""

    reason = "binding"


class RuntimeDataMismatch(BindingError):
    """Runtime data hash does not match REPORT_DATA."""

    reason = "runtime_data_mismatch"


class InitTimeDataMismatch(BindingError):
    """Init-time data hash does not match HOST_DATA."""

    reason = "init_time_data_mismatch"


class ReportDataMismatch(BindingError):
    """Report data does not bind the expected value (nonce or key configuration)."""

    reason = "report_data_mismatch"


class PolicyViolation(VerificationError):
    """Attestation report violates the verification policy."""

    reason = "policy"


class DebugNotAllowed(PolicyViolation):
    """Guest policy allows debugging, which the policy refuses."""

    reason = "policy_debug"


class MigrationAgentNotAllowed(PolicyViolation):
    """Guest policy allows a migration agent, which the policy refuses."""

    reason = "policy_migration_agent"


class SmtNotAllowed(PolicyViolation):
    """Guest policy allows SMT, which the policy refuses."""

    reason = "policy_smt"


class VmplNotAllowed(PolicyViolation):
    """Report VMPL is not allowed by the policy."""

    reason = "policy_vmpl"


class TcbBelowMinimum(PolicyViolation):
    """Reported TCB is below the policy minimum."""

    reason = "policy_tcb"


class MeasurementNotAllowed(PolicyViolation):
    """Launch measurement is not in the policy allowlist."""

    reason = "policy_measurement"


class SigningKeyNotAllowed(PolicyViolation):
    """Report is not signed by a VCEK."""

    reason = "policy_signing_key"


# MAA tokens.


class TokenError(VerificationError):
    """Attestation token refused."""

    reason = "token"


class MalformedToken(TokenError):
    """Attestation token is malformed."""

    reason = "token_malformed"


class UnsignedToken(TokenError):
    """Attestation token is unsigned."""

    reason = "token_unsigned"


class TokenAlgorithmNotAllowed(TokenError):
    """Attestation token algorithm is not RS256."""

    reason = "token_alg"


class TokenKeyUnknown(TokenError):
    """Attestation token key id is not among the issuer's signing keys."""

    reason = "token_kid"


class TokenKeySourceMismatch(TokenError):
    """Attestation token names a key source other than the pinned issuer's."""

    reason = "token_jku"


class TokenSignatureInvalid(TokenError):
    """Attestation token signature is invalid."""

    reason = "token_signature"


class TokenExpired(TokenError):
    """Attestation token has expired."""

    reason = "token_expired"


class TokenNotYetValid(TokenError):
    """Attestation token is not valid yet (nbf in the future)."""

    reason = "token_nbf"


class TokenIssuedInFuture(TokenError):
    """Attestation token was issued in the future (iat)."""

    reason = "token_iat"


class TokenIssuerMismatch(TokenError):
    """Attestation token issuer is not the pinned issuer."""

    reason = "token_issuer"


class TokenClaimsInvalid(TokenError):
    """Attestation token claims are missing or mistyped."""

    reason = "token_claims"


class SigningKeysInvalid(TokenError):
    """Attestation service signing keys are unusable."""

    reason = "token_signing_keys"


# Ledger receipts (Azure confidential KMS / CCF): the client team verifies them too.


class ReceiptError(VerificationError):
    """Ledger receipt refused."""

    reason = "receipt"


class MalformedReceipt(ReceiptError):
    """Ledger receipt is malformed."""

    reason = "receipt_malformed"


class ReceiptClaimsMismatch(ReceiptError):
    """Ledger receipt does not bind the expected public key."""

    reason = "receipt_claims"


class ReceiptSignatureInvalid(ReceiptError):
    """Ledger receipt signature over the Merkle root does not verify."""

    reason = "receipt_signature"


class ReceiptEndorsementInvalid(ReceiptError):
    """Ledger receipt node certificate is not endorsed by the pinned service certificate."""

    reason = "receipt_endorsement"


class AttestationPolicyError(VerificationError):
    """Gateway attestation refused by the client policy."""

    reason = "attestation_policy"


class AttestationDocumentInvalid(AttestationPolicyError):
    """Attestation document is malformed."""

    reason = "attestation_document"


class SimulatedEvidenceNotAllowed(AttestationPolicyError):
    """Gateway runs in dev mode with simulated evidence; only --allow-simulated accepts it."""

    reason = "simulated_evidence"


class AttestationTypeNotAllowed(AttestationPolicyError):
    """Attestation type is not allowed by the policy."""

    reason = "attestation_type"


class ComplianceStatusNotAllowed(AttestationPolicyError):
    """Compliance status is not allowed by the policy."""

    reason = "compliance_status"


class TokenTooOld(AttestationPolicyError):
    """Attestation token is older than the policy's maximum token age."""

    reason = "token_age"


class ClaimsMissing(AttestationPolicyError):
    """Attestation token lacks a claims section the policy checks."""

    reason = "claims_missing"


class DebuggableGuest(AttestationPolicyError):
    """Attested guest is debuggable."""

    reason = "debuggable"


class LaunchMeasurementNotAllowed(AttestationPolicyError):
    """Launch measurement is not in the policy allowlist."""

    reason = "launch_measurement"


class HostDataNotAllowed(AttestationPolicyError):
    """Host data is not in the policy allowlist."""

    reason = "host_data"


class IdKeyDigestNotAllowed(AttestationPolicyError):
    """ID key digest is not in the policy allowlist."""

    reason = "id_key_digest"


class SvnBelowMinimum(AttestationPolicyError):
    """TCB or guest SVN is below the policy minimum."""

    reason = "svn"


class KeyBindingMismatch(AttestationPolicyError):
    """Attested user-data does not bind the gateway's key configs."""

    reason = "key_binding"


class EvidenceClaimsMismatch(AttestationPolicyError):
    """Re-verified evidence does not match the attestation token's claims."""

    reason = "evidence_claims"


class KeyConfigsChanged(AttestationPolicyError):
    """Key configs to encrypt to are not the attested ones."""

    reason = "key_configs_changed"


class AttestationDocumentUnavailable(TrustError):
    """Gateway attestation document could not be fetched."""

    reason = "attestation_unavailable"


class AttestationServiceError(TrustError):
    """Attestation service failed."""

    reason = "attestation_service"


class AttestationRefused(AttestationServiceError):
    """Attestation service refused the request."""

    reason = "attestation_refused"

    def __init__(self, message: str | None = None, *, code: str = "", detail: str = "") -> None:
        super().__init__(message)
        # The service's CloudError code and inner code: constant labels, checked by the caller to
        # be identifier-like, so they are safe to log and to branch on in tests.
        self.code = code
        self.detail = detail


class KeyReleaseError(TrustError):
    """Key release failed."""

    reason = "key_release"


class KeyReleaseRefused(KeyReleaseError):
    """Key management service refused the release."""

    reason = "key_release_refused"

    def __init__(self, message: str | None = None, *, code: str = "", detail: str = "") -> None:
        super().__init__(message)
        # The service's error code and its stated reason, checked by the caller to be short
        # printable text without token or key material: what an SRE needs to fix a policy.
        self.code = code
        self.detail = detail


class ReleaseResponseInvalid(KeyReleaseError):
    """Key release response is malformed or not bound to this request."""

    reason = "release_response"


class ReleaseSignatureInvalid(ReleaseResponseInvalid):
    """Key release response signature does not verify."""

    reason = "release_signature"


class ReleaseCertificateInvalid(ReleaseResponseInvalid):
    """Key release response certificate chain is not trusted."""

    reason = "release_certificate"


class VaultHostMismatch(ReleaseResponseInvalid):
    """Key release response certificate does not name the vault host."""

    reason = "vault_host_mismatch"


class UnencryptedRelease(ReleaseResponseInvalid):
    """Key management service released the key unencrypted."""

    reason = "release_unencrypted"


class KeyUnwrapFailed(KeyReleaseError):
    """Released key could not be unwrapped."""

    reason = "key_unwrap"


class ReleasedKeyInvalid(KeyReleaseError):
    """Released key is not a usable HPKE key."""

    reason = "released_key_invalid"


# --- the TPM (azure-vtpm evidence) --------------------------------------------------------


class TpmError(EvidenceError):
    """A TPM command failed."""

    reason = "tpm"


class TpmUnavailable(TpmError):
    """The TPM could not be opened."""

    reason = "tpm_unavailable"


class TpmObjectMissing(TpmError):
    """A TPM NV index or persistent key is not present."""

    reason = "tpm_object_missing"


class TpmPolicyFailed(TpmError):
    """The TPM refused the PCR policy: PCR values changed since the key was created."""

    reason = "tpm_policy_failed"


class TpmKeyLost(TpmError):
    """The ephemeral TPM key is gone (TPM reset); evidence must be collected again."""

    reason = "tpm_key_lost"


class HclReportStale(EvidenceError):
    """The HCL report does not carry the user-data just written."""

    reason = "hcl_report_stale"


class TpmVerificationError(VerificationError):
    """TPM quote or key certification refused."""

    reason = "tpm_verification"


class TpmStructureInvalid(TpmVerificationError):
    """Malformed TPM structure."""

    reason = "tpm_structure"


class TpmSignatureInvalid(TpmVerificationError):
    """TPM attestation signature does not verify with the AIK."""

    reason = "tpm_signature"


class TpmNonceMismatch(TpmVerificationError):
    """TPM attestation qualifying data is not the expected nonce."""

    reason = "tpm_nonce"


class QuotePcrMismatch(TpmVerificationError):
    """TPM quote does not cover the expected PCR values."""

    reason = "quote_pcrs"


class CertifiedKeyMismatch(TpmVerificationError):
    """Certified key or AIK is not the one required."""

    reason = "certified_key"


class UntrustedAik(TpmVerificationError):
    """AIK certificate is not issued by a trusted vTPM CA."""

    reason = "untrusted_aik"


# --- the client side ---------------------------------------------------------------------


class ClientError(GatewayError):
    """Request through the relay failed."""

    status = 502
    reason = "client"


class ClientConnectionFailed(ClientError):
    """Relay or gateway unreachable."""

    reason = "client_connection"


class OuterResponseRefused(ClientError):
    """Relay or gateway refused the request."""

    reason = "outer_refused"

    def __init__(self, message: str | None = None, *, outer_status: int = 0) -> None:
        super().__init__(message)
        # The clear status of the relay's or gateway's answer: a number, safe to show.
        self.outer_status = outer_status


class KeyConfigRejected(ClientError):
    """Gateway rejected the key configuration again after a refresh."""

    reason = "key_config_rejected"


# --- configuration -------------------------------------------------------------------------


class ConfigError(GatewayError):
    """Invalid configuration."""

    reason = "config"


class ReplayMemoryError(ConfigError):
    """Replay memory unavailable."""

    reason = "replay_memory"
