"""What a run streams: the stream modes, and the data agents publish while they run.

A run records one ordered queue of native events. Each stream mode is a view of it:
``"events"`` every agent event, ``"updates"`` the finishes, ``"custom"`` and
``"messages"`` what agents publish themselves (``emit``, a chat model's chunks), and
``"values"`` the run's result. Modes that were not asked for cost nothing: a run records
only the kinds of event the requested modes read (``"updates"`` alone: the finishes,
taken as ``{agent: output}`` dicts made natively), and agents get a channel to publish
on only when ``"custom"`` or ``"messages"`` is streamed.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any

from ._events import Event
from ._native import _core

STREAM_MODES = ("values", "updates", "events", "custom", "messages")

# What a native event is; agents' own events are EVENT_KIND.custom and .message.
EVENT_KIND = _core.EventKind
# The kinds of event each mode reads: a run records those of the requested modes only.
_RECORDED_KINDS: dict[str, tuple[Any, ...]] = {
    "values": (),
    "updates": (EVENT_KIND.finish,),
    "events": (EVENT_KIND.start, EVENT_KIND.finish, EVENT_KIND.error, EVENT_KIND.cancel,
               EVENT_KIND.skip, EVENT_KIND.review, EVENT_KIND.input),
    "custom": (EVENT_KIND.custom,),
    "messages": (EVENT_KIND.message,),
}
# The channel of the agent call whose code is running, while its run streams "custom"
# or "messages"; None everywhere else.
_channel: ContextVar[Any] = ContextVar("counterpoint_agent_channel", default=None)


def emit(data: Any) -> bool:
    """Sends ``data`` to whoever streams the run with ``stream_mode="custom"``.

    Call it from inside an agent (sync or ``async def``, at any depth of nested graphs
    and patterns). It is a no-op, returning False, when nobody streams custom data:
    agents can call it unconditionally.

    Returns:
        True if the data was recorded for the stream.
    """
    channel = _channel.get()
    if channel is None:
        return False
    return bool(channel.publish(EVENT_KIND.custom, data))


class StreamModes:
    """A validated ``stream_mode`` argument: one mode (chunks yielded as they are) or a
    list of modes (``(mode, chunk)`` pairs)."""

    __slots__ = ("batches_are_chunks", "ends_with_chunks", "form", "modes", "publishes",
                 "recorded", "records_events", "single")

    def __init__(self, stream_mode: str | Sequence[str]) -> None:
        if isinstance(stream_mode, str):
            requested = [stream_mode]
            self.single: str | None = stream_mode
        elif isinstance(stream_mode, Sequence) and stream_mode:
            requested = list(stream_mode)
            self.single = None
        else:
            raise ValueError(
                f"stream_mode must be one of {', '.join(map(repr, STREAM_MODES))} or a "
                f"non-empty list of them, got {stream_mode!r}"
            )
        for mode in requested:
            if mode not in STREAM_MODES:
                raise ValueError(
                    f"unknown stream_mode {mode!r}; use one of "
                    f"{', '.join(map(repr, STREAM_MODES))}, or a list of them"
                )
        self.modes = frozenset(requested)
        # What the run records, and how the stream takes it: "updates" alone as the
        # engine makes them ({agent: output}, with no Event in between).
        self.recorded = _recorded_kinds(self.modes)
        # Whether the run must record events (only "values" needs none), and whether
        # agents publish events of their own ("custom", "messages").
        self.records_events: bool = not self.recorded.none
        self.publishes: bool = "custom" in self.modes or "messages" in self.modes
        self.form = _core.EventForm.update if self.single == "updates" else _core.EventForm.event
        # One of these modes alone: the batches the engine hands over hold the chunks
        # themselves (the run records none of the agents' own events).
        self.batches_are_chunks = self.single in ("events", "updates")
        # Whether a run that succeeded ends with chunks of its own (see end()).
        self.ends_with_chunks = "events" in self.modes or "values" in self.modes


    @staticmethod
    def of(stream_mode: str | Sequence[str]) -> StreamModes:
        """``StreamModes(stream_mode)``, made once per mode named alone: validating the
        argument again each stream costs as much as a run of a few no-op agents."""
        if isinstance(stream_mode, str):
            known = _SINGLE_MODES.get(stream_mode)
            if known is not None:
                return known
        return StreamModes(stream_mode)

    def chunk(self, mode: str, data: Any) -> Any:
        return data if self.single is not None else (mode, data)

    def chunks(self, events: Iterable[Event]) -> Iterator[Any]:
        """The chunks a batch of the run's events makes in the requested modes (the
        batch itself when :attr:`batches_are_chunks`)."""
        modes = self.modes
        for event in events:
            kind = event.kind
            if kind == "custom":
                if "custom" in modes:
                    yield self.chunk("custom", event.output)
            elif kind == "message":
                if "messages" in modes:
                    message, metadata = event.output
                    yield self.chunk("messages",
                                     (message, {**metadata, "run_id": event.run_id}))
            else:
                if "events" in modes:
                    yield self.chunk("events", event)
                if kind == "finish" and "updates" in modes:
                    yield self.chunk("updates", {event.agent: event.output})

    def end(self, end: Event) -> list[Any]:
        """The chunks that close a run that succeeded, from its ``"end"`` event."""
        chunks = []
        if "events" in self.modes:
            chunks.append(self.chunk("events", end))
        if "values" in self.modes:
            chunks.append(self.chunk("values", end.output))
        return chunks


@functools.cache
def _recorded_kinds(modes: frozenset[str]) -> Any:
    return _core.EventKinds([kind for mode in modes for kind in _RECORDED_KINDS[mode]])


_SINGLE_MODES = {mode: StreamModes(mode) for mode in STREAM_MODES}


class AgentObserver:
    """Told of every agent call of a run, at any depth, on whichever thread runs it.

    ``agent_started(call)`` runs (with the GIL) before the agent's body: context
    variables it sets in ``call.context`` are seen by the body. ``agent_ended(call)``,
    for subclasses that define it, runs once the call's outcome is known
    (``call.status``, ``output``, ``error``), before the run uses it; an observer
    without one costs its runs nothing at each agent's end. Neither may block, and
    exceptions they raise are reported as unraisable and otherwise ignored: an observer
    cannot change a run.

    This base gives each agent call its channel for :func:`emit` when ``publish`` is set.
    """

    def __init__(self, *, publish: bool = True) -> None:
        self.publish = publish

    def agent_started(self, call: Any) -> None:
        if self.publish:
            call.context.run(_channel.set, call.channel)
