"""FileLocker across the processes of a host, and its files.

What every locker does within a process is checked on FileLocker by test_locker_contract.py.
"""

from __future__ import annotations

import asyncio
import os
import selectors
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tusd_py.locks import FileLocker, LockTimeout

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def ignore() -> None:
    pass


# A process that holds the lock of upload "u" and either lets go when asked ("yield")
# or ignores requests for `seconds` ("ignore").
HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from tusd_py.locks import FileLocker

    async def main() -> None:
        directory, mode, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
        locker = FileLocker(directory, timeout=10, poll_interval=0.01)
        asked = asyncio.Event()
        async with locker.hold("u", asked.set):
            print("held", flush=True)
            if mode == "yield":
                await asyncio.wait_for(asked.wait(), seconds)
                print("asked", flush=True)
            else:
                await asyncio.sleep(seconds)
        print("released", flush=True)

    asyncio.run(main())
    """
)

# A process that takes the lock over and over for `seconds`, doing a read-modify-write of
# a counter file inside it; lost updates would show two holders at once.
INCREMENTER = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from tusd_py.locks import FileLocker

    async def main() -> None:
        directory, counter, seconds = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
        locker = FileLocker(directory, timeout=10, poll_interval=0.001)
        rounds = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            async with locker.hold("u", lambda: None):
                value = int(counter.read_text())
                await asyncio.sleep(0.0005)
                counter.write_text(str(value + 1))
            rounds += 1
        print(rounds, flush=True)

    asyncio.run(main())
    """
)


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise TimeoutError("no output from child process")
    return proc.stdout.readline().strip()


@contextmanager
def child(script: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


def assert_no_lost_updates(counter: Path, processes: int, script: str, *args: str) -> None:
    """Run `processes` copies of an incrementer `script` at once (its arguments: `args`, then
    the counter file and the seconds to run): every locked read-modify-write must count."""
    counter.write_text("0")
    command = [sys.executable, "-c", script, *args, str(counter), "1.0"]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    try:
        rounds = []
        for proc in procs:
            out, _ = proc.communicate(timeout=30)
            assert proc.returncode == 0
            rounds.append(int(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert all(r > 0 for r in rounds), rounds
    assert int(counter.read_text()) == sum(rounds)


async def test_lock_file_goes_when_the_holder_lets_go(tmp_path: Path) -> None:
    locker = FileLocker(tmp_path, timeout=0.2, poll_interval=0.01)
    with pytest.raises(ZeroDivisionError):
        async with locker.hold("u", ignore):
            assert (tmp_path / "u.lock").exists()
            1 / 0  # noqa: B018
    assert not (tmp_path / "u.lock").exists()


@pytest.mark.parametrize("upload_id", ["../x", "", "a/b", "a.b"])
async def test_malformed_id_never_reaches_a_path(tmp_path: Path, upload_id: str) -> None:
    locker = FileLocker(tmp_path / "locks", timeout=0.1)
    with pytest.raises(LockTimeout):
        async with locker.hold(upload_id, ignore):
            pass
    assert sorted(os.listdir(tmp_path)) == ["locks"]
    assert os.listdir(tmp_path / "locks") == []


async def test_other_process_is_asked_to_release_and_lets_go(tmp_path: Path) -> None:
    with child(HOLDER, str(tmp_path), "yield", "10") as proc:
        assert read_line(proc, 15) == "held"
        locker = FileLocker(tmp_path, timeout=5, poll_interval=0.01)
        started = time.monotonic()
        async with locker.hold("u", ignore):
            elapsed = time.monotonic() - started
            assert read_line(proc, 5) == "asked"
            assert read_line(proc, 5) == "released"
        assert elapsed < 3
        assert proc.wait(timeout=5) == 0


async def test_lock_timeout_against_another_process(tmp_path: Path) -> None:
    with child(HOLDER, str(tmp_path), "ignore", "30") as proc:
        assert read_line(proc, 15) == "held"
        locker = FileLocker(tmp_path, timeout=0.3, poll_interval=0.01)
        started = time.monotonic()
        with pytest.raises(LockTimeout):
            async with locker.hold("u", ignore):
                pytest.fail("entered a lock held by another process")
        assert 0.25 <= time.monotonic() - started < 2
        # A holder that dies loses its lock with it, though its lock file stays behind.
        proc.kill()
        proc.wait(timeout=5)
    assert (tmp_path / "u.lock").exists()
    async with asyncio.timeout(1), FileLocker(tmp_path, timeout=0.5).hold("u", ignore):
        pass


def test_unlinked_lock_files_never_let_two_holders_in(tmp_path: Path) -> None:
    assert_no_lost_updates(tmp_path / "counter", 3, INCREMENTER, str(tmp_path / "locks"))
