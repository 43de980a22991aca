"""Plays Azure's paravisor (HCL) for a swtpm: when the guest writes user-data to NV 0x01400002,
regenerate the HCL report in NV 0x01400001 with runtime claims carrying that user-data, its SNP
report signed by a simulated AMD chip, as the real HCL does on a confidential VM.

:class:`Paravisor` polls the user-data index from a thread (every ``interval`` seconds) and runs
until stopped. Only the TPM is shared with the gateway process: the two meet over swtpm's socket,
exactly as a guest and its vTPM do.
"""

from __future__ import annotations

import threading

from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.trust.evidence.simulated import SimulatedAmd
from tests.support import swtpm


class Paravisor:
    def __init__(
        self, tcti: str, amd: SimulatedAmd, aik: rsa.RSAPublicKey, interval: float = 0.02
    ) -> None:
        self.tcti, self.amd, self.aik, self.interval = tcti, amd, aik, interval
        self.refreshes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = swtpm.nv_get(self.tcti, swtpm.USER_DATA_INDEX)
        while not self._stop.wait(self.interval):
            user_data = swtpm.nv_get(self.tcti, swtpm.USER_DATA_INDEX)
            if user_data != last:
                claims = swtpm.runtime_claims(self.aik, user_data)
                swtpm.put_hcl_report(self.tcti, swtpm.synthetic_hcl_report(claims, self.amd))
                last = user_data
                self.refreshes += 1

    def __enter__(self) -> Paravisor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
