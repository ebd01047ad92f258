"""Where the factory finds what it ships besides the package (the pilot wrappers)."""

from __future__ import annotations

import os

INSTALLED_WRAPPERS = "/usr/libexec/autopyfactory"
CHECKOUT_WRAPPERS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "wrappers")


def wrapper_dir() -> str:
    """``$APF_WRAPPER_DIR``, else the source checkout's ``wrappers/``, else the RPM's location."""
    for candidate in (os.environ.get("APF_WRAPPER_DIR"), CHECKOUT_WRAPPERS, INSTALLED_WRAPPERS):
        if candidate and os.path.isfile(os.path.join(candidate, "apf-wrapper.sh")):
            return candidate
    return INSTALLED_WRAPPERS


def default_executable() -> str:
    return os.path.join(wrapper_dir(), "apf-wrapper.sh")
