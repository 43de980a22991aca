"""The ``dev`` backend: keys generated in memory or loaded from a file. NOT confidential.

Accepts ``dev_mode`` (which must be True: the backend refuses to exist otherwise), a key id, and
optionally a PEM file of an EC P-256 or P-384 private key (PKCS#8 or SEC1, unencrypted).
Guarantees: construction without explicit dev mode raises :class:`ConfigError`; without a file, a
fresh P-384 key is generated once and returned by every ``release``; the token and wrapping key
are ignored, since nothing is attested. Never: writes the key anywhere.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.errors import ConfigError, ReleasedKeyInvalid
from gateway.trust.kms import ReleasedKey, WrappingKey, now_utc

DEFAULT_KEY_ID = 1


def _load(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise ConfigError("the dev key file cannot be read as an unencrypted PEM key") from error
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError("the dev key file does not hold an EC key")
    return key


class DevBackend:
    """In-memory keys for ``--dev``; see the module docstring."""

    name = "dev"

    def __init__(
        self, *, dev_mode: bool, key_id: int = DEFAULT_KEY_ID, key_file: Path | None = None
    ) -> None:
        if dev_mode is not True:
            raise ConfigError("the dev key backend is refused unless dev mode is explicit")
        private_key = (
            _load(key_file) if key_file is not None else ec.generate_private_key(ec.SECP384R1())
        )
        origin = "dev key file" if key_file is not None else "dev in-memory key"
        try:
            self._key = ReleasedKey(key_id, private_key, now_utc(), origin)
        except ReleasedKeyInvalid as error:
            raise ConfigError("the dev key must be P-256 or P-384 with a key id 0..255") from error

    async def release(self, token: str, wrapping_key: WrappingKey) -> list[ReleasedKey]:
        return [self._key]

    async def aclose(self) -> None:
        return None
