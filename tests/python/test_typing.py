"""The installed package is typed (py.typed, _core.pyi): mypy catches user mistakes.

mypy runs in a subprocess, with the interpreter running the tests, over two small user
programs: one with deliberate mistakes (each line marked ``# E`` must be reported, and no
other line), and a correct one that must pass ``--strict``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="mypy is in the test extra: pip install '.[test]'")

MISTAKES = textwrap.dedent(
    """\
    import counterpoint as cp


    def double(x: int) -> int:
        return 2 * x


    g = cp.Graph()
    g.add("x", double, after=3)  # E
    g.add("y", double, after="x", priority="high")  # E
    g.add("z", double, after="y", retry=cp.Retry(max_attempts="3"))  # E
    g.add("w", double, after="z", timeout="10s")  # E
    g.add("v", double, after="w", limits=cp.Limit(max_concurrent=2.5, per_second="x"))  # E
    app = g.compile(budget=10)  # E
    app.invoke()  # E
    app.invoke(1, deadline="soon")  # E
    cp.Graph().add(double)  # E
    """
)

CORRECT = textwrap.dedent(
    """\
    from __future__ import annotations

    import asyncio
    from typing import Any

    import counterpoint as cp


    def classify(message: str) -> dict[str, Any]:
        return {"text": message, "intents": ["billing"]}


    async def billing(ticket: dict[str, Any]) -> str:
        await asyncio.sleep(0)
        return "refund issued"


    def build() -> cp.CompiledGraph:
        g = cp.Graph()
        g.add("classify", classify)
        g.add(
            "billing",
            billing,
            after="classify",
            priority=10,
            retry=cp.Retry(max_attempts=3, initial_backoff=0.1),
            timeout=5.0,
            breaker=cp.CircuitBreaker(),
            limits=[cp.Limit(max_concurrent=4)],
        )
        return g.compile()


    def main() -> None:
        app = build()
        result: Any = app.invoke("I was charged twice")
        print(result, cp.__version__)
        for event in app.stream("again", stream_mode="events"):
            print(event.kind, event.agent, event.time)


    async def amain() -> None:
        print(await build().ainvoke("hello"))
    """
)


def _mypy(tmp_path: Path, source: str) -> tuple[int, dict[int, list[str]]]:
    path = tmp_path / "user_code.py"
    path.write_text(source)
    proc = subprocess.run(
        [
            sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
            "--cache-dir", str(tmp_path / "cache"), "--python-version", "3.10",
            "--hide-error-context", "--no-pretty", str(path),
        ],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    errors: dict[int, list[str]] = {}
    for line in proc.stdout.splitlines():
        found = re.match(r".*user_code\.py:(\d+): error: (.*)", line)
        if found:
            errors.setdefault(int(found[1]), []).append(found[2])
    assert not proc.stderr.strip() or proc.returncode in (0, 1), proc.stderr
    return proc.returncode, errors


@pytest.mark.timeout(600)
def test_mypy_reports_each_mistake(tmp_path: Path) -> None:
    status, errors = _mypy(tmp_path, MISTAKES)
    lines = MISTAKES.splitlines()
    expected = {n for n, text in enumerate(lines, 1) if text.rstrip().endswith("# E")}
    missed = {n: lines[n - 1] for n in sorted(expected - errors.keys())}
    unexpected = {n: errors[n] for n in sorted(errors.keys() - expected)}
    assert status == 1
    assert not missed, f"mypy did not report these mistakes: {missed}"
    assert not unexpected, f"mypy reported correct lines: {unexpected}"


@pytest.mark.timeout(600)
def test_correct_code_passes_strict(tmp_path: Path) -> None:
    status, errors = _mypy(tmp_path, CORRECT)
    assert errors == {} and status == 0, errors


@pytest.mark.timeout(600)
def test_package_ships_type_information() -> None:
    import counterpoint

    package = Path(counterpoint.__file__).parent
    assert (package / "py.typed").is_file()
    assert (package / "_core.pyi").is_file()
