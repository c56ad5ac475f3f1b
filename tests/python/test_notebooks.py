"""The notebooks run top to bottom in a real Jupyter kernel (nbclient), as a user would,
and the observability notebook's outputs hold its pictures."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))
OBSERVABILITY = Path(__file__).parents[2] / "notebooks" / "observability.ipynb"
SVG = "image/svg+xml"
HTML = "text/html"

Executed = tuple[Any, Path]  # the executed notebook, and the directory it ran in


@pytest.fixture(scope="module")
def execute(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], Executed]:
    """Runs a notebook once for this module, in a directory of its own."""
    executed: dict[Path, Executed] = {}

    def run(path: Path) -> Executed:
        if path not in executed:
            notebook = nbformat.read(path, as_version=4)
            workdir = tmp_path_factory.mktemp(path.stem)
            # Each cell gets its own timeout: a hang fails the test instead of stalling CI.
            client = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                                             resources={"metadata": {"path": str(workdir)}})
            client.execute()
            executed[path] = (notebook, workdir)
        return executed[path]

    return run


def code_cells(notebook: Any) -> list[Any]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def shown(notebook: Any, expression: str) -> dict[str, Any]:
    """What the code cell ending in ``expression`` shows as its value (a MIME bundle)."""
    cells = [cell for cell in code_cells(notebook)
             if cell.source.strip().splitlines()[-1] == expression]
    assert len(cells) == 1, f"expected one cell ending in {expression!r}, found {len(cells)}"
    results = [output for output in cells[0].outputs if output.output_type == "execute_result"]
    assert results, f"the cell ending in {expression!r} shows nothing"
    return dict(results[0].data)


def svg_of(bundle: dict[str, Any]) -> ET.Element:
    """The SVG picture of a MIME bundle, parsed (it must be well-formed XML)."""
    assert SVG in bundle, f"no {SVG} among {sorted(bundle)}"
    svg = ET.fromstring(bundle[SVG])
    assert svg.tag.endswith("svg")
    assert "<svg" in bundle[HTML]  # shown inline in front ends that prefer HTML too
    return svg


@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs(path: Path, execute: Callable[[Path], Executed]) -> None:
    notebook, _ = execute(path)
    errors = [output for cell in code_cells(notebook) for output in cell.get("outputs", [])
              if output.get("output_type") == "error"]
    assert not errors
    printed = "".join(output.get("text", "") for cell in code_cells(notebook)
                      for output in cell.get("outputs", []))
    assert printed  # the cells printed what they show


@pytest.mark.timeout(300)
def test_observability_notebook_shows_pictures(execute: Callable[[Path], Executed]) -> None:
    notebook, workdir = execute(OBSERVABILITY)
    graph = svg_of(shown(notebook, "app"))
    assert "classify" in ET.tostring(graph, encoding="unicode")
    svg_of(shown(notebook, "resilient_app"))
    for timeline in ("run.timeline()", "resilient_run.timeline()"):
        svg_of(shown(notebook, timeline))
    assert "<table" in shown(notebook, "run")[HTML]  # the run as a table
    assert "<table" in shown(notebook, "run.critical_path()")[HTML]

    trace = json.loads((workdir / "customer_message_trace.json").read_text(encoding="utf-8"))
    tracks = {event["args"]["name"] for event in trace["traceEvents"]
              if event["name"] == "thread_name"}
    assert {"classify", "address", "promotions", "reply"} <= tracks


def test_observability_notebook_is_kept_with_its_outputs() -> None:
    """The committed notebook carries its executed outputs, so that it shows its pictures
    where it is read without running it (on GitHub, say)."""
    notebook = nbformat.read(OBSERVABILITY, as_version=4)
    svg_of(shown(notebook, "app"))
    svg_of(shown(notebook, "run.timeline()"))
