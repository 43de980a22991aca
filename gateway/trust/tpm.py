"""The TPM adapter: the few TPM 2.0 commands the azure-vtpm evidence provider needs, via tpm2-pytss.

Accepts a TCTI string (``device:/dev/tpmrm0`` in production, ``swtpm:path=…`` or
``swtpm:host=127.0.0.1,port=N`` in tests). :func:`open_tpm` is the only way in: it takes a
process-wide lock, so one ESAPI context talks to the TPM at a time (swtpm serves one connection
at a time, and without a resource manager objects and sessions leak across connections).

Guarantees:

* every tpm2-pytss exception is mapped once, here, to a :class:`~gateway.errors.TpmError`
  subclass with a fixed message naming the operation and the TPM response code;
* every session and transient object this module starts or loads is flushed in ``finally``;
* results are plain ``bytes`` in TPM marshalling (``TPM2B_PUBLIC``, ``TPMS_ATTEST``), so the
  pure :mod:`gateway.trust.tpm_verify` can check them.

Never: uses a TCTI the caller did not name (ESAPI's default search would pick up any stray
simulator), logs or returns decrypted plaintext other than to the caller, or keeps a context open
between calls.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from tpm2_pytss import (
    ESAPI,
    ESYS_TR,
    TPM2_ALG,
    TPM2_CAP,
    TPM2_PT_NV,
    TPM2_RC,
    TPM2_SE,
    TPM2B_NV_PUBLIC,
    TPM2B_PUBLIC,
    TPMA_NV,
    TPMA_OBJECT,
    TPMA_SESSION,
    TPMS_CONTEXT,
    TPMS_NV_PUBLIC,
    TPMT_PUBLIC,
    TPMT_RSA_DECRYPT,
    TPMT_SIG_SCHEME,
    TPMT_SYM_DEF,
    TPMU_SYM_KEY_BITS,
    TPMU_SYM_MODE,
    TSS2_Exception,
)

from gateway.errors import (
    TpmError,
    TpmKeyLost,
    TpmObjectMissing,
    TpmPolicyFailed,
    TpmUnavailable,
)

_T = TypeVar("_T")

# One ESAPI context at a time, process-wide: swtpm and /dev/tpm0 serve one client at a time,
# and the provider's sessions must not interleave with another caller's.
_LOCK = threading.Lock()
_LOCK_TIMEOUT_S = 30.0

NV_ATTRIBUTES = (
    TPMA_NV.OWNERREAD | TPMA_NV.OWNERWRITE | TPMA_NV.AUTHREAD | TPMA_NV.AUTHWRITE | TPMA_NV.NO_DA
)
# The template of Microsoft's guest attestation library: policy-only use (no userWithAuth).
EPHEMERAL_KEY_ATTRIBUTES = (
    TPMA_OBJECT.DECRYPT
    | TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.NODA
)
_MISSING = {int(TPM2_RC.HANDLE), int(TPM2_RC.NV_UNINITIALIZED)}
_POLICY = {int(TPM2_RC.POLICY_FAIL), int(TPM2_RC.VALUE), int(TPM2_RC.PCR_CHANGED)}
_LAYER_MASK = 0x00FF0000  # TSS2_RC layers: 0 = the TPM itself, 0x0A = the TCTI
_TPM_LAYER = 0x00000000
_TCTI_LAYER = 0x000A0000


def _map(error: TSS2_Exception, operation: str, what: str) -> TpmError:
    """The single mapping from a tpm2-pytss error to our hierarchy."""
    rc = int(error.rc)
    code = int(error.error)
    detail = f"TPM {operation} of {what} failed (rc 0x{rc:x})"
    layer = rc & _LAYER_MASK
    if layer == _TCTI_LAYER:
        return TpmUnavailable(f"TPM connection failed during {operation} (rc 0x{rc:x})")
    if operation == "ContextLoad":
        return TpmKeyLost()
    if layer == _TPM_LAYER and code in _MISSING:
        return TpmObjectMissing(f"{what} is not present in the TPM (rc 0x{rc:x})")
    if layer == _TPM_LAYER and operation in ("PolicyPCR", "RSA_Decrypt") and code in _POLICY:
        return TpmPolicyFailed()
    return TpmError(detail)


def _pcr_spec(pcrs: Sequence[int]) -> str:
    return "sha256:" + ",".join(str(i) for i in sorted(pcrs))


class Tpm:
    """One open ESAPI context. Obtain through :func:`open_tpm`; every call is mapped."""

    def __init__(self, esapi: Any) -> None:
        self._esapi = esapi

    def _call(self, operation: str, what: str, fn: Callable[..., _T], *args: Any, **kw: Any) -> _T:
        try:
            return fn(*args, **kw)
        except TSS2_Exception as error:
            raise _map(error, operation, what) from error

    # --- capabilities, handles --------------------------------------------------------------

    def nv_buffer_max(self) -> int:
        """TPM2_PT_NV_BUFFER_MAX: the largest NV_Read/NV_Write this TPM accepts."""
        _, data = self._call(
            "GetCapability",
            "TPM2_PT_NV_BUFFER_MAX",
            self._esapi.get_capability,
            TPM2_CAP.TPM_PROPERTIES,
            TPM2_PT_NV.BUFFER_MAX,
            1,
        )
        for prop in data.data.tpmProperties:
            if int(prop.property) == int(TPM2_PT_NV.BUFFER_MAX):
                return int(prop.value)
        raise TpmError("TPM did not report TPM2_PT_NV_BUFFER_MAX")

    @contextmanager
    def _resource(self, handle: int, what: str) -> Iterator[Any]:
        """An ESYS_TR for an NV index or persistent key, closed (never evicted) afterwards."""
        tr = self._call("ReadPublic", what, self._esapi.tr_from_tpmpublic, handle)
        try:
            yield tr
        finally:
            self._esapi.tr_close(tr)

    # --- NV -------------------------------------------------------------------------------

    def nv_size(self, index: int, what: str) -> int | None:
        """The defined size of an NV index, or None when it is not defined."""
        try:
            with self._resource(index, what) as tr:
                public, _ = self._call("NV_ReadPublic", what, self._esapi.nv_read_public, tr)
                return int(public.nvPublic.dataSize)
        except TpmObjectMissing:
            return None

    def nv_read(self, index: int, what: str) -> bytes:
        """The whole NV index, read in chunks of at most TPM2_PT_NV_BUFFER_MAX bytes."""
        chunk = self.nv_buffer_max()
        with self._resource(index, what) as tr:
            public, _ = self._call("NV_ReadPublic", what, self._esapi.nv_read_public, tr)
            size = int(public.nvPublic.dataSize)
            out = bytearray()
            while len(out) < size:
                count = min(chunk, size - len(out))
                piece = self._call(
                    "NV_Read",
                    what,
                    self._esapi.nv_read,
                    tr,
                    count,
                    offset=len(out),
                    auth_handle=ESYS_TR.OWNER,
                )
                out += bytes(piece)
        return bytes(out)

    def nv_define(self, index: int, size: int, what: str) -> None:
        """Define an owner-authorised NV index of ``size`` bytes (empty auth, no DA)."""
        public = TPM2B_NV_PUBLIC(
            nvPublic=TPMS_NV_PUBLIC(
                nvIndex=index, nameAlg=TPM2_ALG.SHA256, attributes=NV_ATTRIBUTES, dataSize=size
            )
        )
        tr = self._call("NV_DefineSpace", what, self._esapi.nv_define_space, None, public)
        self._esapi.tr_close(tr)

    def nv_write(self, index: int, data: bytes, what: str) -> None:
        """Write ``data`` at offset 0, in chunks of at most TPM2_PT_NV_BUFFER_MAX bytes."""
        chunk = self.nv_buffer_max()
        with self._resource(index, what) as tr:
            for offset in range(0, len(data), chunk):
                self._call(
                    "NV_Write",
                    what,
                    self._esapi.nv_write,
                    tr,
                    data[offset : offset + chunk],
                    offset=offset,
                    auth_handle=ESYS_TR.OWNER,
                )

    # --- keys, PCRs, quotes -----------------------------------------------------------------

    def read_public(self, handle: int, what: str) -> bytes:
        """The persistent key's marshalled TPM2B_PUBLIC."""
        with self._resource(handle, what) as tr:
            public, _, _ = self._call("ReadPublic", what, self._esapi.read_public, tr)
            return bytes(public.marshal())

    def pcr_read(self, pcrs: Sequence[int]) -> dict[int, bytes]:
        """The sha256-bank values of ``pcrs``."""
        wanted = sorted(pcrs)
        values: dict[int, bytes] = {}
        # PCR_Read returns at most 8 digests per call; ask again for the rest.
        for start in range(0, len(wanted), 8):
            batch = wanted[start : start + 8]
            _, selection, digests = self._call(
                "PCR_Read", "the sha256 PCR bank", self._esapi.pcr_read, _pcr_spec(batch)
            )
            returned = [i for i in batch if _selected(selection, i)]
            if len(returned) != len(batch) or len(digests) != len(batch):
                raise TpmError("TPM did not return every requested sha256 PCR")
            values.update(zip(returned, (bytes(d) for d in digests), strict=True))
        return values

    def quote(self, aik_handle: int, pcrs: Sequence[int], nonce: bytes) -> tuple[bytes, bytes]:
        """TPM2_Quote over the sha256 ``pcrs``: (TPMS_ATTEST bytes, raw RSA signature)."""
        with self._resource(aik_handle, "the AIK") as aik:
            quoted, signature = self._call(
                "Quote",
                "the PCRs",
                self._esapi.quote,
                aik,
                _pcr_spec(pcrs),
                nonce,
                TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL),
            )
        return _attest_body(quoted), _rsa_signature(signature)

    def policy_pcr_digest(self, pcrs: Sequence[int], pcr_digest: bytes) -> bytes:
        """The PolicyPCR digest as the TPM computes it, in a trial session."""
        session = self._start_session(TPM2_SE.TRIAL)
        try:
            self._call(
                "PolicyPCR",
                "the PCR policy",
                self._esapi.policy_pcr,
                session,
                pcr_digest,
                _pcr_spec(pcrs),
            )
            digest = self._call(
                "PolicyGetDigest", "the PCR policy", self._esapi.policy_get_digest, session
            )
            return bytes(digest)
        finally:
            self._flush(session)

    def create_policy_key(self, auth_policy: bytes) -> tuple[bytes, bytes]:
        """A fresh RSA-2048 decryption key in the NULL hierarchy, usable only under
        ``auth_policy``. Returns (TPM2B_PUBLIC bytes, saved context bytes); the key itself
        is flushed, and reloaded from the saved context for each use."""
        template = TPM2B_PUBLIC(
            publicArea=TPMT_PUBLIC(
                type=TPM2_ALG.RSA,
                nameAlg=TPM2_ALG.SHA256,
                objectAttributes=EPHEMERAL_KEY_ATTRIBUTES,
                authPolicy=auth_policy,
            )
        )
        # A primary key is derived from the hierarchy seed and the template: random bytes in
        # the template's unique field make each key fresh rather than the same one per boot.
        template.publicArea.unique.rsa = os.urandom(32)
        detail = template.publicArea.parameters.rsaDetail
        detail.symmetric.algorithm = TPM2_ALG.NULL
        detail.scheme.scheme = TPM2_ALG.NULL
        detail.keyBits = 2048
        detail.exponent = 0
        handle, public, *_ = self._call(
            "CreatePrimary",
            "the ephemeral key",
            self._esapi.create_primary,
            None,
            template,
            primary_handle=ESYS_TR.NULL,
        )
        try:
            context = self._call(
                "ContextSave", "the ephemeral key", self._esapi.context_save, handle
            )
            return bytes(public.marshal()), bytes(context.marshal())
        finally:
            self._flush(handle)

    def certify(self, saved_key: bytes, aik_handle: int, nonce: bytes) -> tuple[bytes, bytes]:
        """TPM2_Certify of the saved key by the AIK: (TPMS_ATTEST bytes, raw RSA signature).

        The key's adminWithPolicy is clear, so its admin role takes a password session."""
        with self._loaded(saved_key) as key, self._resource(aik_handle, "the AIK") as aik:
            info, signature = self._call(
                "Certify",
                "the ephemeral key",
                self._esapi.certify,
                key,
                aik,
                nonce,
                TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL),
                session1=ESYS_TR.PASSWORD,
                session2=ESYS_TR.PASSWORD,
            )
        return _attest_body(info), _rsa_signature(signature)

    def policy_decrypt(
        self,
        saved_key: bytes,
        ciphertext: bytes,
        scheme: str,
        pcrs: Sequence[int],
        pcr_digest: bytes,
    ) -> bytes:
        """TPM2_RSA_Decrypt with the saved key, in a policy session satisfied by PolicyPCR.

        The session is salted with the key itself and encrypts the response, so the
        plaintext never crosses the TPM interface in the clear."""
        with self._loaded(saved_key) as key:
            session = self._start_session(TPM2_SE.POLICY, salt_key=key)
            try:
                self._esapi.trsess_set_attributes(
                    session, TPMA_SESSION.ENCRYPT | TPMA_SESSION.CONTINUESESSION
                )
                self._call(
                    "PolicyPCR",
                    "the PCR policy",
                    self._esapi.policy_pcr,
                    session,
                    pcr_digest,
                    _pcr_spec(pcrs),
                )
                plaintext = self._call(
                    "RSA_Decrypt",
                    "the ciphertext",
                    self._esapi.rsa_decrypt,
                    key,
                    ciphertext,
                    _decrypt_scheme(scheme),
                    label=None,
                    session1=session,
                )
                return bytes(plaintext)
            finally:
                self._flush(session)

    # --- sessions and transient objects -----------------------------------------------------

    def _start_session(self, kind: Any, salt_key: Any = None) -> Any:
        symmetric = TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL)
        if salt_key is not None:
            symmetric = TPMT_SYM_DEF(
                algorithm=TPM2_ALG.AES,
                keyBits=TPMU_SYM_KEY_BITS(aes=128),
                mode=TPMU_SYM_MODE(aes=TPM2_ALG.CFB),
            )
        return self._call(
            "StartAuthSession",
            "a policy session",
            self._esapi.start_auth_session,
            ESYS_TR.NONE if salt_key is None else salt_key,
            ESYS_TR.NONE,
            kind,
            symmetric,
            TPM2_ALG.SHA256,
        )

    @contextmanager
    def _loaded(self, saved_key: bytes) -> Iterator[Any]:
        try:
            context, _ = TPMS_CONTEXT.unmarshal(saved_key)
        except Exception as error:  # tpm2-pytss raises assorted types on bad marshalling
            raise TpmKeyLost from error
        handle = self._call("ContextLoad", "the ephemeral key", self._esapi.context_load, context)
        try:
            yield handle
        finally:
            self._flush(handle)

    def _flush(self, handle: Any) -> None:
        # Best effort: a failed flush must not hide the error that got us here; /dev/tpmrm0
        # flushes the connection's leftovers on close anyway.
        with suppress(TSS2_Exception):
            self._esapi.flush_context(handle)


@contextmanager
def open_tpm(tcti: str) -> Iterator[Tpm]:
    """The one way to reach the TPM: lock, open an ESAPI context on ``tcti``, close it."""
    if not _LOCK.acquire(timeout=_LOCK_TIMEOUT_S):
        raise TpmUnavailable("TPM is busy: another caller held it too long")
    try:
        try:
            esapi = ESAPI(tcti)
        except TSS2_Exception as error:
            raise TpmUnavailable("TPM could not be opened on the configured TCTI") from error
        try:
            yield Tpm(esapi)
        finally:
            esapi.close()
    finally:
        _LOCK.release()


def _selected(selection: Any, index: int) -> bool:
    for bank in selection.pcrSelections[: selection.count]:
        if int(bank.hash) == int(TPM2_ALG.SHA256):
            return bool(bank.pcrSelect[index // 8] & (1 << (index % 8)))
    return False


def _attest_body(attest: Any) -> bytes:
    # TPM2B_ATTEST: the signature covers the TPMS_ATTEST inside, not the size prefix.
    return bytes(attest)


def _rsa_signature(signature: Any) -> bytes:
    if int(signature.sigAlg) != int(TPM2_ALG.RSASSA):
        raise TpmError("TPM signed with another scheme than RSASSA")
    return bytes(signature.signature.rsassa.sig)


def _decrypt_scheme(name: str) -> Any:
    if name == "rsaes":
        return TPMT_RSA_DECRYPT(scheme=TPM2_ALG.RSAES)
    scheme = TPMT_RSA_DECRYPT(scheme=TPM2_ALG.OAEP)
    scheme.details.oaep.hashAlg = TPM2_ALG.SHA256 if name == "oaep-sha256" else TPM2_ALG.SHA1
    return scheme
