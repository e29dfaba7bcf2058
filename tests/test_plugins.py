"""Plugin loading: built-ins and entry points through one path, duplicates, broken plugins, disabling."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import automl
from automl.cli import main
from automl.errors import PluginError
from automl.registry import BUILTIN_PLUGINS, get_registry, load_plugins

PLUGIN_SOURCE = '''
import automl
from automl import Option


class WidthDimension(automl.Dimension):
    """Chooses the NB201 channel count: a dimension that changes how the architecture is built."""

    name = "nb201_width"
    kind = "architecture-option"
    stage = automl.BUILD
    options = {"choices": Option(list, item_type=int, default=[4, 8])}

    def suggest(self, trial, candidate):
        width = trial.suggest_categorical("channels", self.settings["choices"])
        candidate.architecture.channels = width


@automl.hookimpl
def register_dimensions(register):
    register(WidthDimension)
'''


def install_fake_distribution(site: Path, dist: str, module: str, source: str, entry_name: str) -> None:
    """Install a package the way pip lays out a wheel: the module plus a dist-info with entry points."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist}-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(f"[automl]\n{entry_name} = {module}\n")
    (info / "RECORD").write_text("")


def run_cli(args: list[str], site: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(site), **env}
    return subprocess.run(
        [sys.executable, "-m", "automl.cli", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_third_party_plugin_is_usable_from_a_file_and_a_broken_one_is_skipped(tmp_path):
    site = tmp_path / "site"
    install_fake_distribution(site, "automl_width", "automl_width", PLUGIN_SOURCE, "width")
    install_fake_distribution(site, "automl_broken", "automl_broken", "raise ImportError('missing gizmo')\n", "broken")
    typo = "import automl\n\n@automl.hookimpl\ndef register_proxys(register):\n    pass\n"
    install_fake_distribution(site, "automl_typo", "automl_typo", typo, "typo")
    space = tmp_path / "space.toml"
    space.write_text(
        textwrap.dedent("""
        [study]
        n_trials = 3
        sampler = "random"
        [task]
        name = "digits"
        image_size = 16
        batch_size = 8
        [[dimensions]]
        name = "nb201"
        channels = 4
        cells_per_stage = 1
        [[dimensions]]
        name = "nb201_width"
        choices = [4, 6]
        [evaluator]
        name = "proxies"
        proxies = ["params"]
        [[objectives]]
        metric = "params"
        direction = "minimize"
    """)
    )
    listing = run_cli(["plugins"], site, tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "width 0.3 (entry point automl_width (automl_width))" in listing.stdout
    assert "dimensions: nb201_width" in listing.stdout
    assert "broken: FAILED TO LOAD (ImportError: missing gizmo)" in listing.stdout
    assert "typo: FAILED TO LOAD (implements unknown hook(s) register_proxys" in listing.stdout

    result = run_cli(["run", str(space), "--storage", f"sqlite:///{tmp_path}/s.db", "--quiet"], site, tmp_path)
    assert result.returncode == 0, result.stderr
    export = run_cli(["export", "space", "--storage", f"sqlite:///{tmp_path}/s.db", "--format", "json"], site, tmp_path)
    assert export.stdout.count('"param.nb201_width.channels"') == 3

    disabled = run_cli(["plugins"], site, tmp_path, AUTOML_DISABLE_PLUGINS="width")
    assert "nb201_width" not in disabled.stdout
    again = run_cli(
        ["run", str(space), "--storage", f"sqlite:///{tmp_path}/t.db"], site, tmp_path, AUTOML_DISABLE_PLUGINS="width"
    )
    assert again.returncode == 2
    assert "dimensions[1].name: unknown dimension 'nb201_width'" in again.stderr


class _Proxy(automl.Proxy):
    name = "synflow"

    def score(self, candidate, batch):
        return 0.0


def test_duplicate_registration_is_rejected_with_both_plugin_names():
    registry = get_registry()

    class Duplicate:
        @staticmethod
        @automl.hookimpl
        def register_proxies(register):
            register(_Proxy)

    assert not registry.add_plugin(Duplicate(), "dup", "test", "0")
    name, error = registry.failures[-1]
    assert name == "dup"
    assert "proxy 'synflow' from plugin 'dup' is already registered by plugin 'automl_plugins.proxies'" in error
    assert registry.get("proxies", "synflow").__module__ == "automl_plugins.proxies.synflow"
    assert "dup" not in registry.plugins


def test_registration_without_name_and_misspelled_hook():
    registry = get_registry()

    class Nameless:
        @staticmethod
        @automl.hookimpl
        def register_tasks(register):
            register(object())

    assert not registry.add_plugin(Nameless(), "nameless", "test", "0")
    assert "without a name" in registry.failures[-1][1]

    class Misspelled:
        @staticmethod
        @automl.hookimpl
        def register_proxys(register):
            pass

    # A misspelled hook is reported for its plugin alone; the registry (and every command) still works.
    assert not registry.add_plugin(Misspelled(), "typo", "test", "0")
    assert registry.failures[-1][0] == "typo" and "unknown hook(s) register_proxys" in registry.failures[-1][1]
    assert "typo" not in registry.plugins
    registry.manager.check_pending()


def test_a_plugin_class_missing_an_abstract_method_is_refused():
    registry = get_registry()

    class NoScore(automl.Proxy):
        name = "no_score"

    class Plugin:
        @staticmethod
        @automl.hookimpl
        def register_proxies(register):
            register(NoScore)

    assert not registry.add_plugin(Plugin(), "abstract", "test", "0")
    assert registry.failures[-1] == (
        "abstract",
        "PluginError: proxy 'no_score' from plugin 'abstract' does not implement score",
    )
    assert "no_score" not in registry.names("proxies")
    with pytest.raises(TypeError):
        NoScore()


def test_builtins_load_once_and_can_be_disabled(monkeypatch):
    assert get_registry() is get_registry()
    assert set(BUILTIN_PLUGINS) <= set(get_registry().plugins)
    monkeypatch.setenv("AUTOML_DISABLE_PLUGINS", "automl_plugins.proxies")
    registry = load_plugins()
    assert "automl_plugins.proxies" not in registry.plugins
    assert registry.names("proxies") == []


def test_plugins_command_lists_everything(capsys):
    assert main(["plugins", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "automl_plugins.architectures 0.1.0 (built-in)" in out
    assert "dimensions: nb201" in out
    assert "cells_per_stage: an integer; default 5" in out


def test_plugin_error_type_is_public():
    assert issubclass(PluginError, automl.AutomlError)
