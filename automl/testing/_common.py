"""What every contract suite shares: the plugin under test, its example settings, small default spaces."""

from __future__ import annotations

import copy
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import optuna
import pytest

from automl.candidate import Candidate
from automl.errors import SpaceError
from automl.options import Option
from automl.registry import Registration, Registry, get_registry
from automl.space import SearchSpace


class ContractError(AssertionError):
    """A plugin breaks a contract; the message says which rule and what the plugin did."""


# Tasks that feed each kind of architecture, and the built-in architecture of each kind: a contract
# that needs a model of some kind builds it from these, with each plugin's ``example`` settings.
TASK_OF_KIND: dict[str, str] = {
    "image-classification": "digits",
    "language-modelling": "text_lm",
    "text-classification": "text_order",
}
ARCHITECTURE_SPACES: dict[str, tuple[str, str]] = {
    "cell": ("digits", "nb201"),
    "recurrent": ("text_lm", "nlp_rnn"),
    "transformer": ("text_mlm", "flexibert"),
}
# The evaluator of a space that only exists to sample candidates (the built-in proxies evaluator, counting
# parameters, which costs nothing); ``require("proxies", "params")`` skips where it is not installed.
COUNTING_EVALUATOR: dict[str, Any] = {"name": "proxies", "proxies": ["params"]}
COUNTING_OBJECTIVES: list[dict[str, Any]] = [{"metric": "params", "direction": "minimize"}]


def example_settings(cls: type, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``settings`` when given, else the class's ``example``; a plugin with required options needs one.

    ``example`` is a table, or, for a plugin that reads files, a function ``example(folder)`` that
    writes small files into ``folder`` (a fresh temporary folder) and returns the settings.
    """
    if settings is not None:
        return dict(settings)
    example = getattr(cls, "example", None)
    if callable(example):
        return dict(example(Path(tempfile.mkdtemp(prefix=f"automl-contract-{cls.__name__}-"))))
    if example is not None:
        return copy.deepcopy(dict(example))
    options: Mapping[str, Option] = getattr(cls, "options", {})
    required = [name for name, option in options.items() if option.required]
    if required:
        raise ContractError(
            f"{cls.__name__} has required options ({', '.join(required)}) and no example settings: declare "
            f"`example = {{...}}` on the class (the settings of a small, fast instance), or set `settings` "
            f"on the test class"
        )
    return {}


def configured(cls: type, settings: Mapping[str, Any] | None = None) -> Any:
    """An instance of ``cls`` configured with ``settings`` (default: its ``example``), as a file would."""
    raw = example_settings(cls, settings)
    try:
        return cls.configure(raw, key=getattr(cls, "name", "") or cls.__name__)
    except SpaceError as err:
        raise ContractError(f"{cls.__name__} rejects the settings {raw!r}: {err}") from None


def table_of(kind: str, name: str, registry: Registry | None = None) -> dict[str, Any]:
    """``{"name": name, **example}`` of a registered plugin; skips the test when it is not installed."""
    registry = registry or get_registry()
    if name not in registry.names(kind):
        pytest.skip(f"the {kind} plugin {name!r} is not installed")
    return {"name": name, **example_settings(registry.get(kind, name))}


def require(kind: str, name: str) -> None:
    """Skip the test when the registered plugin ``name`` of ``kind`` is not installed."""
    if name not in get_registry().names(kind):
        pytest.skip(f"the {kind} plugin {name!r} is not installed")


def registry_with(kind: str, cls: type) -> Registry:
    """The loaded registry, with ``cls`` registered under its name if it is not already (a plugin under test)."""
    base = get_registry()
    name = getattr(cls, "name", "")
    if not name:
        raise ContractError(f"{cls.__name__} has no `name`: a search-space file names a plugin by it")
    if name in base.names(kind) and base.get(kind, name) is cls:
        return base
    registry = Registry()
    registry.items = {k: dict(v) for k, v in base.items.items()}
    registry.items[kind][name] = Registration(name, cls, "<under test>")
    return registry


def build_space(data: Mapping[str, Any], registry: Registry | None = None) -> SearchSpace:
    try:
        return SearchSpace.from_dict(copy.deepcopy(dict(data)), source="<contract space>", registry=registry)
    except SpaceError as err:
        raise ContractError(f"the contract's search space is invalid: {err}") from None


def with_plugin(data: Mapping[str, Any], section: str, cls: type, settings: Mapping[str, Any] | None) -> dict:
    """A space table with the plugin's own table set from ``settings`` (kept as written when ``None``)."""
    data = copy.deepcopy(dict(data))
    if settings is None:
        return data
    table = {"name": cls.name, **dict(settings)}
    if section == "dimensions":
        dims = data.get("dimensions") or []
        data["dimensions"] = [table if d.get("name") == cls.name else d for d in dims]
    else:
        data[section] = table
    return data


def counting_space(task: Mapping[str, Any], dimensions: Sequence[Mapping[str, Any]], registry: Registry | None = None):
    """A space that only samples candidates: ``task``, ``dimensions`` and the parameter count as objective."""
    require("evaluators", "proxies")
    require("proxies", "params")
    return build_space(
        {
            "study": {"name": "contract", "seed": 0, "sampler": "random"},
            "task": task,
            "dimensions": list(dimensions),
            "evaluator": COUNTING_EVALUATOR,
            "objectives": COUNTING_OBJECTIVES,
        },
        registry,
    )


def plugin_space(cls: type, section: str, settings: Mapping[str, Any] | None, default: dict[str, Any]) -> SearchSpace:
    """The class's ``example_space`` (with ``settings`` in its ``section`` when given), else ``default``."""
    registry = registry_with("evaluators" if section == "evaluator" else "strategies", cls)
    example = getattr(cls, "example_space", None)
    if example is not None:
        data = with_plugin(example, section, cls, settings)
        if (data.get(section) or {}).get("name") != cls.name:
            raise ContractError(f"{cls.__name__}.example_space has no [{section}] named {cls.name!r}")
        return build_space(data, registry)
    return build_space(default, registry)


def seeded_candidates(space: SearchSpace, n: int, seed: int = 0) -> list[tuple[optuna.trial.Trial, Candidate]]:
    """``n`` candidates sampled by a seeded random sampler (the trials are left open)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed), directions=space.directions)
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append((trial, space.sample(trial)))
    return out


def same_value(a: Any, b: Any) -> bool:
    """Deep equality in which NaN equals NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)):
        return type(a) is type(b) and a == b  # 1 and 1.0 (and True) come back from JSON as what they were
    return a == b


class PluginContract:
    """Base of the suites: ``plugin_class`` is the class attribute named ``plugin_attribute``.

    ``every_registered`` parametrizes ``plugin_class`` directly, which overrides this fixture.
    """

    plugin_attribute: ClassVar[str] = ""
    settings: ClassVar[Mapping[str, Any] | None] = None

    @pytest.fixture(scope="class")
    def plugin_class(self, request: pytest.FixtureRequest) -> type:
        cls = getattr(request.cls, self.plugin_attribute, None)
        if cls is None:
            raise ContractError(
                f"{request.cls.__name__} tests no plugin: set `{self.plugin_attribute} = YourClass` on it"
            )
        return cls

    def test_declares_a_name_description_and_options(self, plugin_class: type) -> None:
        check_declarations(plugin_class)


def check_declarations(cls: type) -> None:
    """A name a file can write, a one-line description, options declared with ``Option``."""
    name = getattr(cls, "name", "")
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ContractError(f"{cls.__name__}.name must be a non-empty string without spaces around it, got {name!r}")
    description = getattr(cls, "description", "")
    if not isinstance(description, str) or not description.strip() or "\n" in description.strip():
        raise ContractError(f"{cls.__name__}.description must be one line for `automl plugins`, got {description!r}")
    for key, option in getattr(cls, "options", {}).items():
        if not isinstance(option, Option):
            raise ContractError(f"{cls.__name__}.options[{key!r}] is {option!r}, not an automl.Option")


def registered_plugins(kind: str, where: Callable[[type], bool] | None = None) -> list[tuple[str, type]]:
    """``(name, class)`` of every registered plugin of ``kind`` (built-ins and installed entry points)."""
    registry = get_registry()
    found = [(name, registry.get(kind, name)) for name in registry.names(kind)]
    return [(name, cls) for name, cls in found if where is None or where(cls)]


def every_registered(
    kind: str, *, where: Callable[[type], bool] | None = None, slow: Sequence[str] = ()
) -> pytest.MarkDecorator:
    """Parametrize a suite's subclass over every registered plugin of ``kind``.

    ``kind`` is a registry kind (``proxies``, ``dimensions``, ``evaluators``, ``tasks``, ``strategies``);
    ``where`` keeps only the classes it accepts; plugins named in ``slow`` get the ``slow`` mark::

        @every_registered("proxies")
        class TestEveryProxy(ProxyContract):
            pass
    """
    params = [
        pytest.param(cls, id=name, marks=[pytest.mark.slow] if name in slow else [])
        for name, cls in registered_plugins(kind, where)
    ]
    return pytest.mark.parametrize("plugin_class", params, scope="class")
