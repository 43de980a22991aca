"""TLS contexts of the REST client: fresh ones callers may extend, shared ones that follow the
bundle file, and a CA bundle that cannot be read is a configuration error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.emulators.tls import ensure_tls
from gateway.errors import ConfigError
from gateway.trust.rest import shared_ssl_context, ssl_context


def test_shared_contexts_follow_the_bundle_and_fresh_ones_are_new(tmp_path: Path) -> None:
    ca = ensure_tls(tmp_path).ca_path
    assert shared_ssl_context(ca) is shared_ssl_context(ca)
    assert ssl_context(ca) is not ssl_context(ca)
    assert ssl_context(ca) is not shared_ssl_context(ca)
    before = shared_ssl_context(ca)
    stat = ca.stat()
    os.utime(ca, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert shared_ssl_context(ca) is not before
    assert shared_ssl_context(None).check_hostname


@pytest.mark.parametrize("make", [ssl_context, shared_ssl_context])
def test_an_unreadable_bundle_is_a_config_error(tmp_path: Path, make: object) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    for path in (bad, tmp_path / "missing.pem"):
        with pytest.raises(ConfigError):
            make(path)  # type: ignore[operator]
