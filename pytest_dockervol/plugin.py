"""pytest hooks: options, per-run identity, xdist hand-over, cleanup and the end-of-run report."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from ._engine import describe_address
from ._factory import VolumeFactory
from ._options import Settings, add_options
from ._state import factory_key
from .fixtures import (
    anonymous_volume,
    dockervol_client,
    host_volume,
    named_volume,
    run_container,
    volume_factory,
)

__all__ = [
    "anonymous_volume",
    "dockervol_client",
    "host_volume",
    "named_volume",
    "run_container",
    "volume_factory",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.stash[factory_key] = VolumeFactory.from_config(config, Settings.from_config(config))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: every worker of this run shares the controller's run id."""
    node.workerinput["dockervol_run_id"] = node.config.stash[factory_key].identity.run_id


def pytest_report_header(config: pytest.Config) -> str:
    identity = config.stash[factory_key].identity
    return f"dockervol: run {identity.run_id}, engine {describe_address()}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, Any, Any]:
    """Volumes a session fixture creates during a test are labelled with that test."""
    factory = item.config.stash[factory_key]
    with factory.creating_for(item.nodeid):
        return (yield)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    factory = config.stash.get(factory_key, None)
    if factory is None:
        return
    factory.close()
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["dockervol_kept"] = list(factory.kept)
        workeroutput["dockervol_problems"] = list(factory.problems)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: collect what each worker kept or could not remove."""
    factory = node.config.stash[factory_key]
    output = getattr(node, "workeroutput", None) or {}
    factory.kept.extend(output.get("dockervol_kept", []))
    factory.problems.extend(output.get("dockervol_problems", []))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    factory = config.stash.get(factory_key, None)
    if factory is None or (not factory.kept and not factory.problems):
        return
    if factory.kept:
        terminalreporter.section("pytest-dockervol: kept (--dockervol-keep)")
        for line in factory.kept:
            terminalreporter.line(line)
    if factory.problems:
        terminalreporter.section("pytest-dockervol: could not remove", red=True)
        for line in factory.problems:
            terminalreporter.line(line)
