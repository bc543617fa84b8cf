"""pytest hooks: options, run identity and lease, xdist hand-over, cleanup and reporting."""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any

import pytest

from ._engine.engine import ENGINE_ERRORS, describe_address, engine_error_reason
from ._errors import DockervolError
from ._factory import VolumeFactory
from ._options import add_options
from ._runs.heartbeat import Heart, stop_beating
from ._runs.lease import RunLease, forget_run_state
from ._runs.reaper import ReapResult, reap_run, release_kept, without_bookkeeping
from ._runs.report import describe_volume, kept_report
from ._runs.watchdog import Watchdog
from ._state import factory_key, lease_key, watchdog_key
from ._volumes.base import Volume
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

log = logging.getLogger("pytest_dockervol")


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    factory = VolumeFactory.from_config(config, _ispytest=True)
    config.stash[factory_key] = factory
    if factory.identity.is_worker:
        factory.on_first_create = lambda: _first_beat(factory)
        return
    # The run's first process holds the run's lease before anything is created.
    lease = RunLease(factory.identity.run_id)
    lease.acquire()
    config.stash[lease_key] = lease

    def guard_and_beat() -> None:
        _start_watchdog(config)
        _first_beat(factory)

    factory.on_first_create = guard_and_beat


def _start_watchdog(config: pytest.Config) -> None:
    """The watchdog keeps the heartbeat and reaps the run if it dies (or, with
    --dockervol-keep, only keeps the heartbeat)."""
    if config.stash.get(watchdog_key, None) is None:
        factory = config.stash[factory_key]
        heart = Heart.of(factory.identity, factory.settings.heartbeat_timeout, "watchdog")
        config.stash[watchdog_key] = Watchdog(heart, keep=factory.settings.keep)


def _first_beat(factory: VolumeFactory) -> None:
    """Each process beats once as it first creates something: the run has a heartbeat on
    the engine before its first resource, without waiting for the watchdog's renewals."""
    heart = Heart.of(factory.identity, factory.settings.heartbeat_timeout)
    heart.beat(factory.engine, 0)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: every worker shares the run id; the watchdog guards them all."""
    factory = node.config.stash[factory_key]
    node.workerinput["dockervol_run_id"] = factory.identity.run_id
    node.workerinput["dockervol_session_pid"] = factory.identity.session_pid
    _start_watchdog(node.config)


def pytest_report_header(config: pytest.Config) -> str | list[str]:
    """Which engine and run: the first thing to know when a volume test misbehaves."""
    factory = config.stash[factory_key]
    try:
        engine = factory.engine.describe()
    except DockervolError as exc:
        log.debug("no engine for the header: %s", exc)
        return (
            f"dockervol: run {factory.identity.run_id}, engine unreachable at {describe_address()}"
        )
    return [
        f"dockervol: run {factory.identity.run_id}, engine {engine}",
        f"dockervol: clones: {factory.copy_on_write.describe()}, cache: {factory.settings.cache}",
    ]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report lists its volumes' files, before teardown removes them."""
    report = yield
    if report.failed and call.when == "call":
        funcargs: dict[str, object] = getattr(item, "funcargs", {})
        for argname, value in funcargs.items():
            if isinstance(value, Volume) and not value.removed:
                title = f"dockervol {value.kind} volume {value.name} ({argname})"
                report.sections.append((title, describe_volume(value)))
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, Any, Any]:
    """Volumes a session fixture creates during a test are labelled with that test."""
    factory = item.config.stash[factory_key]
    with factory.creating_for(item.nodeid):
        return (yield)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: collect each worker's report; reap a worker that died mid-run."""
    factory = node.config.stash[factory_key]
    output = getattr(node, "workeroutput", None) or {}
    factory.kept.extend(output.get("dockervol_kept", []))
    for key, message in output.get("dockervol_problems", {}).items():
        factory.problems.setdefault(key, message)
    factory.reaped_lines.extend(output.get("dockervol_reaped", []))
    if output.get("dockervol_used_engine"):
        factory.workers_used_engine = True
    if error is None or factory.settings.keep:
        return
    factory.workers_used_engine = True
    worker = str(node.workerinput["workerid"])
    result = _sweep(factory, f"could not reap crashed worker {worker}", worker=worker)
    if result.removed:
        factory.reaped_lines.append(
            f"worker {worker} crashed; removed its {len(result.removed)} resource(s)"
        )


def _sweep(factory: VolumeFactory, failure: str, *, worker: str | None = None) -> ReapResult:
    """Remove what is still labelled with this run (of one worker); report, never raise."""
    try:
        result = reap_run(factory.engine, factory.identity.run_id, worker=worker)
    except ENGINE_ERRORS as exc:
        factory.problems[failure] = f"pytest-dockervol: {failure}: {engine_error_reason(exc)}"
        return ReapResult()
    for key, why in result.failed.items():  # a resource reported already is not listed again
        factory.problems.setdefault(key, f"pytest-dockervol: could not remove {why}")
    return result


def _release_kept(factory: VolumeFactory) -> None:
    """--dockervol-keep: release the helpers that would pin the kept volumes, and list what
    the run kept, as the engine has it (every worker's), ending with how to remove it."""
    run_id = factory.identity.run_id
    try:
        heart = Heart.of(factory.identity, factory.settings.heartbeat_timeout, "run")
        heart.leave_kept_marker(factory.engine)
        kept, failed = release_kept(factory.engine, run_id)
        if not without_bookkeeping(kept):
            reap_run(factory.engine, run_id)  # nothing is kept but the marker itself
            kept = []
    except ENGINE_ERRORS as exc:
        failure = f"could not list what run {run_id} kept"
        factory.problems[failure] = f"pytest-dockervol: {failure}: {engine_error_reason(exc)}"
        return
    for key, why in failed.items():
        factory.problems.setdefault(key, f"pytest-dockervol: could not remove {why}")
    factory.kept = kept_report(run_id, kept, factory.kept)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    factory = config.stash.get(factory_key, None)
    if factory is None:
        return
    factory.close()
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["dockervol_kept"] = list(factory.kept)
        workeroutput["dockervol_problems"] = dict(factory.problems)
        workeroutput["dockervol_reaped"] = list(factory.reaped_lines)
        workeroutput["dockervol_used_engine"] = factory.connected
    elif factory.connected or factory.workers_used_engine:
        if factory.settings.keep:
            _release_kept(factory)
        else:
            # The last one out: everything still labelled with this run (shared volumes,
            # what a crashed worker left, its heartbeats) goes now that every worker is
            # done; the watchdog makes no beat after this point.
            stop_beating(factory.identity.run_id)
            _sweep(factory, f"final sweep of run {factory.identity.run_id} failed")
    # Not reached when cleanup is interrupted (a second Ctrl-C): the watchdog finishes it.
    factory.cleanup_done = True


def pytest_unconfigure(config: pytest.Config) -> None:
    """Give up the lease, and stand the watchdog down if the cleanup is complete; if it is
    not (a second Ctrl-C cut it short, or the session never finished), hand it over."""
    factory = config.stash.get(factory_key, None)
    if factory is None:
        return  # configure failed (a bad option) before anything existed
    watchdog = config.stash.get(watchdog_key, None)
    # Without a watchdog, nothing was created (or the run keeps it all): nothing to finish.
    finished = factory.cleanup_done or watchdog is None
    if watchdog is not None:
        if finished:
            watchdog.stand_down()
        else:
            watchdog.hand_over()
    lease = config.stash.get(lease_key, None)
    if lease is not None:
        keep = factory.settings.keep
        lease.release(kept=keep, finished=finished)
        if finished and not keep:
            forget_run_state(lease.run_id)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    factory = config.stash.get(factory_key, None)
    if factory is None:
        return
    reaped = factory.reaped_lines
    if reaped:
        terminalreporter.section("pytest-dockervol: reaped")
        for line in dict.fromkeys(reaped):
            terminalreporter.line(line)
    if factory.kept:
        terminalreporter.section("pytest-dockervol: kept (--dockervol-keep)")
        for line in factory.kept:
            terminalreporter.line(line)
    if factory.problems:
        terminalreporter.section("pytest-dockervol: could not remove", red=True)
        for line in factory.problems.values():
            terminalreporter.line(line)
