"""Dev mode's attestation document: the dev keys, bound by simulated evidence. NOT CONFIDENTIAL.

docs/attestation-document.md: in dev mode the document is still served, with ``"dev_mode": true``
and simulated evidence, which only a client run with ``--allow-simulated`` accepts. Accepts an
:class:`~gateway.trust.attester.Attester` (the configured provider, normally ``simulated``, and
MAA, normally the emulator), a callable giving the served ``application/ohttp-keys`` and a
``publish`` callable. :meth:`DevAttestation.run` attests those bytes, publishes, and attests again
once the token has used half its lifetime; failures are logged and retried with the capped,
jittered backoff. Never: touches keys (dev keys need no release), or raises out of :meth:`run`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from gateway.errors import GatewayError
from gateway.trust.attestation_document import Attestation
from gateway.trust.attester import Attester
from gateway.trust.backoff import Backoff

logger = logging.getLogger("gateway.trust.dev_attestation")
REFRESH_FRACTION = 0.5


class DevAttestation:
    def __init__(
        self,
        attester: Attester,
        key_configs: Callable[[], bytes],
        publish: Callable[[Attestation], None],
        *,
        retry_cap: float = 60.0,
    ) -> None:
        self.attester, self._key_configs, self._publish = attester, key_configs, publish
        self._backoff = Backoff(min(0.25, retry_cap), retry_cap)

    async def run(self) -> None:
        while True:
            try:
                attestation = await self.attester.attest(self._key_configs())
            except GatewayError as error:
                delay = self._backoff.next_delay()
                fields = {"event": "dev_attestation_waiting", "reason": error.reason}
                logger.warning("dev_attestation_waiting", extra=fields | {"retry_in_s": delay})
            else:
                self._backoff.reset()
                self._publish(attestation)
                lifetime = attestation.expires_at - attestation.issued_at
                delay = max(lifetime * REFRESH_FRACTION, 1.0)
            await asyncio.sleep(delay)

    async def aclose(self) -> None:
        await self.attester.aclose()
