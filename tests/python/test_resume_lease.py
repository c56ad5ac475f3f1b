"""Resume leases: of two processes resuming one run, exactly one runs it and the other
gets a StoreError saying who holds it; a lease ends with its run, and one left by a
crashed process lapses (at once, on the same host, when its process is gone)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import Stores

import counterpoint as cp
from counterpoint._leases import LEASE_SECONDS, renew_leases
from counterpoint._store import LeaseHolder

SCRIPT = textwrap.dedent("""
    import os, sys, time
    import counterpoint as cp

    mode, store, work = sys.argv[1], sys.argv[2], sys.argv[3]

    def slow(x):
        if not os.path.exists(os.path.join(work, "fixed")):
            raise RuntimeError("not yet")
        with open(os.path.join(work, "calls"), "a") as calls:
            calls.write(f"{os.getpid()}\\n")
        time.sleep(1.5)  # holds the lease while the other process tries
        return x + 1

    app = cp.Graph().add("a", lambda x: x * 10).add("b", slow, after="a").compile(store=store)
    if mode == "start":
        print(app.run(1).run_key)
        sys.exit(0)
    open(os.path.join(work, f"ready-{os.getpid()}"), "w").close()
    while not os.path.exists(os.path.join(work, "go")):
        time.sleep(0.005)
    try:
        print("won", app.resume(mode))
    except cp.StoreError as exc:
        print("refused", exc)
""")


def _python(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", SCRIPT, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_two_processes_resuming_one_run_exactly_one_wins(stores: Stores, tmp_path: Path) -> None:
    store = stores.location()
    work = str(tmp_path)
    starter = _python("start", store, work)
    out, err = starter.communicate(timeout=60)
    assert starter.returncode == 0, err
    key = out.strip()
    (tmp_path / "fixed").touch()
    racers = [_python(key, store, work) for _ in range(2)]
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("ready-*"))) < 2:
            assert time.monotonic() < deadline, "the resuming processes did not start"
            time.sleep(0.01)
        (tmp_path / "go").touch()
        results = [racer.communicate(timeout=60) for racer in racers]
    finally:
        for racer in racers:
            racer.kill()
    lines = [out.strip() for out, _ in results]
    assert sorted(line.split()[0] for line in lines) == ["refused", "won"], results
    assert any(line == "won 11" for line in lines)
    [refusal] = [line for line in lines if line.startswith("refused")]
    assert f"run {key!r} is being resumed by another process (pid" in refusal
    assert "wait for that run to finish" in refusal
    assert len((tmp_path / "calls").read_text().split()) == 1  # the agent ran once
    # The winner's lease ended with its run: the run can be resumed again.
    app = cp.Graph().add("a", lambda x: x * 10).add("b", lambda x: x + 1, after="a")
    assert app.compile(store=store).resume(key) == 11


def test_a_second_resume_in_the_same_process_is_refused_until_the_run_ends(
        stores: Stores) -> None:
    release = threading.Event()
    calls = []

    def b(x):
        calls.append(x)
        if len(calls) == 1:
            raise RuntimeError("fails the first run")
        release.wait(30)
        return x

    app = cp.Graph().add("a", lambda x: x).add("b", b, after="a").compile(
        store=stores.location())
    key = app.run(1).run_key
    run = app.start_resumed(key)
    with pytest.raises(cp.StoreError, match=f"run '{key}' is being resumed by this process"):
        app.resume(key)
    release.set()
    assert run.result() == 1
    assert app.resume(key) == 1  # the lease ended with the run; nothing runs again
    assert len(calls) == 2


def test_the_checkpoint_writer_renews_the_lease_of_a_live_resumed_run(stores: Stores) -> None:
    release = threading.Event()
    calls = []

    def b(x):
        calls.append(x)
        if len(calls) == 1:
            raise RuntimeError("fails the first run")
        release.wait(30)
        return x

    store = stores.open()
    app = cp.Graph().add("a", lambda x: x).add("b", b, after="a").compile(store=store)
    key = app.run(1).run_key
    run = app.start_resumed(key)
    try:
        probe = _holder(2, "elsewhere", time.time(), time.time() + 1)
        first = store.acquire_lease(key, probe)
        assert first.pid == os.getpid()
        time.sleep(0.01)
        renew_leases(store)  # what the writer thread does every RENEW_SECONDS
        assert store.acquire_lease(key, probe).expires > first.expires
    finally:
        release.set()
    assert run.result() == 1
    assert store.acquire_lease(key, probe) == probe  # released at the run's end


def test_a_failed_resume_leaves_no_lease(stores: Stores) -> None:
    app = cp.Graph().add("a", lambda x: x).compile(store=stores.location())
    with pytest.raises(cp.StoreError, match="no run 'nope'"):
        app.resume("nope")
    with pytest.raises(cp.StoreError, match="no run 'nope'"):
        app.resume("nope")  # not "being resumed"


def _holder(pid: int, host: str, since: float, expires: float) -> LeaseHolder:
    return LeaseHolder(f"holder-{pid}-{since}", pid, host, since, expires)


def test_a_lapsed_lease_is_taken_over(stores: Stores) -> None:
    store = stores.open()
    app = cp.Graph().add("a", lambda x: x + 1).compile(store=store)
    key = app.run(1).run_key
    now = time.time()
    # A holder on another host, still within its lease: refused.
    alive = _holder(1, "elsewhere", now, now + LEASE_SECONDS)
    assert store.acquire_lease(key, alive) == alive
    with pytest.raises(cp.StoreError, match=r"another process \(pid 1 on elsewhere\)"):
        app.resume(key)
    # Its lease lapsed (it stopped renewing): taken over.
    store.release_lease(key, alive.id)
    lapsed = _holder(1, "elsewhere", now - 100, now - 1)
    assert store.acquire_lease(key, lapsed) == lapsed
    assert app.resume(key) == 2


def test_a_lease_of_a_dead_process_on_this_host_is_taken_over_at_once(stores: Stores) -> None:
    import socket

    store = stores.open()
    app = cp.Graph().add("a", lambda x: x + 1).compile(store=store)
    key = app.run(1).run_key
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, timeout=60, check=True)
    now = time.time()
    dead = _holder(int(gone.stdout), socket.gethostname(), now, now + LEASE_SECONDS)
    assert store.acquire_lease(key, dead) == dead
    assert app.resume(key) == 2


def test_leases_are_renewed_and_released(stores: Stores) -> None:
    store = stores.open()
    app = cp.Graph().add("a", lambda x: x).compile(store=store)
    key = app.run(1).run_key
    now = time.time()
    mine = _holder(os.getpid(), "here", now, now + 5)
    assert store.acquire_lease(key, mine) == mine
    assert store.renew_lease(key, mine.id, now + 50)
    other = _holder(2, "there", now, now + 5)
    assert store.acquire_lease(key, other).expires == now + 50  # still mine
    assert not store.renew_lease(key, other.id, now + 60)
    store.release_lease(key, other.id)  # not its lease: nothing happens
    assert store.acquire_lease(key, other).id == mine.id
    store.release_lease(key, mine.id)
    assert store.acquire_lease(key, other) == other
