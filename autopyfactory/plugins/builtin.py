"""Registers the built-in plugins through the same hook third-party plugins use.

Every module of the kind sub-packages (``plugins/sched``, ``plugins/wmsstatus``,
...) is imported and its plugin classes registered: adding a built-in plugin
is adding a module.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from autopyfactory.interfaces import KINDS, Plugin
from autopyfactory.plugins.hookspecs import hookimpl


def plugin_classes(module) -> list[type[Plugin]]:
    """Concrete plugin classes defined in ``module`` (not imported into it)."""
    return [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, Plugin)
        and obj.__module__ == module.__name__
        and obj.name
        and not inspect.isabstract(obj)
    ]


def builtin_modules() -> list[str]:
    names = []
    for kind in KINDS:
        package = importlib.import_module(f"autopyfactory.plugins.{kind}")
        for info in pkgutil.iter_modules(package.__path__):
            if not info.name.startswith("_"):
                names.append(f"{package.__name__}.{info.name}")
    return names


@hookimpl
def apf_plugins() -> list[type]:
    classes: list[type] = []
    for name in builtin_modules():
        classes.extend(plugin_classes(importlib.import_module(name)))
    return classes
