"""Key configurations (RFC 9458 §3), gateway private keys and the key ring.

Accepts: encoded Key Configs and ``application/ohttp-keys`` lists, raw or cryptography private keys.
Guarantees:

* decoding is strict: no trailing bytes, a symmetric-algorithms length that is a non-zero multiple
  of 4, a public key of exactly Npk bytes that is a valid point for its KEM, key ids 0..255;
  violations raise :class:`KeyConfigError`;
* unsupported algorithms are not malformations: a (KDF, AEAD) pair we do not support is dropped
  from the config, a config left with no pair, or with a KEM we do not support, is unsupported;
  :func:`decode_key_configs` skips unsupported entries, :meth:`KeyConfig.decode` refuses them.
  Any malformed entry fails the whole list (RFC 9458 §3.2: no partial recovery);
* a :class:`KeyRing` holds several active keys (rotation with overlap), each accepting only the
  suites its config lists; ``encoded_configs`` are the exact bytes served.

Never: private key material in a repr, a message, or an error.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from cryptography.hazmat.primitives.asymmetric import ec
from pyhpke import KEMKey, KEMKeyInterface

from gateway.errors import ConfigError, KeyConfigError, UnknownKeyId
from gateway.protocol._hpke import (
    KEM_PARAMS,
    AeadId,
    KdfId,
    KemId,
    aead_id_of,
    deserialize_public_key,
    guarded,
    kdf_id_of,
    kem_id_of,
    kem_suite,
    public_bytes_of,
)

__all__ = [
    "AeadId",
    "GatewayKey",
    "KdfId",
    "KemId",
    "KeyConfig",
    "KeyRing",
    "SymmetricSuite",
    "decode_key_configs",
    "encode_key_configs",
]

_MIN_IKM = 16
_CONFIG_HEAD = struct.Struct(">BH")  # key id, KEM id
_PAIR = struct.Struct(">HH")  # KDF id, AEAD id


@dataclass(frozen=True)
class SymmetricSuite:
    """One (KDF, AEAD) pair of a key config."""

    kdf_id: KdfId
    aead_id: AeadId


@dataclass(frozen=True)
class KeyConfig:
    """A public key config: what a client needs to encapsulate to one gateway key."""

    key_id: int
    kem_id: KemId
    public_key: bytes
    suites: tuple[SymmetricSuite, ...]

    def __post_init__(self) -> None:
        if not 0 <= self.key_id <= 0xFF:
            raise KeyConfigError("key id out of range")
        if len(self.public_key) != KEM_PARAMS[self.kem_id].n_pk:
            raise KeyConfigError("public key length does not match the KEM")
        if not self.suites or len(self.suites) > 0xFFFC // _PAIR.size:
            raise KeyConfigError("symmetric algorithms count out of range")
        deserialize_public_key(self.kem_id, self.public_key, KeyConfigError)

    def allows(self, kdf_id: KdfId, aead_id: AeadId) -> bool:
        """Whether this config lists the (KDF, AEAD) pair."""
        return SymmetricSuite(kdf_id, aead_id) in self.suites

    def encode(self) -> bytes:
        """The Key Config of RFC 9458 §3.1."""
        pairs = b"".join(_PAIR.pack(s.kdf_id, s.aead_id) for s in self.suites)
        return b"".join(
            (
                _CONFIG_HEAD.pack(self.key_id, self.kem_id),
                self.public_key,
                struct.pack(">H", len(pairs)),
                pairs,
            )
        )

    @classmethod
    def decode(cls, data: bytes) -> KeyConfig:
        """One Key Config, exactly filling ``data``. Unsupported algorithms raise too."""
        config = _decode_config(data)
        if config is None:
            raise KeyConfigError("key config uses no supported algorithms")
        return config


def _decode_config(data: bytes) -> KeyConfig | None:
    """A KeyConfig, None if well formed but unsupported, KeyConfigError if malformed."""
    if len(data) < _CONFIG_HEAD.size:
        raise KeyConfigError("key config truncated")
    key_id, raw_kem = _CONFIG_HEAD.unpack_from(data)
    kem_id = kem_id_of(raw_kem)
    if kem_id is None:
        return None  # we cannot know Npk; the list framing has already delimited the entry
    offset = _CONFIG_HEAD.size
    n_pk = KEM_PARAMS[kem_id].n_pk
    if len(data) < offset + n_pk + 2:
        raise KeyConfigError("key config truncated")
    public_key = bytes(data[offset : offset + n_pk])
    offset += n_pk
    (algorithms_length,) = struct.unpack_from(">H", data, offset)
    offset += 2
    if algorithms_length == 0 or algorithms_length % _PAIR.size:
        raise KeyConfigError("symmetric algorithms length invalid")
    if len(data) != offset + algorithms_length:
        raise KeyConfigError("key config length mismatch")
    suites = []
    for kdf_raw, aead_raw in _PAIR.iter_unpack(data[offset:]):
        kdf_id, aead_id = kdf_id_of(kdf_raw), aead_id_of(aead_raw)
        if kdf_id is not None and aead_id is not None:
            suites.append(SymmetricSuite(kdf_id, aead_id))
    if not suites:
        return None
    return KeyConfig(key_id, kem_id, public_key, tuple(suites))


def encode_key_configs(configs: Iterable[KeyConfig]) -> bytes:
    """``application/ohttp-keys`` (RFC 9458 §3.2): each config behind a 2-byte length."""
    parts = []
    for config in configs:
        encoded = config.encode()
        parts.append(struct.pack(">H", len(encoded)))
        parts.append(encoded)
    return b"".join(parts)


def decode_key_configs(data: bytes) -> list[KeyConfig]:
    """Every supported config of an ``application/ohttp-keys`` list, in order.

    An empty list, or one whose entries are all unsupported, decodes to ``[]``; callers decide
    whether that is usable. Any malformed entry or framing fails the whole list.
    """
    configs = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 2:
            raise KeyConfigError("key config list truncated")
        (length,) = struct.unpack_from(">H", data, offset)
        offset += 2
        if length == 0 or len(data) - offset < length:
            raise KeyConfigError("key config list truncated")
        config = _decode_config(data[offset : offset + length])
        offset += length
        if config is not None:
            configs.append(config)
    return configs


class GatewayKey:
    """A gateway private key skR with its public config. The private key never prints."""

    # __weakref__: the server's key-agreement child forgets a key when the worker drops it.
    __slots__ = ("__weakref__", "_allowed", "_private_key", "config")

    def __init__(self, config: KeyConfig, private_key: KEMKeyInterface) -> None:
        self.config = config
        self._private_key = private_key
        self._allowed = frozenset((s.kdf_id, s.aead_id) for s in config.suites)

    def allows(self, kdf_id: KdfId, aead_id: AeadId) -> bool:
        """Whether requests may use this (KDF, AEAD) pair with this key."""
        return (kdf_id, aead_id) in self._allowed

    @property
    def key_id(self) -> int:
        return self.config.key_id

    @property
    def kem_id(self) -> KemId:
        return self.config.kem_id

    @property
    def suites(self) -> tuple[SymmetricSuite, ...]:
        return self.config.suites

    @property
    def private_key(self) -> KEMKeyInterface:
        """skR for HPKE; callers in this package only."""
        return self._private_key

    def __repr__(self) -> str:
        return (
            f"GatewayKey(key_id={self.key_id}, kem_id={self.kem_id.name}, "
            f"suites={len(self.suites)}, private_key=<redacted>)"
        )

    @classmethod
    def _from_private(
        cls,
        key_id: int,
        kem_id: KemId,
        private_key: KEMKeyInterface,
        suites: Iterable[SymmetricSuite],
    ) -> GatewayKey:
        public_key = guarded(KeyConfigError, lambda: public_bytes_of(private_key))
        return cls(KeyConfig(key_id, kem_id, public_key, tuple(suites)), private_key)

    @classmethod
    def generate(cls, key_id: int, kem_id: KemId, suites: Iterable[SymmetricSuite]) -> GatewayKey:
        """A fresh key pair from the OS CSPRNG."""
        pair = guarded(KeyConfigError, lambda: kem_suite(kem_id).kem.derive_key_pair(_fresh_ikm()))
        return cls._from_private(key_id, kem_id, pair.private_key, suites)

    @classmethod
    def from_private_bytes(
        cls, key_id: int, kem_id: KemId, raw: bytes, suites: Iterable[SymmetricSuite]
    ) -> GatewayKey:
        """skR as serialised by RFC 9180 §7.1.2 (Nsk bytes)."""
        if len(raw) != KEM_PARAMS[kem_id].n_sk:
            raise KeyConfigError("private key length does not match the KEM")
        private_key = guarded(
            KeyConfigError, lambda: kem_suite(kem_id).kem.deserialize_private_key(raw)
        )
        return cls._from_private(key_id, kem_id, private_key, suites)

    @classmethod
    def derive(
        cls, key_id: int, kem_id: KemId, ikm: bytes, suites: Iterable[SymmetricSuite]
    ) -> GatewayKey:
        """DeriveKeyPair(ikm) (RFC 9180 §7.1.3): deterministic keys for dev seeds and vectors.

        RFC 9180 asks for ikm with at least Nsk bytes of entropy; we refuse fewer than 16 bytes
        (the martinthomson/ohttp vector uses 25).
        """
        if len(ikm) < _MIN_IKM:
            raise KeyConfigError("key derivation input too short")
        pair = guarded(KeyConfigError, lambda: kem_suite(kem_id).kem.derive_key_pair(ikm))
        return cls._from_private(key_id, kem_id, pair.private_key, suites)

    @classmethod
    def from_cryptography(
        cls, key_id: int, private_key: ec.EllipticCurvePrivateKey, suites: Iterable[SymmetricSuite]
    ) -> GatewayKey:
        """A P-256 or P-384 key as released by a KMS (Key Vault, Managed HSM, confidential KMS)."""
        if not isinstance(private_key, ec.EllipticCurvePrivateKey):
            raise KeyConfigError("private key type not supported")
        kem_id = _EC_KEMS.get(type(private_key.curve))
        if kem_id is None:
            raise KeyConfigError("private key type not supported")
        wrapped = guarded(KeyConfigError, lambda: KEMKey.from_pyca_cryptography_key(private_key))
        return cls._from_private(key_id, kem_id, wrapped, suites)


_EC_KEMS: Mapping[type[ec.EllipticCurve], KemId] = {
    ec.SECP256R1: KemId.P256_SHA256,
    ec.SECP384R1: KemId.P384_SHA384,
}


def _fresh_ikm() -> bytes:
    return secrets.token_bytes(64)


class KeyRing:
    """The active gateway keys by key id, for rotation with overlap.

    Reads see a consistent snapshot: mutation replaces the mapping and the served bytes at once,
    so a request being decapsulated during a rotation never sees a half-updated ring.
    """

    __slots__ = ("_state",)

    def __init__(self, keys: Iterable[GatewayKey] = ()) -> None:
        self._state: tuple[Mapping[int, GatewayKey], bytes] = (MappingProxyType({}), b"")
        for key in keys:
            self.add(key)

    def add(self, key: GatewayKey) -> None:
        """Activate ``key``; its key id must not be in use."""
        if key.key_id in self._keys:
            raise ConfigError("key id already in the key ring")
        self._replace({**self._keys, key.key_id: key})

    def remove(self, key_id: int) -> None:
        """Retire the key with ``key_id`` (UnknownKeyId if absent)."""
        if key_id not in self._keys:
            raise UnknownKeyId()
        self._replace({k: v for k, v in self._keys.items() if k != key_id})

    def find(self, key_id: int) -> GatewayKey | None:
        """The active key with ``key_id``, or None."""
        return self._keys.get(key_id)

    def get(self, key_id: int) -> GatewayKey:
        """The active key with ``key_id``, or UnknownKeyId."""
        key = self._keys.get(key_id)
        if key is None:
            raise UnknownKeyId()
        return key

    def _replace(self, keys: dict[int, GatewayKey]) -> None:
        encoded = encode_key_configs(key.config for key in keys.values())
        self._state = (MappingProxyType(keys), encoded)

    @property
    def _keys(self) -> Mapping[int, GatewayKey]:
        return self._state[0]

    @property
    def key_ids(self) -> tuple[int, ...]:
        return tuple(self._keys)

    @property
    def configs(self) -> tuple[KeyConfig, ...]:
        return tuple(key.config for key in self._keys.values())

    @property
    def encoded_configs(self) -> bytes:
        """The exact ``application/ohttp-keys`` bytes served (and bound into evidence)."""
        return self._state[1]

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeyRing(key_ids={list(self._keys)})"
