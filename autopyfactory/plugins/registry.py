"""Finding plugins: built-ins, entry points (group ``autopyfactory``), drop-in files."""

from __future__ import annotations

import glob
import importlib.util
import logging
import os
import sys
import types
from collections.abc import Iterable

import pluggy

from autopyfactory.interfaces import KINDS, Plugin
from autopyfactory.plugins import builtin, hookspecs
from autopyfactory.settings import Problem

log = logging.getLogger(__name__)


class PluginRegistry:
    """Plugin classes by kind and name (names matched case-insensitively)."""

    def __init__(self) -> None:
        self._plugins: dict[str, dict[str, type[Plugin]]] = {kind: {} for kind in KINDS}
        self.problems: list[Problem] = []
        self.origins: dict[tuple[str, str], str] = {}

    @classmethod
    def discover(cls, plugindirs: Iterable[str] = (), entry_points: bool = True) -> PluginRegistry:
        manager = pluggy.PluginManager(hookspecs.PROJECT)
        manager.add_hookspecs(hookspecs)
        manager.register(builtin, name="builtin")
        registry = cls()
        if entry_points:
            try:
                manager.load_setuptools_entrypoints(hookspecs.PROJECT)
            except Exception as exc:  # a broken third-party package must not stop the factory
                registry.problems.append(
                    Problem("entry points", "", hookspecs.PROJECT, f"cannot load a plugin package: {exc}")
                )
        for directory in plugindirs:
            for path in sorted(glob.glob(os.path.join(directory, "*.py"))):
                registry._load_dropin(manager, path)
        for classes in manager.hook.apf_plugins():
            for plugin in classes or []:
                module = sys.modules.get(plugin.__module__)
                registry.add(plugin, getattr(module, "__file__", None) or plugin.__module__)
        return registry

    def _load_dropin(self, manager: pluggy.PluginManager, path: str) -> None:
        module_name = "apf_dropin_" + os.path.splitext(os.path.basename(path))[0]
        try:
            spec = importlib.util.spec_from_file_location(module_name, path)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        except Exception as exc:
            self.problems.append(Problem(path, "", "", f"cannot load drop-in plugin: {type(exc).__name__}: {exc}"))
            return
        if not hasattr(module, "apf_plugins"):
            # one class dropped in is enough: find it by its base class
            found = builtin.plugin_classes(module)
            shim = types.SimpleNamespace(apf_plugins=hookspecs.hookimpl(lambda: found))
            manager.register(shim, name=path)
        else:
            manager.register(module, name=path)

    def add(self, plugin: type[Plugin], origin: str = "") -> None:
        kind = plugin.kind
        if kind not in self._plugins or not plugin.name:
            self.problems.append(Problem(origin, "", "", f"{plugin!r} is not a plugin of a known kind"))
            return
        previous = self.find(kind, plugin.name)
        if previous is not None and previous is not plugin:
            log.warning("%s plugin %s from %s replaces the one from %s", kind, plugin.name,
                        origin, self.origins.get((kind, previous.name.lower()), "?"))
            del self._plugins[kind][previous.name]
        self._plugins[kind][plugin.name] = plugin
        self.origins[(kind, plugin.name.lower())] = origin

    def plugins(self, kind: str) -> dict[str, type[Plugin]]:
        return dict(self._plugins.get(kind, {}))

    def find(self, kind: str, name: str) -> type | None:
        for known, plugin in self._plugins.get(kind, {}).items():
            if known.lower() == name.lower():
                return plugin
        return None

    def get(self, kind: str, name: str) -> type:
        plugin = self.find(kind, name)
        if plugin is None:
            raise KeyError(f"no {kind} plugin named {name!r}")
        return plugin
