"""Signed CycloneDX SBOMs: DSSE envelopes over in-toto statements, ECDSA P-256."""
