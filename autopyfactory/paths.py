"""Paths: the pilot wrappers the factory ships (package data), and keeping config values from leaving their directories.

Queue names and wmsqueue values become directory names (``name_problem``);
every path built from a config value goes through ``confined``; ``baseLogDir``
may not be a system directory (``system_directory``).
"""

from __future__ import annotations

import glob
import os
import re

WRAPPERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wrappers")
# The batch script of every Slurm pilot: the package's own copy, whatever APF_WRAPPER_DIR says
# (sbatch copies it at submit time, so one shared, read-only file serves every queue)
SLURM_LAUNCHER = os.path.join(WRAPPERS, "apf-slurm-launcher.sh")


def wrapper_dir() -> str:
    """``$APF_WRAPPER_DIR`` when it holds the wrapper, else the copy inside this package."""
    override = os.environ.get("APF_WRAPPER_DIR")
    if override and os.path.isfile(os.path.join(override, "apf-wrapper.sh")):
        return override
    return WRAPPERS


def default_executable() -> str:
    return os.path.join(wrapper_dir(), "apf-wrapper.sh")


def wrapper_stage() -> list[str]:
    """What the shell wrapper needs beside it on a worker node: the python stage and the built-in pilot plugins.

    Plain files only (every HTCondor grid type transfers files; not all
    transfer directories): they land flat in the pilot's starting directory,
    and ``APF_WRAPPER_PLUGIN_FILES`` names the plugins among them.
    """
    directory = wrapper_dir()
    return [os.path.join(directory, "apf_wrapper.py"),
            *sorted(glob.glob(os.path.join(directory, "plugins", "[!_]*.py")))]


class PathEscape(ValueError):
    """A path built from a configuration value that would leave its base directory."""


def confined(base: str, *parts: str) -> str:
    """``base/parts...``, refused (PathEscape) when it resolves outside ``base``.

    Every path built from a configuration value (a queue name, a wmsqueue)
    goes through here: ``..``, an absolute part or a symlink pointing out of
    ``base`` cannot take it elsewhere. Returns the joined path, not resolved,
    so that it stays relative to ``base`` as the operator wrote it.
    """
    root = os.path.realpath(base)
    path = os.path.join(base, *parts)
    real = os.path.realpath(path)
    if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
        raise PathEscape(f"{os.path.join(*parts) if parts else path!r} leads out of {base} (to {real})")
    return path


# Queue names and wmsqueue values become directory names (logs, spool): letters,
# digits, '_', '.' and '-', not starting with '.' or '-', at most 128 characters.
# Every APF 2.4 queue name seen in the field fits (ANALY_BNL_SHORT-gridgk01,
# BNL_ATLAS_1, UKI-LT2-QMUL_SL6, CERN-PROD_ce501.cern.ch).
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
SAFE_NAME_TEXT = "letters, digits, '_', '.' and '-', not starting with '.' or '-', at most 128 characters"


def name_problem(name: str) -> str:
    """Why ``name`` cannot be a queue name or wmsqueue ("" when it can)."""
    if SAFE_NAME.fullmatch(name):
        return ""
    return f"not a safe name (expected {SAFE_NAME_TEXT}, got {name!r})"


# Directories a factory must never take as its baseLogDir: the root, the
# shared parents of everyone's files, and system trees (nor anything inside those).
SYSTEM_PARENTS = {"/", "/home", "/mnt", "/media", "/opt", "/run", "/srv", "/tmp", "/var", "/var/lib",
                  "/var/log", "/var/tmp", "/usr/local"}
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/root", "/sbin",
                "/sys", "/usr")


def system_directory(path: str) -> str:
    """The system directory ``path`` is or lies in ("" when it is a directory of its own)."""
    for candidate in dict.fromkeys((os.path.normpath(path), os.path.realpath(path))):
        if candidate in SYSTEM_PARENTS:
            return candidate
        for tree in SYSTEM_TREES:
            if candidate == tree or candidate.startswith(tree + "/"):
                if tree == "/usr" and candidate.startswith("/usr/local/"):
                    continue
                return tree
    return ""
