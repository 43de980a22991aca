"""``ohttp-gateway check-config``: validate the settings and print them, secrets masked.

Reads exactly what ``serve`` reads (flags over environment over defaults). Prints the effective
settings as JSON and exits 0; a bad value exits 2 with a one-line message naming the setting.
"""

from __future__ import annotations

import argparse
import json
import sys

from gateway.config import add_arguments as add_settings_arguments
from gateway.config import load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    shown = settings.masked()
    shown["confidential"] = not settings.dev
    json.dump(shown, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
