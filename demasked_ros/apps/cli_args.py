"""Command-line argument types the apps' CLIs share (``demasked-certify``, ``demasked-eval``)."""

from __future__ import annotations

import argparse

from demasked_ros.core.errors import CoreError
from demasked_ros.core.spec import parse_patch
from demasked_ros.core.threat import PatchSpec


def patch_argument(text: str) -> PatchSpec:
    """argparse ``type=`` for ``--patch``: :func:`~demasked_ros.core.spec.parse_patch`, argparse's error."""
    try:
        return parse_patch(text)
    except CoreError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
