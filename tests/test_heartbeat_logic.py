"""Pure logic of heartbeats: engine timestamps, and how a beat decides whether a run on
another machine is over. No Docker."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from pytest_dockervol._engine.labels import (
    LABEL_CREATED,
    LABEL_HEARTBEAT_TIMEOUT,
    LABEL_KIND,
    LABEL_NAMESPACE,
    LABEL_OWNER,
    LABEL_RUN,
    LABEL_SESSION_PID,
    RunIdentity,
)
from pytest_dockervol._runs.heartbeat import Heart, beat_interval, parse_engine_time
from pytest_dockervol._runs.reaper import Resource, RunSummary, verdict

ME = RunIdentity(run_id="a" * 32, worker="main", namespace="boot:1", session_pid=10)
#: The engine's clock, in the tests (it has nothing to do with this machine's).
ENGINE_NOW = datetime(2026, 12, 7, 2, 30, 0, tzinfo=timezone.utc).timestamp()
DAY = 24 * 3600.0


def engine_stamp(seconds_ago: float) -> str:
    """A CreatedAt as Docker writes it: RFC 3339, to the second."""
    moment = datetime.fromtimestamp(ENGINE_NOW - seconds_ago, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def other_run(
    *beats: tuple[float, float],
    kept: bool = False,
    namespace: str = "boot:2",
    holds: bool = True,
) -> RunSummary:
    """A run of another machine (its own clock: two days behind), with a named volume
    (unless not ``holds``) and one heartbeat per (seconds ago by the engine's clock,
    declared timeout)."""
    run_id = "b" * 32
    base = {
        LABEL_OWNER: "pytest-dockervol",
        LABEL_RUN: run_id,
        LABEL_NAMESPACE: namespace,
        LABEL_SESSION_PID: "99",
        LABEL_CREATED: str(ENGINE_NOW - 2 * DAY),
    }
    resources = [Resource("volume", "data", {**base, LABEL_KIND: "named"})] if holds else []
    for n, (ago, timeout) in enumerate(beats):
        labels = {**base, LABEL_KIND: "heartbeat", LABEL_HEARTBEAT_TIMEOUT: f"{timeout:g}"}
        resources.append(Resource("volume", f"beat-{n}", labels, created_at=engine_stamp(ago)))
    if kept:
        resources.append(Resource("volume", "kept", {**base, LABEL_KIND: "kept-marker"}))
    return RunSummary(run_id, resources)


def judge(
    run: RunSummary, reader_timeout: float = 60.0, lease: str = "unknown"
) -> tuple[bool, str]:
    return verdict(
        run,
        ME,
        lease=lease,
        now=ENGINE_NOW,  # this machine's clock: the idle rule would call the run over
        max_age=3600.0,
        engine_time=ENGINE_NOW,
        heartbeat_timeout=reader_timeout,
        is_alive=lambda _: False,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-07T02:30:00Z", ENGINE_NOW),  # Docker's volume CreatedAt
        ("2026-12-07T02:30:00.130051381Z", ENGINE_NOW + 0.130051),  # docker info SystemTime
        ("2026-12-07T03:30:00.5+01:00", ENGINE_NOW + 0.5),  # an engine in another zone
        ("2026-12-07T02:30:00", ENGINE_NOW),  # no zone: UTC
        (" 2026-12-07T02:30:00.1z\n", ENGINE_NOW + 0.1),
    ],
)
def test_engine_timestamps(text: str, expected: float) -> None:
    assert parse_engine_time(text) == pytest.approx(expected, abs=1e-6)


def test_engine_timestamp_that_is_not_one() -> None:
    with pytest.raises(ValueError, match="isoformat"):
        parse_engine_time("yesterday")


@pytest.mark.parametrize(
    ("run", "reader_timeout", "over", "why"),
    [
        # beating: never over, however old its resources and whatever this machine's clock
        (other_run((3, 60)), 60, False, "on host ?, its heartbeat is 3 s old"),
        # stopped longer ago than the timeout: over, wherever it ran
        (other_run((61, 60)), 60, True, "its heartbeat stopped 61 s ago (timeout 60 s)"),
        # the newest beat counts
        (other_run((200, 60), (10, 60)), 60, False, "heartbeat is 10 s old"),
        # a run that declared a longer timeout beats slowly: a short reader waits for it
        (other_run((120, 600)), 60, False, "heartbeat is 120 s old"),
        (other_run((601, 600)), 60, True, "(timeout 600 s)"),
        # a reader's longer timeout wins too
        (other_run((120, 60)), 300, False, "heartbeat is 120 s old"),
        # a beat stamped a little ahead of the engine's clock is fresh, not negative
        (other_run((-1, 60)), 60, False, "heartbeat is 0 s old"),
        # kept: never over, beat or no beat
        (other_run(kept=True), 60, False, "--dockervol-keep"),
        (other_run((3600, 60), kept=True), 60, False, "--dockervol-keep"),
        # kept, but its volumes were removed by hand: the marker guards nothing any more
        (other_run(kept=True, holds=False), 60, True, "nothing but its kept marker is left"),
        (other_run((5, 60), kept=True, holds=False), 60, True, "nothing but its kept marker"),
        # no heartbeat (an older plugin version): the idle rule, by the labels' clock
        (other_run(), 60, True, "idle for"),
    ],
)
def test_verdict_by_heartbeat(run: RunSummary, reader_timeout: float, over: bool, why: str) -> None:
    decided, reason = judge(run, reader_timeout)
    assert (decided, why in reason) == (over, True), reason


def test_a_kept_lease_here_with_only_the_marker_left_is_over() -> None:
    assert judge(other_run(kept=True, holds=False), lease="kept")[0] is True
    assert judge(other_run(kept=True), lease="kept") == (False, "ended with --dockervol-keep")
    # A kept lease without even its marker on the engine (an older version's run): over.
    assert judge(other_run(holds=False), lease="kept")[0] is True


def test_this_machine_names_itself_and_a_held_lease_wins() -> None:
    here = other_run((3, 60), namespace="boot:1")
    assert judge(here)[1] == "its process 99 is gone"  # pids decide first on this machine
    stale = other_run((3600, 60))
    assert judge(stale, lease="alive") == (False, "its lease is held")


def test_without_the_engine_clock_beats_are_not_judged() -> None:
    decided, reason = verdict(
        other_run((3600, 60)), ME, lease="unknown", now=ENGINE_NOW, max_age=3 * DAY
    )
    assert (decided, reason.startswith("on host ?; counted as over after")) == (False, True)


def test_a_run_without_beats_has_no_last_beat() -> None:
    assert other_run().last_beat is None
    assert other_run((5, 60), (9, 30)).last_beat == pytest.approx(ENGINE_NOW - 5)
    assert other_run((5, 60), (9, 30)).beat_timeout == 60


def test_beats_come_five_times_per_timeout() -> None:
    assert beat_interval(60) == 12
    assert beat_interval(5) == 1


def test_heart_crosses_to_the_watchdog_as_json() -> None:
    heart = Heart.of(ME, 30.0, "watchdog")
    assert Heart.from_json(heart.to_json()) == heart
    assert heart.name_base == "pdv-aaaaaaaa-watchdog-heartbeat"
    labels = heart.beat_labels()
    assert labels[LABEL_RUN] == ME.run_id
    assert labels[LABEL_KIND] == "heartbeat"
    assert labels[LABEL_HEARTBEAT_TIMEOUT] == "30"
