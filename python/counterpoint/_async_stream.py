"""What ``CompiledGraph.astream`` returns for a run whose events it streams.

A native ``_core.AsyncChunks`` hands out each batch's chunks straight from ``__anext__``
(an async generator cost each chunk a frame resumption and a StopIteration, as much as
making the chunk did); this class refills it, once per batch, and ends the run with it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from ._loops import bridge_for_running_loop
from ._native import _core


class AsyncStream:
    """One run streamed to ``async for``: started at the first chunk asked for, on the
    caller's running loop; cancelled if the iterator is closed or dropped before its end.

    Args:
        launch: ``launch(dispatcher) -> (handle, run)`` starts the run with coroutine
            agents on the loop of ``dispatcher``; ``run`` is the ``Run`` of a durable,
            observed or traced run (None for a plain one).
        modes: The ``StreamModes`` streamed.
        end_chunks: ``end_chunks(handle, run, modes)``, the chunks after the last batch
            (or it raises what ``invoke`` would).
    """

    def __init__(self, launch: Callable[[Any], tuple[Any, Any]], modes: Any,
                 end_chunks: Callable[[Any, Any, Any], list[Any]]) -> None:
        self._launch = launch
        self._modes = modes
        self._end_chunks = end_chunks
        self._handle: Any = None
        self._run: Any = None
        self._bridge: Any = None
        self._ready: Any = None  # asyncio.Event: the run recorded events, or ended
        self._more = True        # the run has events still to come
        self._ended = False      # the end chunks were handed over
        self._closed = False

    def chunks(self) -> AsyncIterator[Any]:
        return _core.AsyncChunks(self._refill, self._close)  # type: ignore[no-any-return]

    async def _refill(self, chunks: Any) -> Any:
        """The next chunk, once ``chunks`` ran out of them: waits for the run's next
        events and hands them over; raises StopAsyncIteration after the last."""
        if self._closed:
            raise StopAsyncIteration
        try:
            if self._handle is None:
                await self._start()
            modes = self._modes
            while self._more:
                self._ready.clear()
                events = self._handle.next_events(0.0, 0.0, modes.form)
                self._more = events.more
                first = chunks.take(events if modes.batches_are_chunks else modes.chunks(events))
                if first is not chunks:
                    return first
                if self._more:
                    await self._ready.wait()
            if not self._ended:
                self._ended = True
                first = chunks.take(self._end_chunks(self._handle, self._run, modes))
                if first is not chunks:
                    return first
            raise StopAsyncIteration
        except BaseException:
            # The end (StopAsyncIteration), an agent's failure, or the caller's task
            # cancelled while it waited: the run ends with the stream.
            self._close()
            raise

    async def _start(self) -> None:
        self._bridge = bridge_for_running_loop()
        self._handle, self._run = self._launch(self._bridge.dispatcher)
        run_id = self._handle.id
        if self._modes.records_events:
            self._ready = self._bridge.events_ready(run_id)
            # Nothing to take yet, and the agents want the GIL this task holds: the first
            # events come when the loop is told of them, or of the run's end.
            await self._ready.wait()
        else:
            self._more = False
            finished = self._bridge.run_finished(run_id)
            self._bridge.drain()  # coroutine entries were queued by the start itself
            if not self._handle.done:
                await finished

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        handle = self._handle
        if handle is None:
            return  # never started
        if not handle.done:
            handle.cancel()
        self._bridge.forget(handle.id)
        if self._run is not None:
            self._run._end_trace()
