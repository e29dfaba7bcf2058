"""Search dimensions: what a search varies, suggested define-by-run on an Optuna trial."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import optuna

from automl.plugin import Configurable

if TYPE_CHECKING:
    from torch import nn

    from automl.candidate import Candidate
    from automl.tasks import Task

# Dimensions run in stage order (stable within a stage), so a later one can read what earlier ones chose:
# the architecture first, then what shapes the build (normalization), the recipe (loss), then what
# transforms the built model (pruning masks, bit-widths), then what acts on the data.
ARCHITECTURE = 0
BUILD = 10
RECIPE = 20
MODEL = 30
DATA = 40


class ScopedTrial:
    """The trial as one dimension sees it: every parameter name gets the dimension's key as prefix.

    Works over any Optuna trial, ``optuna.trial.FixedTrial`` included, so the same ``suggest``
    code samples a new candidate or rebuilds a known one.
    """

    def __init__(self, trial: optuna.trial.BaseTrial, prefix: str) -> None:
        self.trial = trial
        self.prefix = prefix

    def _name(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self.trial.suggest_categorical(self._name(name), list(choices))

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        return self.trial.suggest_int(self._name(name), low, high, step=step, log=log)

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        return self.trial.suggest_float(self._name(name), low, high, step=step, log=log)

    @property
    def number(self) -> int:
        return getattr(self.trial, "number", -1)


class Dimension(Configurable):
    """One thing a search varies.

    ``kind`` groups dimensions for users (``architecture``, ``normalization``, ``loss``, ``pruning``,
    ``quantization``, ``data``); ``stage`` orders them. ``suggest`` is called once per trial: it asks
    the trial for values (through a ``ScopedTrial`` that prefixes the names with this dimension's key)
    and records their effect on the candidate: setting the architecture, the ``norm_layer`` factory or
    the loss, or adding a transform that is applied to every model built from the candidate.
    """

    kind: ClassVar[str] = "generic"
    stage: ClassVar[int] = RECIPE

    @abstractmethod
    def suggest(self, trial: ScopedTrial, candidate: Candidate) -> None:
        """Suggest this dimension's values for one trial and apply them to ``candidate``."""

    def validate(self, space: Any) -> None:
        """Check rules that involve the rest of the space (the task, other dimensions).

        Raise ``SpaceError`` with ``key`` naming the option at fault. Called once when a space is built.
        """


class Architecture(ABC):
    """A sampled network architecture: a string form, a canonical id, and a builder.

    ``kind`` says which proxies apply: ``"cell"`` (convolutional cell networks), ``"recurrent"`` or
    ``"transformer"``.
    """

    kind: ClassVar[str] = ""

    @abstractmethod
    def to_string(self) -> str:
        """The architecture in its space's own string form (parsable by the dimension's ``parse``)."""

    @abstractmethod
    def canonical_id(self) -> str:
        """Equal for architectures that compute the same function (isomorphic cells)."""

    @abstractmethod
    def build(self, task: Task, norm_layer: Any = None, options: Mapping[str, Any] | None = None) -> nn.Module:
        """A freshly initialised torch model for ``task``.

        ``norm_layer(num_features, layout=...)`` returns a normalization module (``layout`` is
        ``"nchw"`` for image feature maps, ``"nlc"`` for token sequences); ``None`` keeps the
        architecture's own default. ``options`` carries build settings chosen by other dimensions
        (for example ``norm_placement`` for transformers).
        """

    def draw(self) -> str:
        """A text drawing for terminals (the string form unless a space draws better)."""
        return self.to_string()

    def __str__(self) -> str:
        return self.to_string()


class ArchitectureDimension(Dimension):
    """A dimension whose values make an architecture.

    Besides ``sample``, it can ``parse`` the string form and give back ``params`` (unprefixed
    parameter values) so a known architecture can be rebuilt through a ``FixedTrial``.
    """

    kind: ClassVar[str] = "architecture"
    stage: ClassVar[int] = ARCHITECTURE
    arch_kind: ClassVar[str] = ""
    task_kinds: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def sample(self, trial: ScopedTrial) -> Architecture:
        """Sample an architecture on the trial (define-by-run)."""

    @abstractmethod
    def parse(self, text: str) -> Architecture:
        """Parse the string form; raise ``ValueError`` naming what is wrong."""

    @abstractmethod
    def params(self, arch: Architecture) -> dict[str, Any]:
        """The unprefixed parameter values for which ``sample`` returns ``arch``."""

    def suggest(self, trial: ScopedTrial, candidate: Candidate) -> None:
        candidate.set_architecture(self.sample(trial), key=trial.prefix)

    def validate(self, space: Any) -> None:
        from automl.errors import SpaceError

        if self.task_kinds and space.task.kind not in self.task_kinds:
            raise SpaceError(
                f"the {self.name!r} architecture cannot take a {space.task.kind} task ({space.task.name!r})",
                key="task.name",
                allowed=self.task_kinds,
            )
