"""Bad input that got past the checks: over-long seed paths and volume names, corrupt
archives, a seed for a tmpfs volume, and engine errors part-way through a write (a full
disk, a container racing the seed). Each is refused before anything is written, or
reported in one line that keeps the engine's cause and says what state the volume is in.

The rules are unit-tested here without an engine; the rest runs on the real engine
through the outer session's own fixtures.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
from conftest import InnerPytest, is_podman
from tarfiles import member, parse, write_tar

from pytest_dockervol import (
    ContainerRunner,
    DockervolError,
    DockervolUsageError,
    SeedPathError,
    SeedSourceError,
    SeedWriteError,
    VolumeCopyError,
    VolumeFactory,
    VolumeNameError,
)
from pytest_dockervol._cache.key import check_cache_key
from pytest_dockervol._engine.engine import engine_error_reason
from pytest_dockervol._engine.labels import LABEL_RUN, check_volume_name
from pytest_dockervol._errors import REMOVED_STATE, one_line
from pytest_dockervol._runs.cli import printable
from pytest_dockervol._seeding.sources import SeedOptions, build_seed_plan, check_relative_path

MiB = 1 << 20


def path_of(size: int) -> str:
    """A path of ``size`` bytes, of names of at most 200 bytes."""
    path = ("d" * 199 + "/") * (size // 200) + "f" * (size % 200)
    return path[:-1] + "f" if path.endswith("/") else path


#: A path over the 4,000-byte limit, and one exactly at it.
PATH_5000 = path_of(5000)
PATH_4000 = path_of(4000)


def one_short_line(error: BaseException, limit: int = 400) -> str:
    """The error's message, checked to be one line that a long input did not swamp."""
    text = str(error)
    assert "\n" not in text, text
    assert len(text) <= limit, f"{len(text)} characters: {text[:500]}"
    return text


# -- path lengths (item 4): pure logic ----------------------------------------------------


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("a/" + "x" * 256, "has a 256-byte name 'xxx"),
        ("日" * 86, "has a 258-byte name '日日"),  # 86 characters, 258 bytes in UTF-8
        ("x" * 300 + "/f", "has a 300-byte name"),
        (PATH_5000, "is 5,000 bytes long"),
        (PATH_4000 + "/f", "is 4,002 bytes long"),
    ],
    ids=["name-256", "name-258-utf8", "name-300", "path-5000", "path-4002"],
)
def test_over_long_names_and_paths_are_refused(path: str, why: str) -> None:
    with pytest.raises(SeedPathError, match=why) as info:
        check_relative_path(path)
    assert info.value.path == path
    text = one_short_line(info.value)
    assert "at most" in text  # it names the fix
    assert "..." in text or len(path) < 80  # a long path is shown cut


@pytest.mark.parametrize(
    "path",
    ["x" * 255, "日" * 85, f"a/{'é' * 127}", PATH_4000],
    ids=["name-255", "name-255-utf8", "name-254-utf8", "path-4000"],
)
def test_names_and_paths_at_the_limits_are_accepted(path: str) -> None:
    assert check_relative_path(path) == path
    assert parse(build_seed_plan({path: "x"}))[-1][0].name == path


def test_dest_counts_towards_the_path_limit() -> None:
    inner = path_of(3799)  # fine alone
    build_seed_plan({inner: "x"}, SeedOptions(dest="e" * 200))  # 4,000 bytes with dest
    with pytest.raises(SeedPathError, match=r"is 4,002 bytes long with dest='eee") as info:
        build_seed_plan({inner: "x"}, SeedOptions(dest="e" * 202))
    one_short_line(info.value)
    with pytest.raises(SeedPathError, match="has a 300-byte name"):
        build_seed_plan({"f": "x"}, SeedOptions(dest="x" * 300))


def test_archive_members_and_links_are_checked(tmp_path: Path) -> None:
    archives = {
        "has a 300-byte name": member("x" * 300, b"1"),
        "is 5,000 bytes long": member(PATH_5000, b"1"),
        "symbolic link whose target has a 300-byte name": member(
            "link", type=tarfile.SYMTYPE, linkname="y" * 300
        ),
        "symbolic link whose target is 4,400 bytes long": member(
            "link", type=tarfile.SYMTYPE, linkname="a/" * 2200
        ),
    }
    for n, (why, bad) in enumerate(archives.items()):
        path = write_tar(tmp_path / f"s{n}.tar", member("ok", b"1"), bad)
        with pytest.raises(SeedPathError, match=why) as info:
            build_seed_plan(path)
        one_short_line(info.value)


def test_directory_links_are_checked(tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    os.symlink("a/" * 2010, tmp_path / "tree" / "link")  # 4,020 bytes: Linux allows it
    with pytest.raises(SeedPathError, match="whose target is 4,020 bytes long"):
        build_seed_plan(tmp_path / "tree")


def test_a_name_that_is_no_unicode_is_refused() -> None:
    with pytest.raises(SeedPathError, match="lone surrogate") as info:
        build_seed_plan({"ok": "1", "bad\ud800": "2"})
    one_short_line(info.value)


# -- volume names (item 5): pure logic ----------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["ab\n", "pdv-name\n", "a" * 256, "a" * 308, "ab\r"],
    ids=["newline", "newline-2", "256", "308", "carriage-return"],
)
def test_volume_names_with_a_newline_or_too_long_are_refused(name: str) -> None:
    with pytest.raises(VolumeNameError, match="at most 255") as info:
        check_volume_name(name)
    one_short_line(info.value, 300)


def test_a_volume_name_of_255_characters_is_accepted() -> None:
    assert check_volume_name("a" * 255) == "a" * 255


def test_a_name_prefix_with_a_newline_is_refused(pytester: pytest.Pytester) -> None:
    """The prefix of generated names had the same ``$`` check as volume names."""
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--dockervol-prefix=ab\n")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*dockervol_prefix 'ab\\n' is not usable in volume names*"])


# -- corrupt archives (item 6): pure logic ------------------------------------------------


@pytest.mark.parametrize(
    ("content", "cause"),
    [
        (b"this is not a tar file at all" * 40, r"\(tried gzip, bzip2, xz and plain tar; plain"),
        (b"", r"\(tried gzip, bzip2, xz and plain tar; gzip: "),
        (b"\x1f\x8b\x08\x00" + b"\x00" * 6 + b"\xff" * 600, r"tried .*; gzip: "),
    ],
    ids=["garbage", "empty", "bad-gzip"],
)
def test_a_corrupt_archive_is_one_line_with_its_cause(
    tmp_path: Path, content: bytes, cause: str
) -> None:
    broken = tmp_path / "broken.tar"
    broken.write_bytes(content)
    with pytest.raises(SeedSourceError, match=cause) as info:
        build_seed_plan(broken)
    one_short_line(info.value)


# -- engine errors (item 8): pure logic ---------------------------------------------------


def test_engine_errors_keep_their_cause_in_one_line() -> None:
    long_path = "/v/" + PATH_5000
    exc = docker.errors.APIError(
        f"500 Server Error for http+docker://localhost/v1.41/containers/{'f' * 64}/archive",
        explanation=f"Error processing tar file(exit status 1):\nopen {long_path}: file name too long",
    )
    reason = engine_error_reason(exc)
    assert reason.endswith(": file name too long"), reason
    assert "\n" not in reason
    assert len(reason) < 200
    copy = VolumeCopyError("a", "b", f"the engine failed to copy it ({reason})")
    assert one_short_line(copy).endswith("remove it or restore it again")
    seed = SeedWriteError("vol", reason)
    assert "file name too long; the volume holds part of the seed" in one_short_line(seed)


# -- on the engine ---------------------------------------------------------------------------


def _run_volumes(client: docker.DockerClient, factory: VolumeFactory) -> set[str]:
    """The volumes of the outer session's run."""
    label = f"{LABEL_RUN}={factory.identity.run_id}"
    return {str(v.name) for v in client.volumes.list(filters={"label": label})}


def test_over_long_seed_paths_write_nothing(
    volume_factory: VolumeFactory, docker_client: docker.DockerClient
) -> None:
    volume = volume_factory.named(seed={"0.txt": "kept"})
    bad_seeds = [
        {"0.txt": "changed", "a/" + "x" * 300: "y"},
        {"0.txt": "changed", PATH_5000: "y"},
        {"0.txt": "changed", PATH_4000: "y"},  # fine alone, too long below dest
    ]
    for seed in bad_seeds:
        dest = "dest" if PATH_4000 in seed else ""
        with pytest.raises(SeedPathError) as info:
            volume.seed(seed, dest=dest)
        one_short_line(info.value)
    assert volume.files() == ["0.txt"]
    assert volume.read_text("0.txt") == "kept"
    before = _run_volumes(docker_client, volume_factory)
    with pytest.raises(SeedPathError, match="has a 300-byte name"):
        volume_factory.named(seed={"0.txt": "x", "x" * 300: "y"})
    assert _run_volumes(docker_client, volume_factory) == before
    volume.remove()


def test_volume_names_at_the_engine(volume_factory: VolumeFactory) -> None:
    stem = f"pdv-bad-input-{uuid.uuid4().hex[:12]}"
    for name in (f"{stem}\n", stem + "x" * (256 - len(stem)), stem + "x" * 300):
        with pytest.raises(VolumeNameError) as info:
            volume_factory.named(name)
        one_short_line(info.value, 300)
    longest = volume_factory.named(stem + "x" * (255 - len(stem)), seed={"f": "x"})
    assert longest.read_text("f") == "x"
    longest.remove()


def test_a_tmpfs_volume_refuses_its_seed_anonymous_as_named(
    volume_factory: VolumeFactory, docker_client: docker.DockerClient
) -> None:
    options = {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    before = _run_volumes(docker_client, volume_factory)
    with pytest.raises(DockervolUsageError, match="is a tmpfs volume") as named:
        volume_factory.named(driver_opts=options, seed={"a.txt": "x"})
    with pytest.raises(DockervolUsageError, match="is a tmpfs volume") as anonymous:
        volume_factory.anonymous(driver_opts=options, seed={"a.txt": "x"})
    assert str(anonymous.value).split(":", 1)[1] == str(named.value).split(":", 1)[1]
    assert _run_volumes(docker_client, volume_factory) == before


@pytest.fixture
def small_disk(tmp_path: Path, docker_client: docker.DockerClient) -> Iterator[Path]:
    """A 1 MiB tmpfs on this machine, for volumes that bind it (``type=none, o=bind``)."""
    if is_podman(docker_client):
        pytest.skip("Podman's archive API cannot write volumes with driver_opts")
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        yield small
    finally:
        if subprocess.run(["umount", str(small)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(small)], check=True)


def test_a_full_disk_says_the_cause_and_the_state(
    volume_factory: VolumeFactory, small_disk: Path, docker_client: docker.DockerClient
) -> None:
    bound = {"type": "none", "o": "bind", "device": str(small_disk)}
    volume = volume_factory.named(driver_opts=bound)
    try:
        with pytest.raises(SeedWriteError) as info:
            volume.seed({"big.bin": os.urandom(2 * MiB)})
        text = one_short_line(info.value)
        assert f"could not seed volume {volume.name}: " in text
        assert "no space left on device; the volume holds part of the seed" in text
        assert 0 < (small_disk / "big.bin").stat().st_size < 2 * MiB  # what it says: part
    finally:
        volume.remove()
    for leftover in small_disk.iterdir():
        leftover.unlink()
    before = _run_volumes(docker_client, volume_factory)
    with pytest.raises(SeedWriteError) as created:  # a seed given to the factory
        volume_factory.named(driver_opts=bound, seed={"big.bin": os.urandom(2 * MiB)})
    assert one_short_line(created.value).endswith(REMOVED_STATE)
    assert _run_volumes(docker_client, volume_factory) == before
    for leftover in small_disk.iterdir():
        leftover.unlink()
    big = volume_factory.named(seed={"big.bin": os.urandom(2 * MiB)})
    snapshot = big.snapshot()
    target = volume_factory.named(driver_opts=bound)
    try:
        with pytest.raises(VolumeCopyError) as copy:
            target.restore(snapshot)
        text = one_short_line(copy.value)
        assert "no space left on device" in text
        assert text.endswith("the target is incomplete, remove it or restore it again")
    finally:
        target.remove()
        snapshot.remove()
        big.remove()


def test_a_seed_racing_a_container_fails_in_one_line(
    volume_factory: VolumeFactory, run_container: ContainerRunner, image: str
) -> None:
    volume = volume_factory.named()
    churn = "while :; do rm -rf /v/d; mkdir -p /v/d; done"
    container = run_container(
        image, ["sh", "-c", churn], mounts=[volume.mount("/v")], network_mode="none"
    )
    failures: list[DockervolError] = []
    seeds = 0
    deadline = time.monotonic() + 4  # how long to race, not an assertion on time
    try:
        while time.monotonic() < deadline or (not failures and seeds < 2000):
            seeds += 1
            try:
                volume.seed({"d/x": "x", "d/e/f": "y"})
            except DockervolError as exc:  # anything else (a raw docker error) fails the test
                failures.append(exc)
    finally:
        container.kill()  # run_container removes it after the test
    assert failures, f"no seed of {seeds} raced the container"
    for failure in failures:
        assert isinstance(failure, SeedWriteError), failure
        assert one_short_line(failure).endswith(
            "the volume holds part of the seed: remove the volume or seed it again once the "
            "cause is fixed"
        )
    volume.remove()


def test_a_long_engine_message_keeps_its_start_and_its_cause() -> None:
    """Podman answers with a Go struct of 1,700 characters before the cause."""
    fields = ", ".join(f'Field{i}:"/var/lib/containers/storage/volumes/x"' for i in range(40))
    text = f"error during bulk transfer for copier.request{{{fields}}}: open /v/d/x: no such file"
    line = one_line(text)
    assert len(line) <= 200
    assert line.startswith("error during bulk transfer")
    assert line.endswith("open /v/d/x: no such file")


# -- what a new user tried: each a one-line error that names the fix, nothing left ---------


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("k" * 201, "is 201 characters long; use at most 200"),
        ("a\nb", "holds the control character '\\n'"),
        ("a\0b", "holds the control character '\\x00'"),
        ("", "must be a non-empty string"),
    ],
    ids=["201-characters", "newline", "nul", "empty"],
)
def test_a_cache_key_that_ls_and_rm_could_not_show_is_refused(key: str, why: str) -> None:
    with pytest.raises(DockervolUsageError, match=re.escape(why)) as info:
        check_cache_key(key)
    one_short_line(info.value)
    assert check_cache_key("k" * 200) == "k" * 200


def test_raw_errors_a_new_user_met_are_one_line_and_leave_nothing(inner: InnerPytest) -> None:
    inner.pytester.makepyfile(
        """
        import pytest
        from pytest_dockervol import DockervolUsageError

        def one_line(info):
            text = str(info.value)
            assert "\\n" not in text and len(text) < 400, text
            return text

        def test_clone_of_a_host_volume(volume_factory):
            host = volume_factory.host(seed={"a": "x"})
            with pytest.raises(DockervolUsageError) as info:
                volume_factory.clone_of(host)
            assert "volume_factory.named(seed=host_volume.path)" in one_line(info)

        def test_clone_of_something_else(volume_factory):
            with pytest.raises(DockervolUsageError, match="a volume or a snapshot made by"):
                volume_factory.clone_of("pdv-some-name")

        @pytest.mark.parametrize("inputs", [[123], [b"bytes"], ["ok", None]])
        def test_cache_inputs_that_are_no_paths(volume_factory, inputs, tmp_path):
            (tmp_path / "ok").write_text("x")
            with pytest.raises(DockervolUsageError, match="inputs are paths") as info:
                volume_factory.cached("key", seed={"a": "x"}, inputs=inputs)
            one_line(info)

        @pytest.mark.parametrize("key", ["k" * 300, "two\\nlines", "nul\\0"])
        def test_cache_keys_ls_and_rm_could_not_show(volume_factory, key):
            with pytest.raises(DockervolUsageError, match="cache key") as info:
                volume_factory.cached(key, seed={"a": "x"})
            one_line(info)

        def test_a_clone_says_it_is_one_and_stays_one(volume_factory, dockervol_client):
            clone = volume_factory.clone_of(volume_factory.named(seed={"a": "x"}))
            assert clone.kind == "clone"
            clone.restore(clone.snapshot())  # recreates the volume with its kind label
            labels = dockervol_client.volumes.get(clone.name).attrs["Labels"]
            assert labels["pytest-dockervol.kind"] == "clone"

        def test_a_200_character_key_is_listed_whole(volume_factory, dockervol_client):
            volume = volume_factory.cached("k" * 200, seed={"a": "x"})
            labels = dockervol_client.volumes.get(volume.name).attrs["Labels"]
            assert labels["pytest-dockervol.cache-name"] == "k" * 200
        """
    )
    run = inner.run("--dockervol-cache=off")
    run.result.assert_outcomes(passed=10)
    assert run.leftovers() == []


def test_the_command_help_is_plain_text() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest_dockervol", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "List and remove what earlier test runs left" in result.stdout
    assert "``" not in result.stdout


def test_ls_shows_a_key_from_before_the_checks_on_one_line() -> None:
    assert printable("plain key") == "plain key"
    assert printable("two\nlines\0") == "two\\nlines\\x00"
