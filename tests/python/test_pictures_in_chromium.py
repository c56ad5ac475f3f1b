"""The pictures counterpoint draws, rendered offline in real headless Chromium: each
screenshot must show something.

With COUNTERPOINT_DOC_PICTURES=1 the screenshots are also copied into docs/images/,
which is how the pictures in the docs are made.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from chromium import is_blank, requires_chromium, screenshot, write_page

import counterpoint as cp

pytestmark = requires_chromium

DOC_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


def _keep_for_docs(png: Path, name: str) -> None:
    if os.environ.get("COUNTERPOINT_DOC_PICTURES") == "1":
        DOC_IMAGES.mkdir(exist_ok=True)
        shutil.copyfile(png, DOC_IMAGES / name)


def _customer_message_run(store: Path) -> cp.RunResult:
    """A support message triaged to two agents: the address change succeeds on its
    second attempt, the refund is refused, the reply waits for a human's review."""
    address_calls: list[str] = []

    def triage(message: str) -> object:
        time.sleep(0.02)
        return cp.route(message, ["address", "refund"])

    def address(message: str) -> cp.Result:
        address_calls.append(message)
        time.sleep(0.05)
        if len(address_calls) == 1:
            raise ConnectionError("the address service did not answer")
        return cp.Result({"street": "12 Rue des Lilas", "city": "Lyon"}, confidence=0.97,
                         usage={"tokens": 412, "cost": 0.0021})

    def refund(message: str) -> None:
        time.sleep(0.05)
        raise PermissionError("a refund of 240.00 EUR is above this agent's limit of 100.00 EUR")

    def reply(changes: object) -> cp.Result:
        time.sleep(0.08)
        return cp.Result("Dear Ms Martin, your address is now 12 Rue des Lilas, Lyon.",
                         confidence=0.62, usage={"tokens": 958, "cost": 0.0048})

    app = (cp.Graph(on_error="continue")
           .add("triage", triage)
           .add("address", address, after="triage",
                retry=cp.Retry(max_attempts=3, initial_backoff=0.02))
           .add("refund", refund, after="triage")
           .add("shipping", lambda message: "rescheduled", after="triage")
           .add("reply", reply, after="address", review=cp.Review(below=0.7))
           .add("send", lambda text: "sent", after="reply")
           .compile(store=str(store)))
    return app.run("I moved to 12 Rue des Lilas, Lyon. Please refund order 1182.")


def test_a_blank_page_is_told_apart(tmp_path):
    png = screenshot(write_page(tmp_path / "blank.html", ""), tmp_path / "blank.png", 400, 200)
    assert is_blank(png)


def test_the_run_table_renders(tmp_path):
    result = _customer_message_run(tmp_path / "runs.db")
    assert result.status == "needs_review"
    page = write_page(tmp_path / "run.html", result._repr_html_())
    png = screenshot(page, tmp_path / "run-table.png", 1100, 320)
    assert not is_blank(png)
    _keep_for_docs(png, "run-table.png")


def test_the_graph_picture_renders(tmp_path):
    from test_graph_picture import every_pattern_app

    picture = every_pattern_app().draw()
    page = tmp_path / "graph.html"
    picture.save(page)
    png = screenshot(page, tmp_path / "graph.png", int(picture.width) + 40,
                     int(picture.height) + 40)
    assert not is_blank(png)
    _keep_for_docs(png, "graph.png")


def test_the_timeline_renders(tmp_path):
    result = _customer_message_run(tmp_path / "runs.db")
    picture = result.timeline()
    assert {span.kind for span in picture.timeline.spans} >= {"attempt", "backoff"}
    page = tmp_path / "timeline.html"
    picture.save(page)
    png = screenshot(page, tmp_path / "timeline.png", 1100, 420)
    assert not is_blank(png)
    _keep_for_docs(png, "timeline.png")


def test_a_200_agent_timeline_renders(tmp_path):
    g = cp.Graph().add("plan", lambda x: x)
    for i in range(200):
        g.add(f"worker_{i:03d}", lambda x: x, after="plan")
    picture = g.compile().run(1).timeline()
    assert len(picture.timeline.lanes) == 201
    page = tmp_path / "wide.html"
    picture.save(page)
    png = screenshot(page, tmp_path / "wide.png", 1100, 800)
    assert not is_blank(png)
