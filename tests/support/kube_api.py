"""A Kubernetes API server for tests: kmock's KubernetesEmulator over HTTPS on loopback.

The emulator keeps the objects it is sent (JSON merge semantics for patches) and records every
request; it runs in its own thread and event loop, so the code under test (the official, synchronous
``kubernetes`` client) talks to it over a real TLS socket. The server certificate is the emulators'
loopback certificate (gateway.emulators.tls), so a client must verify against that CA.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import aiohttp.test_utils
import kmock

from gateway.emulators.tls import EmulatorTls

T = TypeVar("T")
EVENTS, PODS = "v1/events", "v1/pods"


def plain(value: Any) -> Any:
    """kmock's versioned dicts as plain JSON values."""
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


class KubeApi:
    """The emulator with one pod, ``namespace/pod`` (uid ``uid``), already created."""

    def __init__(self, tls: EmulatorTls, namespace: str, pod: str, uid: str) -> None:
        self.tls, self.namespace, self.pod, self.uid = tls, namespace, pod, uid
        self.port = 0
        self._emulator: kmock.KubernetesEmulator | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="kube-api", daemon=True)

    def start(self) -> KubeApi:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the Kubernetes API emulator did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def in_loop(self, action: Callable[[kmock.KubernetesEmulator], T]) -> T:
        """Run ``action`` on the emulator in its own loop (its state is not thread-safe)."""
        assert self._loop is not None
        assert self._emulator is not None
        emulator = self._emulator
        done: Future[T] = Future()

        def call() -> None:
            try:
                done.set_result(action(emulator))
            except Exception as error:  # noqa: BLE001 - handed to the waiting test
                done.set_exception(error)

        self._loop.call_soon_threadsafe(call)
        return done.result(10)

    def events(self) -> list[dict[str, Any]]:
        def collect(emulator: kmock.KubernetesEmulator) -> list[dict[str, Any]]:
            found = [plain(obj) for key, obj in emulator.objects.items() if key[0] == EVENTS]
            return sorted(found, key=lambda event: (event["firstTimestamp"], event["reason"]))

        return self.in_loop(collect)

    def pod_object(self) -> dict[str, Any]:
        def read(emulator: kmock.KubernetesEmulator) -> dict[str, Any]:
            return plain(emulator.objects[PODS, self.namespace, self.pod])  # type: ignore[no-any-return]

        return self.in_loop(read)

    def authorizations(self) -> set[str]:
        """The Authorization header of every request received so far."""
        return self.in_loop(lambda emulator: {r.headers.get("Authorization", "") for r in emulator})

    def answer_all(self, payload: Any) -> None:
        """From now on, answer every API request with ``payload`` (a status, or a coroutine
        function answering after a delay)."""
        pattern = re.compile(r"/api/.*")
        self.in_loop(lambda emulator: emulator[pattern] << payload)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.tls.cert_path, self.tls.key_path)

        class TlsServer(aiohttp.test_utils.RawTestServer):
            async def start_server(self, loop: Any = None, **kwargs: Any) -> None:
                await super().start_server(loop=loop, ssl=context, **kwargs)

        async with (
            kmock.KubernetesEmulator() as emulator,
            kmock.Server(emulator, server_cls=TlsServer) as server,
        ):
            metadata = {"name": self.pod, "namespace": self.namespace, "uid": self.uid}
            emulator.objects[PODS, self.namespace, self.pod] = {"metadata": metadata}
            self._emulator, self.port = emulator, server.port
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            self._ready.set()
            await self._stop.wait()


def write_token(directory: Path, token: str) -> Path:
    path = directory / "token"
    path.write_text(token)
    return path


def eventually(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait for ``predicate`` (the worker thread and the emulator run on their own)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)
