"""batch(progress=True) and abatch(progress=True): a bar counting finished and failed
runs as they end (tqdm's when installed, a line on stderr otherwise)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap

import pytest

import counterpoint as cp
from counterpoint._graph import CompiledGraph


def _flaky(x: int) -> int:
    if x % 10 == 3:
        raise ValueError(f"bad input {x}")
    return x * 2


def _app(**compile_options):
    return cp.Graph().add("work", _flaky).compile(**compile_options)


def _run_child(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr
    return proc


def test_the_bar_counts_finished_and_failed_runs(capfd):
    results = _app().batch(range(30), progress=True, return_exceptions=True)
    assert sum(isinstance(r, cp.AgentError) for r in results) == 3
    err = capfd.readouterr().err
    assert "batch: 100%" in err and "30/30" in err
    assert "failed=3" in err


def test_a_string_is_the_bars_description(capfd):
    _app().batch([0, 1, 2, 4, 5], progress="tickets", max_concurrency=2)
    err = capfd.readouterr().err
    assert "tickets: 100%" in err and "5/5" in err
    assert "failed" not in err


def test_a_failing_batch_counts_every_run_before_it_raises(capfd):
    # Without return_exceptions the first failure is raised once every run has ended.
    with pytest.raises(cp.AgentError, match="bad input 3"):
        _app().batch(range(30), progress=True, max_concurrency=4)
    err = capfd.readouterr().err
    assert "30/30" in err and "failed=3" in err


def test_durable_batches_show_the_bar_too(tmp_path, capfd):
    app = _app(store=str(tmp_path / "runs.db"))
    results = app.batch(range(12), progress=True, return_exceptions=True)
    assert [isinstance(r, cp.AgentError) for r in results].count(True) == 1
    assert len(app.runs()) == 12
    err = capfd.readouterr().err
    assert "12/12" in err and "failed=1" in err


def test_the_plain_compiled_graph_batch_shows_the_bar(capfd):
    # What compile() returns without langchain-core; with it, a subclass with its own batch.
    CompiledGraph.batch(_app(), range(10), progress="plain", return_exceptions=True)
    err = capfd.readouterr().err
    assert "plain: 100%" in err and "10/10" in err and "failed=1" in err


def test_batches_with_a_runnable_config_show_the_bar(capfd):
    app = _app()
    if not hasattr(app, "with_config"):
        pytest.skip("langchain-core is not installed")
    app.batch(range(10), {"tags": ["nightly"]}, progress=True, return_exceptions=True)
    err = capfd.readouterr().err
    assert "10/10" in err and "failed=1" in err


def test_abatch_shows_the_bar(capfd):
    async def work(x):
        await asyncio.sleep(0.001)
        return _flaky(x)

    app = cp.Graph().add("work", work).compile()
    results = asyncio.run(app.abatch(range(20), progress="async", return_exceptions=True,
                                     max_concurrency=5))
    assert sum(isinstance(r, cp.AgentError) for r in results) == 2
    err = capfd.readouterr().err
    assert "async: 100%" in err and "20/20" in err and "failed=2" in err
    with pytest.raises(cp.AgentError, match="bad input"):
        asyncio.run(app.abatch(range(20), progress=True))
    assert "batch:" in capfd.readouterr().err


def test_no_bar_unless_asked(capfd):
    _app().batch(range(10), return_exceptions=True)
    asyncio.run(_app().abatch(range(10), return_exceptions=True))
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("progress", [1, "", "  ", ["bar"], 0.5])
def test_a_progress_that_is_not_a_flag_or_a_description_is_refused(progress):
    app = _app()
    with pytest.raises(ValueError, match=r"progress must be True .*, a non-empty string .* "
                                         r"or False, got "):
        app.batch([1], progress=progress)
    with pytest.raises(ValueError, match="progress must be True"):
        asyncio.run(app.abatch([1], progress=progress))


def test_the_bar_moves_as_runs_end():
    # Each run's end shows at once (tqdm redrawing on every update): the last run of
    # each batch ends only after the bar has shown the nine others, one of them failed.
    proc = _run_child(
        """
        import asyncio, io, sys, time
        import counterpoint as cp

        shown = io.StringIO()
        sys.stderr = shown  # the bar writes to sys.stderr as it is when the bar opens

        def bar_shows_the_others():
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if any("9/10" in line and "failed=1" in line
                       for line in shown.getvalue().split("\\r")):
                    return True
                time.sleep(0.005)
            return False

        def work(x):
            if x == 3:
                raise ValueError(x)
            return bar_shows_the_others() if x == 9 else x

        async def awork(x):
            if x == 3:
                raise ValueError(x)
            if x < 9:
                return x
            return await asyncio.to_thread(bar_shows_the_others)

        # On the pool: the last run's wait must not hold an engine thread the others need.
        results = cp.Graph().add("work", work, dispatch="thread").compile().batch(
            range(10), progress=True, return_exceptions=True)
        print(results[9])
        shown.seek(0)
        shown.truncate()
        results = asyncio.run(cp.Graph().add("work", awork).compile().abatch(
            range(10), progress=True, return_exceptions=True))
        print(results[9])
        """,
        TQDM_MININTERVAL="0", TQDM_MINITERS="1")
    assert proc.stdout.split() == ["True", "True"]


def test_without_tqdm_a_line_on_stderr_counts_the_runs():
    # sys.modules["tqdm"] = None: find_spec() and import both see tqdm as absent.
    proc = _run_child(
        """
        import asyncio, sys
        sys.modules["tqdm"] = None
        import counterpoint as cp

        def work(x):
            if x % 10 == 3:
                raise ValueError(x)
            return x

        app = cp.Graph().add("work", work).compile()
        app.batch(range(30), progress=True, return_exceptions=True)
        asyncio.run(app.abatch(range(10), progress="again", return_exceptions=True))
        print(sorted(m for m, module in sys.modules.items()
                     if m.startswith("tqdm") and module is not None))
        """)
    assert proc.stdout.strip() == "[]"
    # The line is redrawn after a carriage return (a newline here, in text mode).
    lines = [line for line in proc.stderr.splitlines() if line]
    assert lines[0] == "batch: 0/30 runs"
    assert "batch: 30/30 runs, 3 failed" in lines
    assert lines[-1] == "again: 10/10 runs, 1 failed"
