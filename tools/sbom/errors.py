"""The errors of the SBOM tool, which runs in build stages without the gateway installed.

The tree::

    SbomError                 any failure of generating, signing or verifying an SBOM
    ├── KeyUnusable           a key file is unreadable, encrypted, or not ECDSA P-256
    ├── EnvelopeMalformed     the DSSE envelope is not valid JSON of the DSSE shape
    ├── SignatureInvalid      no signature verifies with the given public key
    ├── StatementInvalid      the signed payload is not an in-toto Statement with a CycloneDX BOM
    ├── SubjectMismatch       the BOM file or the environment differs from what was signed
    └── GeneratorFailed       cyclonedx-py failed to describe the environment

Messages are fixed strings: never key material, never document content.
"""

from __future__ import annotations


class SbomError(Exception):
    """Any failure of generating, signing or verifying an SBOM."""


class KeyUnusable(SbomError):
    """A key file is unreadable, encrypted, or not ECDSA P-256."""


class EnvelopeMalformed(SbomError):
    """The DSSE envelope is not valid JSON of the DSSE shape."""


class SignatureInvalid(SbomError):
    """No signature verifies with the given public key."""


class StatementInvalid(SbomError):
    """The signed payload is not an in-toto Statement carrying a CycloneDX BOM."""


class SubjectMismatch(SbomError):
    """The BOM file or the environment differs from what was signed."""


class GeneratorFailed(SbomError):
    """cyclonedx-py failed to describe the environment."""
