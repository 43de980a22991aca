"""Fakes that behave like the kernel's SEV-SNP guest interfaces, backed by a simulated AMD.

* :class:`FakeSevGuestKernel` stands behind the provider's ``ioctl`` seam. Like the driver, it
  checks the command number, reads the request structure at the ``req_data`` address out of
  the caller's memory (copy_from_user), asks the "firmware" (a simulated chip) for a report with
  that REPORT_DATA and VMPL, and writes MSG_REPORT_RSP to the ``resp_data`` address
  (copy_to_user). It never sees Python objects, only the packed bytes and addresses.
* :class:`FakeConfigfsTsm` stands behind ``make_entry``/``remove_entry``. Like configfs, a new
  entry comes with its attributes; ``outblob`` and ``generation`` are FIFOs whose content is
  produced when they are read, from what was written to ``inblob`` and ``privlevel``, and
  ``generation`` counts those writes.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import struct
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from gateway.trust.evidence.sev_guest import (
    GUEST_REQUEST,
    LEGACY_REQUEST,
    REPORT_REQUEST,
    SEV_SNP_GUEST_MSG_REPORT,
    SNP_GET_REPORT,
)
from gateway.trust.evidence.simulated import ReportFields, SimulatedAmd

DER = serialization.Encoding.DER


def cert_table(amd: SimulatedAmd) -> bytes:
    """A GHCB certificate table (VCEK, ASK, ARK) as the host supplies it."""
    certs = [
        ("63da758d-e664-4564-adc5-f4b93be8accd", amd.chip.vcek.public_bytes(DER)),
        ("4ab7b379-bbac-4fe4-a02f-05aef327c782", amd.ask.public_bytes(DER)),
        ("c0b406a4-a803-4952-9743-3fb6014cd0ae", amd.ark.public_bytes(DER)),
    ]
    offset = 24 * (len(certs) + 1)
    table, blobs = b"", b""
    for guid, der in certs:
        table += struct.pack("<16sII", uuid.UUID(guid).bytes, offset + len(blobs), len(der))
        blobs += der
    return table + bytes(24) + blobs


class FakeSevGuestKernel:
    """The /dev/sev-guest (or 5.x /dev/sev) driver, as far as SNP_GET_REPORT goes."""

    def __init__(self, amd: SimulatedAmd, *, legacy: bool = False, fault: str | None = None):
        self.amd, self.legacy, self.fault = amd, legacy, fault
        self.requests: list[tuple[bytes, int]] = []

    def ioctl(self, fd: int, command: int, argument: bytearray) -> int:
        os.fstat(fd)  # a real, open file descriptor
        expected = SEV_SNP_GUEST_MSG_REPORT if self.legacy else SNP_GET_REPORT
        if command != expected:
            raise OSError(errno.ENOTTY, "inappropriate ioctl")
        if self.legacy:
            assert len(argument) == LEGACY_REQUEST.size == 40
            req_type, rsp_type, version, req_len, req, rsp_len, rsp, error = LEGACY_REQUEST.unpack(
                argument
            )
            assert (req_type, rsp_type, version, req_len, rsp_len, error) == (5, 6, 1, 96, 1280, 0)
        else:
            assert len(argument) == GUEST_REQUEST.size == 32
            version, req, rsp, fw_err = GUEST_REQUEST.unpack(argument)
            assert (version, fw_err) == (1, 0)
        request = ctypes.string_at(req, REPORT_REQUEST.size)  # copy_from_user
        report_data, vmpl = REPORT_REQUEST.unpack(request)
        assert request[68:] == bytes(28)  # reserved, must be zero
        self.requests.append((report_data, vmpl))
        if self.fault == "eio":
            if not self.legacy:
                struct.pack_into("<Q", argument, 24, 0x16)  # fw_err: SEV_RET_INVALID_PARAM
            raise OSError(errno.EIO, "firmware error")
        status = 0x16 if self.fault == "status" else 0
        if self.fault == "other-data":
            report_data = bytes(64)
        report = self.amd.report(ReportFields(report_data=report_data, vmpl=vmpl))
        size = 1000 if self.fault == "size" else len(report)
        response = struct.pack("<II24x", status, size) + report
        ctypes.memmove(rsp, response, len(response))  # copy_to_user
        return 0


@dataclass
class _Entry:
    """One report entry's kernel-side state: configfs keeps it per directory."""

    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    seen: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    generation: int = 0


class FakeConfigfsTsm:
    """``/sys/kernel/config/tsm/report`` for the sev_guest provider."""

    def __init__(
        self,
        root: Path,
        amd: SimulatedAmd,
        *,
        provider: str = "sev_guest",
        certs: bool = True,
        concurrent_writer: bool = False,
    ) -> None:
        self.root, self.amd, self.provider = root, amd, provider
        self.certs, self.concurrent_writer = certs, concurrent_writer
        self.created: list[Path] = []
        self.removed: list[Path] = []
        self._entries: dict[Path, _Entry] = {}
        root.mkdir(parents=True, exist_ok=True)

    # the seams
    def make_entry(self, path: Path) -> None:
        path.mkdir()  # raises like the kernel when the parent is missing
        entry = self._entries[path] = _Entry()
        self.created.append(path)
        (path / "provider").write_text(self.provider + "\n")
        (path / "privlevel_floor").write_text("0\n")
        (path / "privlevel").write_text("0\n")
        (path / "inblob").write_bytes(b"")
        self._observe(path)  # the attributes as created are not writes
        if self.certs:
            (path / "auxblob").write_bytes(cert_table(self.amd))
        for name, produce in (("outblob", self._outblob), ("generation", self._generation_text)):
            os.mkfifo(path / name)
            thread = threading.Thread(target=self._serve, args=(path, name, produce), daemon=True)
            thread.start()
            entry.threads.append(thread)

    def remove_entry(self, path: Path) -> None:
        entry = self._entries.pop(path)
        entry.stop.set()
        for thread in entry.threads:
            for _ in range(100):
                for name in ("outblob", "generation"):
                    with contextlib.suppress(OSError):  # wake a server blocked in open()
                        os.close(os.open(path / name, os.O_RDONLY | os.O_NONBLOCK))
                thread.join(timeout=0.05)
                if not thread.is_alive():
                    break
        shutil.rmtree(path)
        self.removed.append(path)

    # the "kernel"
    def _observe(self, path: Path) -> None:
        """Count writes to inblob and privlevel since last looked, as configfs would have."""
        entry = self._entries[path]
        for name in ("inblob", "privlevel"):
            attribute = path / name
            state = (attribute.stat().st_mtime_ns, attribute.read_bytes())
            if entry.seen.get(name, state) != state:
                entry.generation += 1
            entry.seen[name] = state

    def _outblob(self, path: Path) -> bytes:
        self._observe(path)
        report_data = (path / "inblob").read_bytes()
        vmpl = int((path / "privlevel").read_text())
        report = self.amd.report(ReportFields(report_data=report_data.ljust(64, b"\0"), vmpl=vmpl))
        if self.concurrent_writer:  # another process rewrites inblob behind our back
            (path / "inblob").write_bytes(os.urandom(64))
        return report

    def _generation_text(self, path: Path) -> bytes:
        self._observe(path)
        return f"{self._entries[path].generation}\n".encode()

    def _serve(self, path: Path, name: str, produce: Callable[[Path], bytes]) -> None:
        fifo, stop = path / name, self._entries[path].stop
        while not stop.is_set():
            try:
                fd = os.open(fifo, os.O_WRONLY)  # blocks until someone opens it to read
            except OSError:
                return
            try:
                if not stop.is_set():
                    os.write(fd, produce(path))
            except OSError:
                pass  # the reader went away
            finally:
                # A fresh FIFO for the next reader: reopening this one while the current reader
                # drains it would hand that reader a second copy instead of EOF.
                fresh = fifo.with_name(fifo.name + ".next")
                os.mkfifo(fresh)
                os.replace(fresh, fifo)
                os.close(fd)
