"""Plugin loading and the registry of everything plugins registered.

Loading happens once, on first use: the built-in plugin modules and every entry point of the
``automl`` group go through the same path. ``AUTOML_DISABLE_PLUGINS`` (comma-separated plugin names)
skips plugins; a plugin that fails to import or to register is reported and skipped.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from automl import hookspecs
from automl.errors import PluginError, SpaceError

BUILTIN_PLUGINS: tuple[str, ...] = (
    "automl_plugins.tasks",
    "automl_plugins.architectures",
    "automl_plugins.proxies",
    "automl_plugins.evaluators",
    "automl_plugins.recipe",
    "automl_plugins.ray_tune",
    "automl_plugins.strategies",
    "automl_tui.plugin",
)

ENTRY_POINT_GROUP = "automl"
DISABLE_ENV = "AUTOML_DISABLE_PLUGINS"

KINDS: dict[str, str] = {
    "dimensions": "register_dimensions",
    "proxies": "register_proxies",
    "evaluators": "register_evaluators",
    "tasks": "register_tasks",
    "strategies": "register_strategies",
    "commands": "register_commands",
}
_SINGULAR = {
    "dimensions": "dimension",
    "proxies": "proxy",
    "evaluators": "evaluator",
    "tasks": "task",
    "strategies": "strategy",
    "commands": "command",
}


@dataclass
class PluginInfo:
    """One loaded plugin: its name, where it came from, its version and what it registered."""

    name: str
    source: str
    version: str
    registered: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Registration:
    name: str
    obj: Any
    plugin: str


class Registry:
    """Everything registered, by kind, with the plugin that registered it."""

    def __init__(self) -> None:
        self.manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.manager.add_hookspecs(hookspecs)
        self.items: dict[str, dict[str, Registration]] = {kind: {} for kind in KINDS}
        self.plugins: dict[str, PluginInfo] = {}
        self.failures: list[tuple[str, str]] = []

    # -- loading -----------------------------------------------------------------------------------
    def add_plugin(self, plugin: object, name: str, source: str, version: str) -> bool:
        """Register a plugin object and collect its registrations; report and skip it if it breaks."""
        try:
            self.manager.register(plugin, name=name)
        except Exception as err:  # noqa: BLE001 - a broken plugin must not stop the others
            self.failures.append((name, f"{type(err).__name__}: {err}"))
            return False
        unknown = sorted(caller.name for caller in self.manager.get_hookcallers(plugin) or [] if not caller.has_spec())
        if unknown:
            # pluggy's check_pending() would fail every command for one misspelled hook: report this plugin only.
            self.manager.unregister(name=name)
            self.failures.append(
                (
                    name,
                    (
                        f"implements unknown hook(s) {', '.join(unknown)} (known: {', '.join(sorted(KINDS.values()))}, "
                        "trial_finished)"
                    ),
                )
            )
            return False
        info = PluginInfo(name=name, source=source, version=version)
        self.plugins[name] = info
        added: list[tuple[str, str]] = []
        try:
            for kind, hook_name in KINDS.items():
                for impl in getattr(self.manager.hook, hook_name).get_hookimpls():
                    if impl.plugin_name != name:
                        continue
                    impl.function(register=self._register_callback(kind, name, info, added))
        except Exception as err:  # noqa: BLE001
            for kind, item in added:
                self.items[kind].pop(item, None)
            self.manager.unregister(name=name)
            del self.plugins[name]
            self.failures.append((name, f"{type(err).__name__}: {err}"))
            return False
        return True

    def _register_callback(
        self, kind: str, plugin: str, info: PluginInfo, added: list[tuple[str, str]]
    ) -> Callable[[Any], None]:
        def register(obj: Any) -> None:
            name = getattr(obj, "name", None)
            if not isinstance(name, str) or not name:
                raise PluginError(f"plugin {plugin!r} registered a {_SINGULAR[kind]} without a name: {obj!r}")
            missing = sorted(getattr(obj, "__abstractmethods__", ()))
            if inspect.isclass(obj) and missing:
                raise PluginError(
                    f"{_SINGULAR[kind]} {name!r} from plugin {plugin!r} does not implement {', '.join(missing)}"
                )
            existing = self.items[kind].get(name)
            if existing is not None:
                raise PluginError(
                    f"{_SINGULAR[kind]} {name!r} from plugin {plugin!r} is already registered "
                    f"by plugin {existing.plugin!r}"
                )
            self.items[kind][name] = Registration(name, obj, plugin)
            info.registered.setdefault(kind, []).append(name)
            added.append((kind, name))

        return register

    # -- look-ups ----------------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        return sorted(self.items[kind])

    def get(self, kind: str, name: str, *, key: str = "") -> Any:
        """The registered object, or a ``SpaceError`` at ``key`` listing the known names."""
        try:
            return self.items[kind][name].obj
        except KeyError:
            raise SpaceError(f"unknown {_SINGULAR[kind]} {name!r}", key=key, allowed=self.names(kind)) from None

    def plugin_of(self, kind: str, name: str) -> str:
        return self.items[kind][name].plugin

    @property
    def hook(self) -> Any:
        return self.manager.hook


_registry: Registry | None = None
_lock = threading.Lock()


def disabled_plugins() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


def load_plugins() -> Registry:
    """Load every plugin and return a new registry (use ``get_registry`` for the shared one)."""
    registry = Registry()
    disabled = disabled_plugins()
    from automl import __version__

    for module_name in BUILTIN_PLUGINS:
        if module_name in disabled:
            continue
        try:
            module = importlib.import_module(module_name)
        except Exception as err:  # noqa: BLE001
            registry.failures.append((module_name, f"{type(err).__name__}: {err}"))
            continue
        registry.add_plugin(module, module_name, "built-in", __version__)
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name in disabled or entry_point.name in registry.plugins:
            continue
        dist = getattr(entry_point, "dist", None)
        source = f"entry point {entry_point.value}" + (f" ({dist.name})" if dist is not None else "")
        try:
            plugin = entry_point.load()
        except Exception as err:  # noqa: BLE001
            registry.failures.append((entry_point.name, f"{type(err).__name__}: {err}"))
            continue
        registry.add_plugin(plugin, entry_point.name, source, dist.version if dist is not None else "?")
    return registry


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _registry
    with _lock:
        if _registry is None:
            _registry = load_plugins()
        return _registry


def reset_registry() -> None:
    """Forget the loaded plugins; the next ``get_registry`` loads them again."""
    global _registry
    with _lock:
        _registry = None
