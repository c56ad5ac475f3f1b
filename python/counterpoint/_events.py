"""Events a run reports while it executes: :class:`Event`, a native type.

A stream yields one per agent start and finish; the engine makes thousands a second, so
an event keeps the engine's own fields and makes each Python value when it is first
read (see cpp/bindings/event_type.hpp). It behaves as the frozen dataclass it replaced:
fields by keyword or position, equality, hashing, ``repr``, pickling, ``match``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._native import _core

if TYPE_CHECKING:

    class Event:
        """Something that happened to one agent of one run (see ``_core.Event``'s doc)."""

        __match_args__ = ("kind", "agent", "run_id", "time", "output", "error", "message",
                          "priority", "attempt", "delay")

        def __init__(self, kind: str, agent: str | None, run_id: int, time: float,
                     output: Any = None, error: BaseException | None = None,
                     message: str = "", priority: int = 0, attempt: int = 0,
                     delay: float = 0.0) -> None: ...

        @property
        def kind(self) -> str: ...
        @property
        def agent(self) -> str | None: ...
        @property
        def run_id(self) -> int: ...
        @property
        def time(self) -> float: ...
        @property
        def output(self) -> Any: ...
        @property
        def error(self) -> BaseException | None: ...
        @property
        def message(self) -> str: ...
        @property
        def priority(self) -> int: ...
        @property
        def attempt(self) -> int: ...
        @property
        def delay(self) -> float: ...

else:
    Event = _core.Event
