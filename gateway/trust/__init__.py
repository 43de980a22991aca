"""Trust: SEV-SNP evidence, its verification, MAA tokens and key release.

Pure verification (no I/O; callers pass ``now`` and fetched documents in):

* :mod:`gateway.trust.snp`: ``parse_report(bytes) -> SnpReport`` (versions 2, 3, 5), ``TcbVersion``,
  ``GuestPolicy``, ``Product``.
* :mod:`gateway.trust.hcl`: ``parse_hcl_report(bytes) -> HclReport`` (``.snp``,
  ``.runtime_claims`` with ``.raw``/``.keys``/``.user_data``), ``verify_binding(hcl)``.
* :mod:`gateway.trust.binding`: ``report_data_for(runtime_data)``, ``user_data_for(keys, nonce)``,
  ``check_runtime_data``, ``check_report_data``.
* :mod:`gateway.trust.amd`: ``parse_cert_bundle`` (PEM or THIM JSON) ``-> AmdCertChain``,
  ``AmdTrust.pinned()`` / ``AmdTrust.of(roots)``, ``verify_report(report, chain, trust, now=)``.
* :mod:`gateway.trust.policy`: ``SnpPolicy`` and ``check_policy(report, policy)``.
* :mod:`gateway.trust.verify`: ``verify_snp_evidence`` / ``verify_hcl_evidence``, all of the above
  in order, returning ``VerifiedEvidence``.
* :mod:`gateway.trust.token`: ``verify_token(token, jwks=, issuer=, now=) -> AttestationToken``.
* :mod:`gateway.trust.receipts`: ``parse_receipt``, ``verify_receipt(receipt, service_cert=,
  claims_digest=)``, ``public_key_claims_digest(hex)``: CCF ledger receipts (clients reuse them).

I/O adapters: :mod:`gateway.trust.maa` (the MAA client; wire shapes in
:mod:`gateway.trust.maa_wire`), :mod:`gateway.trust.thim` (the VCEK chain from IMDS) and
:mod:`gateway.trust.rest` (JSON over verified TLS with bounded, jittered retries).

Evidence providers live in :mod:`gateway.trust.evidence` (the ``EvidenceProvider`` protocol).
Key release backends live in :mod:`gateway.trust.kms` (``KmsBackend.release(token, wrapping_key)
-> list[ReleasedKey]``): ``akv`` (Key Vault / Managed HSM SKR; pure JWS and ``key_hsm`` checks in
:mod:`gateway.trust.kms.skr`), ``ccf`` (Azure's confidential KMS; COSE_Key in
:mod:`gateway.trust.kms.cose`) and ``dev``.
"""
