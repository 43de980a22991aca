"""The key-agreement child process: DH(skR, pkE) for one gateway worker, and nothing else.

Started by :class:`gateway.server.agreement_process.AgreementProcess` as
``python -m gateway.server.agreement_child FD``, where FD is its end of an ``AF_UNIX``
``SOCK_SEQPACKET`` socketpair. It imports only this module and ``gateway.protocol._dh`` (the
standard library and cryptography): about 19 MiB resident, against 31 MiB with the gateway's
usual imports. A security review of what runs here is this file and that one.

Wire: one message per datagram, integers big-endian::

    worker → child   b"K" ‖ handle u32 ‖ kem u16 ‖ skR      load a key (skR: SerializePrivateKey)
                     b"F" ‖ handle u32                      forget it
                     b"A" ‖ job u32 ‖ handle u32 ‖ enc      agree
    child → worker   b"R"                                   ready (its imports are done)
                     b"D" ‖ job u32 ‖ dh                    the agreement
                     b"X" ‖ job u32                         ``enc`` unusable (DecryptionFailed)

It exits 0 when the worker closes its end (however the worker ended), and with an error on a
message out of protocol, which only a bug in the worker can send.
"""

from __future__ import annotations

import signal
import socket
import struct
import sys

from gateway.errors import DecryptionFailed
from gateway.protocol._dh import PrivateKey, deserialize_private_key, diffie_hellman

LOAD, FORGET, AGREE = b"K", b"F", b"A"
READY, DONE, REFUSED = b"R", b"D", b"X"
U32 = struct.Struct(">I")
LOAD_HEAD = struct.Struct(">IH")
AGREE_HEAD = struct.Struct(">II")
MAX_MESSAGE = 4096
"""Longer than any message either side sends: a skR, an ``enc`` or a DH output is < 200 bytes."""


def serve(channel: socket.socket) -> None:
    """Answer the worker's messages until it closes the channel; raise on a message out of
    protocol (an unknown kind, a truncated one, a handle never loaded, a key that is none)."""
    keys: dict[int, tuple[int, PrivateKey]] = {}
    channel.send(READY)
    while message := channel.recv(MAX_MESSAGE):
        kind = message[:1]
        if kind == AGREE:
            job, handle = AGREE_HEAD.unpack_from(message, 1)
            kem_id, private_key = keys[handle]
            try:
                dh = diffie_hellman(kem_id, message[1 + AGREE_HEAD.size :], private_key)
            except DecryptionFailed:
                channel.send(REFUSED + U32.pack(job))
            else:
                channel.send(DONE + U32.pack(job) + dh)
        elif kind == LOAD:
            handle, kem_id = LOAD_HEAD.unpack_from(message, 1)
            secret = message[1 + LOAD_HEAD.size :]
            keys[handle] = (kem_id, deserialize_private_key(kem_id, secret))
        elif kind == FORGET:
            keys.pop(U32.unpack_from(message, 1)[0], None)
        else:
            raise ValueError("unexpected message")


def main(argv: list[str]) -> int:
    # Ctrl-C reaches the whole process group; the worker decides when this child ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with socket.socket(fileno=int(argv[0])) as channel:
        try:
            serve(channel)
        except OSError:  # the worker's end went away mid-send: it is gone, so are we
            pass
        except Exception as error:  # noqa: BLE001 - a worker bug: one line, no traceback
            # The messages are ours or struct's and a handle number; never key material.
            print(f"key-agreement child: {type(error).__name__}: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
