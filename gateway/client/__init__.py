"""The client side: verify a gateway's attestation, then talk OHTTP to it through a relay.

Modules: :mod:`policy` (the JSON attestation policy), :mod:`document` (the gateway's attestation
document), :mod:`verify` (verify-then-encrypt, pure), :mod:`keysource` (fetching keys, documents
and the MAA JWKS; the confidential KMS), :mod:`session` (:class:`OhttpClient`: standard, chunked
and ``/score`` exchanges with the RFC 9458 problem handling), :mod:`multipart` (uploads streamed
from disk), :mod:`proxy` (the local plaintext → OHTTP proxy), :mod:`relay` (the dev relay),
:mod:`commands` and :mod:`cli` (``ohttp-client``).
"""
