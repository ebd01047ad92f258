"""Where the factory finds the pilot wrappers it ships (package data, so any install has them)."""

from __future__ import annotations

import os

WRAPPERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wrappers")


def wrapper_dir() -> str:
    """``$APF_WRAPPER_DIR`` when it holds the wrapper, else the copy inside this package."""
    override = os.environ.get("APF_WRAPPER_DIR")
    if override and os.path.isfile(os.path.join(override, "apf-wrapper.sh")):
        return override
    return WRAPPERS


def default_executable() -> str:
    return os.path.join(wrapper_dir(), "apf-wrapper.sh")
