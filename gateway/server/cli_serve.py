"""``ohttp-gateway serve``: run the gateway until SIGTERM, exit 0 once in-flight requests drained.

Flags and environment variables: docs/configuration.md (gateway/config.py). A bad value exits 2
with a one-line message naming the setting.
"""

from __future__ import annotations

import argparse

from gateway.config import add_arguments as add_settings_arguments
from gateway.config import load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from gateway.server.run import serve  # uvicorn and the app load only when serving

    return serve(load_settings(args))
