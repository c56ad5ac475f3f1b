"""Durable runs stopped by Ctrl-C or by interpreter exit are stored as "interrupted" and
listed for resume; a run cancelled on purpose stays "cancelled". Each scenario runs in a
subprocess with a timeout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import counterpoint as cp

GRAPH = textwrap.dedent(
    """
    import os, sys, time
    import counterpoint as cp

    def log(line):
        with open(os.environ["AGENT_LOG"], "a") as f:
            f.write(line + "\\n")

    def first(x):
        log("first")
        return f"first({x})"

    def slow(x):
        log("slow started")
        if os.environ.get("SLOW_BLOCKS") == "1":
            time.sleep(60)  # interrupted here
        log("slow finished")
        return f"slow({x})"

    def build(store):
        return (
            cp.Graph()
            .add("first", first)
            .add("slow", slow, after="first", dispatch="thread")
            .compile(store=store)
        )
    """
)


@pytest.fixture
def env(tmp_path):
    (tmp_path / "graph_module.py").write_text(GRAPH)
    log = tmp_path / "agents.log"
    log.write_text("")
    environ = dict(os.environ, AGENT_LOG=str(log), SLOW_BLOCKS="1",
                   COUNTERPOINT_EXIT_DRAIN_SECONDS="0.3",
                   PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]))
    return tmp_path, log, environ


def _wait_for(log, line, proc, seconds=30.0):
    deadline = time.monotonic() + seconds
    while line not in log.read_text().splitlines():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)


def _resume_in_process(tmp_path, log, store, key):
    """Resumes ``key`` in a fresh process (agents no longer block); returns its report."""
    code = textwrap.dedent(
        f"""
        import json
        import graph_module
        app = graph_module.build({str(store)!r})
        listed = [s.run_key for s in app.runs("interrupted")]
        record = app.start_resumed({key!r}).record()
        print(json.dumps({{"listed": listed, "status": record.status, "output": record.output,
                          "restored": sorted(n for n, o in record.agents.items() if o.restored),
                          "after": app.store.load_run({key!r}).status}}))
        """
    )
    environ = dict(os.environ, AGENT_LOG=str(log),
                   PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=environ)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _stored_status(stores, key):
    opened = stores.open()
    try:
        return opened.load_run(key).status
    finally:
        opened.close()


def test_normal_exit_with_a_run_in_flight_stores_it_as_interrupted(env, stores):
    tmp_path, log, environ = env
    store = stores.location()
    code = textwrap.dedent(
        f"""
        import graph_module, os, time
        app = graph_module.build({str(store)!r})
        run = app.start("x")
        print(run.run_key, flush=True)
        while "slow started" not in open(os.environ["AGENT_LOG"]).read():
            time.sleep(0.01)
        # the script ends here, with the run in flight
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=environ)
    assert proc.returncode == 0, proc.stderr
    key = proc.stdout.split()[0]
    assert _stored_status(stores, key) == "interrupted"

    report = _resume_in_process(tmp_path, log, store, key)
    assert report["listed"] == [key]
    assert report["status"] == "succeeded"
    assert report["output"] == "slow(first(x))"
    assert report["restored"] == ["first"]
    assert report["after"] == "succeeded"
    assert log.read_text().splitlines().count("first") == 1  # finished agents never rerun


@pytest.mark.parametrize("caught", [False, True], ids=["uncaught", "caught"])
def test_ctrl_c_during_invoke_stores_the_run_as_interrupted(env, caught, stores):
    tmp_path, log, environ = env
    store = stores.location()
    body = "app.invoke('x')"
    if caught:  # a notebook: the kernel catches KeyboardInterrupt and carries on
        body = textwrap.dedent(
            """
            try:
                app.invoke('x')
            except KeyboardInterrupt:
                print("caught", flush=True)
            print("listed", [s.run_key for s in app.runs("interrupted")], flush=True)
            """
        )
    code = textwrap.dedent(
        f"""
        import graph_module
        app = graph_module.build({str(store)!r})
        """
    ) + body
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=environ)
    try:
        _wait_for(log, "slow started", proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    if caught:
        assert proc.returncode == 0, err
        assert "caught" in out
    else:
        assert "KeyboardInterrupt" in err
    opened = stores.open()
    try:
        (summary,) = opened.runs()
    finally:
        opened.close()
    assert summary.status == "interrupted"
    if caught:
        assert f"listed ['{summary.run_key}']" in out

    report = _resume_in_process(tmp_path, log, store, summary.run_key)
    assert report["listed"] == [summary.run_key]
    assert report["status"] == "succeeded"
    assert report["restored"] == ["first"]


def test_a_deliberate_cancel_stays_cancelled_and_is_not_listed(stores):
    release = threading.Event()

    def slow(x):
        release.wait(10)
        return x

    app = cp.Graph().add("slow", slow, dispatch="thread").compile(store=stores.location())
    run = app.start(1)
    assert run.cancel()
    release.set()
    assert run.wait(10)
    assert app.store.load_run(run.run_key).status == "cancelled"
    assert app.runs("interrupted") == []
    assert [s.run_key for s in app.runs("cancelled")] == [run.run_key]


def test_runs_accepts_several_statuses(stores):
    app = cp.Graph().add("a", lambda x: x).compile(store=stores.location())
    done = app.run(1)
    app.store.set_status(done.run_key, "interrupted")
    other = app.run(2)
    listed = {s.run_key for s in app.runs(["interrupted", "running"])}
    assert listed == {done.run_key}
    assert {s.run_key for s in app.runs(("interrupted", "succeeded"))} == {
        done.run_key, other.run_key}
    with pytest.raises(ValueError, match="status"):
        app.runs([])
