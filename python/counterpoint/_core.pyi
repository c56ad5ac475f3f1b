# Generated from the built extension by scripts/gen_core_stubs.py: do not edit.
# CI fails when this file and the module differ (scripts/lint.sh).
"""
counterpoint's native engine (private; use the `counterpoint` package)
"""
from __future__ import annotations
import collections.abc
from counterpoint import Event
import enum
import typing
__all__: list[str] = ['Agent', 'AgentRecord', 'AsyncAgent', 'AsyncCall', 'AsyncChunks', 'CheckpointHook', 'CheckpointWork', 'CircuitBreaker', 'CompiledGraph', 'DEFAULT_BATCH_WINDOW', 'Delegation', 'Dispatch', 'EngineError', 'ErrorMode', 'Event', 'EventBatch', 'EventChannel', 'EventForm', 'EventKind', 'EventKinds', 'Failed', 'FailureInfo', 'FailureKind', 'FutureAgent', 'InContext', 'InvalidGraph', 'JoinMode', 'Limiter', 'LoopDispatcher', 'LoopWork', 'NodeHook', 'NodeSpec', 'NodeStatus', 'ObservedCall', 'PendingCheckpoint', 'PendingReview', 'PolicySpec', 'Restored', 'RetrySpec', 'RetryTimeouts', 'ReviewSpec', 'ReviewVerdict', 'Routed', 'RunEnd', 'RunHandle', 'RunReport', 'RunRequest', 'RunStatus', 'StartedStream', 'Stream', 'SubgraphAgent', 'SyncAgent', 'batch', 'invoke', 'mark_engine_loop_thread', 'refuse_wait_here', 'set_confidence_reader', 'set_interrupt_type', 'set_result_type', 'shutdown', 'start', 'start_run', 'start_stream', 'stats', 'stream', 'tbb_compiled_interface_version', 'tbb_runtime_interface_version', 'tbb_runtime_version']
class RunStatus(enum.Enum):
    """
    How a run stands or ended.
    """
    cancelled: typing.ClassVar[RunStatus]
    failed: typing.ClassVar[RunStatus]
    interrupted: typing.ClassVar[RunStatus]
    needs_input: typing.ClassVar[RunStatus]
    needs_review: typing.ClassVar[RunStatus]
    running: typing.ClassVar[RunStatus]
    succeeded: typing.ClassVar[RunStatus]
    timed_out: typing.ClassVar[RunStatus]
    @classmethod
    def __new__(cls, value):
        ...
class NodeStatus(enum.Enum):
    """
    How one agent of a run stands or ended.
    """
    cancelled: typing.ClassVar[NodeStatus]
    failed: typing.ClassVar[NodeStatus]
    needs_input: typing.ClassVar[NodeStatus]
    needs_review: typing.ClassVar[NodeStatus]
    not_started: typing.ClassVar[NodeStatus]
    running: typing.ClassVar[NodeStatus]
    skipped: typing.ClassVar[NodeStatus]
    succeeded: typing.ClassVar[NodeStatus]
    timed_out: typing.ClassVar[NodeStatus]
    @classmethod
    def __new__(cls, value):
        ...
class FailureKind(enum.Enum):
    """
    Why an agent failed.
    """
    budget: typing.ClassVar[FailureKind]
    circuit_open: typing.ClassVar[FailureKind]
    error: typing.ClassVar[FailureKind]
    rejected: typing.ClassVar[FailureKind]
    timeout: typing.ClassVar[FailureKind]
    @classmethod
    def __new__(cls, value):
        ...
class EventKind(enum.Enum):
    """
    What happened to an agent.
    """
    attempt: typing.ClassVar[EventKind]
    cancel: typing.ClassVar[EventKind]
    custom: typing.ClassVar[EventKind]
    error: typing.ClassVar[EventKind]
    fallback: typing.ClassVar[EventKind]
    finish: typing.ClassVar[EventKind]
    input: typing.ClassVar[EventKind]
    message: typing.ClassVar[EventKind]
    queued: typing.ClassVar[EventKind]
    retry: typing.ClassVar[EventKind]
    review: typing.ClassVar[EventKind]
    reviewing: typing.ClassVar[EventKind]
    skip: typing.ClassVar[EventKind]
    start: typing.ClassVar[EventKind]
    @classmethod
    def __new__(cls, value):
        ...
class JoinMode(enum.Enum):
    """
    When an agent with several predecessors runs.
    """
    all: typing.ClassVar[JoinMode]
    any: typing.ClassVar[JoinMode]
    available: typing.ClassVar[JoinMode]
    settled: typing.ClassVar[JoinMode]
    @classmethod
    def __new__(cls, value):
        ...
class ErrorMode(enum.Enum):
    """
    What an agent's failure does to its run.
    """
    continue_run: typing.ClassVar[ErrorMode]
    fail_run: typing.ClassVar[ErrorMode]
    inherit: typing.ClassVar[ErrorMode]
    @classmethod
    def __new__(cls, value):
        ...
class Dispatch(enum.Enum):
    """
    Where a plain callable runs.
    """
    auto: typing.ClassVar[Dispatch]
    inline: typing.ClassVar[Dispatch]
    thread: typing.ClassVar[Dispatch]
    @classmethod
    def __new__(cls, value):
        ...
class FailureInfo:
    """
    Why an agent failed.
    """
    @property
    def error(self) -> typing.Any:
        ...
    @property
    def kind(self) -> FailureKind:
        ...
    @property
    def message(self) -> str:
        ...
class PendingReview:
    """
    An agent output awaiting a human decision.
    """
    @property
    def agent(self) -> str:
        ...
    @property
    def confidence(self) -> float | None:
        ...
    @property
    def output(self) -> typing.Any:
        ...
    @property
    def reason(self) -> str:
        ...
class RunReport:
    """
    How a finished run ended.
    """
    @property
    def budget_exhausted(self) -> bool:
        ...
    @property
    def failed_agent(self) -> str | None:
        ...
    @property
    def failure(self) -> FailureInfo | None:
        ...
    @property
    def ok(self) -> bool:
        ...
    @property
    def output(self) -> typing.Any:
        ...
    @property
    def outputs(self) -> typing.Any:
        ...
    @property
    def pending(self) -> list[PendingReview]:
        ...
    @property
    def run_id(self) -> int:
        ...
    @property
    def status(self) -> RunStatus:
        ...
    @property
    def usage(self) -> typing.Any:
        ...
class AgentRecord:
    """
    How one agent of a run ended.
    """
    @property
    def confidence(self) -> float | None:
        ...
    @property
    def failure(self) -> FailureInfo | None:
        ...
    @property
    def finished(self) -> float | None:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def output(self) -> typing.Any:
        ...
    @property
    def reason(self) -> str:
        ...
    @property
    def restored(self) -> bool:
        ...
    @property
    def routes(self) -> list[str]:
        ...
    @property
    def started(self) -> float | None:
        ...
    @property
    def status(self) -> NodeStatus:
        ...
    @property
    def usage(self) -> dict:
        ...
class RunEnd:
    """
    A run that ended.
    """
    @property
    def key(self) -> str:
        ...
    @property
    def run_id(self) -> int:
        ...
    @property
    def status(self) -> RunStatus:
        ...
class EventForm(enum.Enum):
    """
    What a stream takes its events as.
    """
    event: typing.ClassVar[EventForm]
    update: typing.ClassVar[EventForm]
    @classmethod
    def __new__(cls, value):
        ...
class EventKinds:
    """
    The kinds of event a run records.
    """
    __hash__: typing.ClassVar[None] = None
    @staticmethod
    def all() -> EventKinds:
        ...
    def __contains__(self, arg0: EventKind) -> bool:
        ...
    def __eq__(self, arg0: EventKinds) -> bool:
        ...
    def __init__(self, kinds: collections.abc.Sequence[EventKind]) -> None:
        ...
    def __repr__(self) -> str:
        ...
    @property
    def none(self) -> bool:
        ...
class EventBatch:
    """
    A batch of a run's events, each made into a chunk as it is iterated.
    """
    def __iter__(self):
        """
        Implement iter(self).
        """
    def __next__(self):
        """
        Implement next(self).
        """
class Agent:
    pass
class SyncAgent(Agent):
    @staticmethod
    def inline_threshold() -> float:
        ...
    @staticmethod
    def set_inline_threshold(arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    def __init__(self, callable: typing.Any, dispatch: Dispatch = Dispatch.auto) -> None:
        ...
    @property
    def mean_call_seconds(self) -> float:
        ...
    @property
    def runs_inline(self) -> bool:
        ...
class AsyncAgent(Agent):
    def __init__(self, coroutine_function: typing.Any) -> None:
        ...
class FutureAgent(Agent):
    def __init__(self, submit: typing.Any) -> None:
        ...
class CircuitBreaker:
    def __init__(self, name: str, failures: typing.SupportsInt | typing.SupportsIndex, window: typing.SupportsFloat | typing.SupportsIndex, reset_after: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    def allow(self) -> bool:
        ...
    def record_failure(self) -> None:
        ...
    def record_success(self) -> None:
        ...
    def snapshot(self) -> dict:
        ...
    @property
    def name(self) -> str:
        ...
class Limiter:
    def __init__(self, name: str, max_concurrent: typing.SupportsInt | typing.SupportsIndex, per_second: typing.SupportsFloat | typing.SupportsIndex, burst: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    def snapshot(self) -> dict:
        ...
    @property
    def name(self) -> str:
        ...
class RetryTimeouts(enum.Enum):
    """
    Whether a timed-out attempt is retried.
    """
    always: typing.ClassVar[RetryTimeouts]
    ask_predicate: typing.ClassVar[RetryTimeouts]
    never: typing.ClassVar[RetryTimeouts]
    @classmethod
    def __new__(cls, value):
        ...
class RetrySpec:
    """
    Retry with exponential backoff and jitter.
    """
    def __init__(self, *, max_attempts: typing.SupportsInt | typing.SupportsIndex, initial_backoff: typing.SupportsFloat | typing.SupportsIndex, multiplier: typing.SupportsFloat | typing.SupportsIndex, max_backoff: typing.SupportsFloat | typing.SupportsIndex, jitter: typing.SupportsFloat | typing.SupportsIndex, retry_on: typing.Any = None, timeouts: RetryTimeouts = RetryTimeouts.always) -> None:
        ...
    @property
    def max_attempts(self) -> int:
        ...
    @property
    def timeouts(self) -> RetryTimeouts:
        ...
class PolicySpec:
    """
    The policies of one agent, as data.
    """
    def __init__(self, *, retry: RetrySpec | None = None, timeout: typing.SupportsFloat | typing.SupportsIndex = 0.0, breaker: CircuitBreaker = None, limits: collections.abc.Sequence[Limiter] = [], fallback: Agent = None) -> None:
        ...
    @property
    def timeout(self) -> float:
        ...
class ReviewSpec:
    """
    A confidence gate.
    """
    def __init__(self, *, below: typing.SupportsFloat | typing.SupportsIndex, reviewer: typing.Any = None, pause_details: typing.Any = None) -> None:
        ...
    @property
    def below(self) -> float:
        ...
class ReviewVerdict:
    """
    A reviewer's decision on one output.
    """
    def __init__(self, *, approved: bool, output: typing.Any = None, reason: str = '') -> None:
        ...
    @property
    def approved(self) -> bool:
        ...
    @property
    def output(self) -> typing.Any:
        ...
    @property
    def reason(self) -> str:
        ...
class InvalidGraph(ValueError):
    pass
class NodeSpec:
    """
    One agent of a graph, with its policies as data.
    """
    def __init__(self, name: str, agent: Agent, *, after: collections.abc.Sequence[str] = [], priority: typing.SupportsInt | typing.SupportsIndex | None = None, join: JoinMode = JoinMode.all, on_error: ErrorMode = ErrorMode.inherit, policy: PolicySpec | None = None, review: ReviewSpec | None = None) -> None:
        ...
    @property
    def after(self) -> list[str]:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def priority(self) -> int | None:
        ...
class CompiledGraph:
    def __init__(self, nodes: collections.abc.Sequence[NodeSpec], on_error: ErrorMode = ErrorMode.fail_run) -> None:
        ...
    def plan_json(self) -> str:
        ...
    @property
    def names(self) -> list[str]:
        ...
class SubgraphAgent(Agent):
    def __init__(self, graph: CompiledGraph) -> None:
        ...
class Failed:
    """
    Stands in for the output of a predecessor that failed (settled joins).
    """
    def __init__(self, error: typing.Any) -> None:
        ...
    def __repr__(self) -> str:
        ...
    @property
    def error(self) -> typing.Any:
        ...
class Routed:
    def __init__(self, value: typing.Any, routes: collections.abc.Sequence[str]) -> None:
        ...
    @property
    def routes(self) -> list[str]:
        ...
    @property
    def value(self) -> typing.Any:
        ...
class Delegation:
    def __init__(self, graph: CompiledGraph, input: typing.Any, then: Agent = None) -> None:
        ...
class AsyncCall:
    """
    One coroutine agent invocation for the event loop.
    """
    def begin(self, continued: bool) -> typing.Any:
        ...
    def cancelled(self) -> None:
        ...
    def fail(self, error: typing.Any) -> None:
        ...
    def succeed(self, value: typing.Any) -> None:
        ...
    @property
    def context(self) -> typing.Any:
        ...
    @property
    def invocation_id(self) -> int:
        ...
    @property
    def run_id(self) -> int:
        ...
class LoopWork:
    """
    What an event loop has to do after a wake-up.
    """
    @property
    def calls(self) -> list:
        ...
    @property
    def cancels(self) -> list:
        ...
    @property
    def ended(self) -> list:
        ...
    @property
    def events(self) -> list:
        ...
class LoopDispatcher:
    def __init__(self, event_gather: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> None:
        ...
    def close(self) -> None:
        ...
    def continuation(self, run_id: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
        """
        The one call queued, if it is all that is queued, belongs to run `run_id` and no timeout may cancel it on its own (taken); else None, and the queue is left as it is. The agent task that just ran an agent of that run runs it next: a chain of coroutine agents then skips take()'s batch.
        """
    def fileno(self) -> int:
        ...
    def take(self) -> typing.Any:
        ...
class InContext:
    """
    InContext(context, awaitable): awaits `awaitable` with each step run in `context`.
    """
    @staticmethod
    def __new__(type, *args, **kwargs):
        """
        Create and return a new object.  See help(type) for accurate signature.
        """
    @staticmethod
    def close(*args, **kwargs):
        """
        Closes the awaitable, in the context.
        """
    @staticmethod
    def send(*args, **kwargs):
        """
        Steps the awaitable with a value, in the context.
        """
    @staticmethod
    def throw(*args, **kwargs):
        """
        Raises into the awaitable, in the context.
        """
    def __await__(self):
        """
        Return an iterator to be used in await expression.
        """
    def __iter__(self):
        """
        Implement iter(self).
        """
    def __next__(self):
        """
        Implement next(self).
        """
class EventChannel:
    """
    Publishes an agent's own events into its run's event stream.
    """
    def publish(self, kind: EventKind, data: typing.Any, message: str = '') -> bool:
        ...
class ObservedCall:
    """
    One agent call, as its run's observer sees it.
    """
    state: typing.Any
    @property
    def attempt(self) -> int:
        ...
    @property
    def channel(self) -> EventChannel:
        ...
    @property
    def checkpoint_path(self) -> str:
        ...
    @property
    def context(self) -> typing.Any:
        ...
    @property
    def error(self) -> typing.Any:
        ...
    @property
    def input(self) -> typing.Any:
        ...
    @property
    def message(self) -> str:
        ...
    @property
    def output(self) -> typing.Any:
        ...
    @property
    def path(self) -> str:
        ...
    @property
    def status(self) -> NodeStatus:
        ...
class NodeHook:
    pass
class PendingCheckpoint:
    def deliver(self) -> None:
        ...
    def fail(self, message: str, error: typing.Any = None) -> None:
        ...
    @property
    def agent(self) -> str:
        ...
    @property
    def confidence(self) -> typing.Any:
        ...
    @property
    def error(self) -> typing.Any:
        ...
    @property
    def message(self) -> str:
        ...
    @property
    def output(self) -> typing.Any:
        ...
    @property
    def routes(self) -> typing.Any:
        ...
    @property
    def run_id(self) -> int:
        ...
    @property
    def run_key(self) -> str:
        ...
    @property
    def status(self) -> NodeStatus:
        ...
    @property
    def usage(self) -> dict:
        ...
class CheckpointWork:
    @property
    def ended(self) -> list[RunEnd]:
        ...
    @property
    def outcomes(self) -> list:
        ...
class CheckpointHook(NodeHook):
    def __init__(self) -> None:
        ...
    def close(self) -> None:
        ...
    def take(self, timeout: typing.SupportsFloat | typing.SupportsIndex) -> typing.Any:
        ...
class EngineError(RuntimeError):
    pass
class RunRequest:
    """
    How to start one run.
    """
    hook: NodeHook
    key: str
    observer: typing.Any
    restored: typing.Any
    def __init__(self, input: typing.Any, *, dispatcher: LoopDispatcher = None, record_events: EventKinds = ..., budget: typing.Any = None, deadline: typing.SupportsFloat | typing.SupportsIndex = 0.0, restored: typing.Any = None, hook: NodeHook = None, key: str = '', observer: typing.Any = None, announce_events: bool = False) -> None:
        ...
    @property
    def dispatcher(self) -> LoopDispatcher:
        ...
    @property
    def input(self) -> typing.Any:
        ...
class Restored:
    """
    An agent outcome known before the run starts.
    """
    @staticmethod
    def awaiting_input(agent: str, question: typing.Any) -> Restored:
        ...
    @staticmethod
    def rejected(agent: str, reason: str) -> Restored:
        ...
    @staticmethod
    def succeeded(agent: str, output: typing.Any, routes: collections.abc.Sequence[str] | None = None, usage: typing.Any = None) -> Restored:
        ...
    @property
    def agent(self) -> str:
        ...
class RunHandle:
    def cancel(self) -> bool:
        ...
    def end_event_or_report(self) -> typing.Any:
        """
        An ended run's "end" Event (carrying its output) if it succeeded, else its RunReport.
        """
    def interrupt(self) -> bool:
        ...
    def next_events(self, timeout: typing.SupportsFloat | typing.SupportsIndex, gather: typing.SupportsFloat | typing.SupportsIndex = 0.0, form: EventForm = EventForm.event) -> typing.Any:
        """
        The events recorded so far, as an EventBatch of chunks in `form`, waiting up to `timeout` seconds for one and, with `gather`, until `gather` seconds after the first (or the run's end). Its `more` is false once the run has ended and every event was taken.
        """
    def outcomes(self) -> list[AgentRecord]:
        ...
    def output_or_report(self) -> typing.Any:
        """
        An ended run's output if it succeeded, else its RunReport.
        """
    def report(self) -> RunReport:
        ...
    def trace_json(self) -> str:
        ...
    def usage(self) -> dict:
        ...
    def wait(self, timeout: typing.SupportsFloat | typing.SupportsIndex = -1.0) -> bool:
        """
        Waits for the run to end (timeout < 0: no limit). True once it has ended.
        """
    def when_ended(self, callback: typing.Any) -> None:
        """
        Calls `callback()` once the run has ended: at once if it has, else soon after, on a thread of the engine's pool.
        """
    @property
    def budget_exhausted(self) -> bool:
        ...
    @property
    def done(self) -> bool:
        ...
    @property
    def elapsed(self) -> float:
        ...
    @property
    def id(self) -> int:
        ...
    @property
    def key(self) -> str:
        ...
    @property
    def status(self) -> RunStatus:
        ...
    @property
    def succeeded(self) -> bool:
        """
        Whether the run ended and succeeded: `status` without making an enum member (a call into Python's enum machinery, most of a microsecond).
        """
class Stream:
    """
    A run streamed in one mode (events or updates): each chunk made as it is reached. The run starts at the first next(); close() or dropping it cancels a run still going.
    """
    @staticmethod
    def close(*args, **kwargs):
        """
        Ends the stream; a run still going is cancelled, as closing a generator did.
        """
    def __iter__(self):
        """
        Implement iter(self).
        """
    def __next__(self):
        """
        Implement next(self).
        """
class StartedStream:
    """
    A streamed run and its first events.
    """
    @property
    def events(self) -> typing.Any:
        """
        An EventBatch, as RunHandle.next_events gives.
        """
    @property
    def handle(self) -> RunHandle:
        ...
class AsyncChunks:
    """
    AsyncChunks(refill, close): the async iterator of a stream's chunks (astream).
    """
    @staticmethod
    def __new__(type, *args, **kwargs):
        """
        Create and return a new object.  See help(type) for accurate signature.
        """
    @staticmethod
    def aclose(*args, **kwargs):
        """
        Ends the stream, cancelling its run if still going; await the result.
        """
    @staticmethod
    def take(*args, **kwargs):
        """
        take(batch): the chunks to hand out next; returns the first, or this object if none.
        """
    def __aiter__(self):
        """
        Return an awaitable, that resolves in asynchronous iterator.
        """
    def __anext__(self):
        """
        Return a value or raise StopAsyncIteration.
        """
    def __await__(self):
        """
        Return an iterator to be used in await expression.
        """
    def __next__(self):
        """
        Implement next(self).
        """
def batch(graph: CompiledGraph, inputs: list, shared: RunRequest, window: typing.SupportsInt | typing.SupportsIndex = 0, prepare: typing.Any = None, on_finished: typing.Any = None) -> list[RunReport]:
    """
    Runs the graph once per input, at most `window` runs at once (0: DEFAULT_BATCH_WINDOW); reports in input order. `on_finished(indices, reports, events, elapsed)` is called with the GIL after each group of runs that ended.
    """
def invoke(graph: CompiledGraph, input: typing.Any, dispatcher: LoopDispatcher, budget: typing.Any, deadline: typing.SupportsFloat | typing.SupportsIndex) -> typing.Any:
    """
    Runs the graph: its output if the run succeeded, else the RunReport of how it ended.
    """
def mark_engine_loop_thread() -> None:
    """
    Marks the calling thread as the one running the engine's event loop: a wait there would block every coroutine agent, so it fails at once.
    """
def refuse_wait_here() -> None:
    """
    Raises EngineError if this thread must not wait for a run (an engine thread, the engine's event loop), as invoke() does before it starts one.
    """
def set_confidence_reader(arg0: typing.Any) -> None:
    """
    Tells review gates how to read an output's confidence (counterpoint.confidence_of).
    """
def set_interrupt_type(arg0: type) -> None:
    """
    Tells the engine which exception asks a person a question (cp.interrupt's).
    """
def set_result_type(arg0: type) -> None:
    """
    Tells the engine which class carries usage (counterpoint.Result).
    """
def shutdown(drain_timeout: typing.SupportsFloat | typing.SupportsIndex) -> bool:
    """
    Interrupts every run and waits up to drain_timeout seconds for running agents to return.
    """
def start(graph: CompiledGraph, input: typing.Any, dispatcher: LoopDispatcher, budget: typing.Any, deadline: typing.SupportsFloat | typing.SupportsIndex, record_events: EventKinds = ..., announce_events: bool = False) -> RunHandle:
    """
    Starts a run that is not durable and returns its handle at once; with `announce_events`, the dispatcher's loop is told of its events (an astream).
    """
def start_run(graph: CompiledGraph, request: RunRequest) -> RunHandle:
    """
    Starts a run and returns its handle at once.
    """
def start_stream(graph: CompiledGraph, input: typing.Any, dispatcher: LoopDispatcher, budget: typing.Any, deadline: typing.SupportsFloat | typing.SupportsIndex, timeout: typing.SupportsFloat | typing.SupportsIndex, gather: typing.SupportsFloat | typing.SupportsIndex, record_events: EventKinds = ..., form: EventForm = EventForm.event) -> StartedStream:
    """
    Starts a run that is not durable and records events of the kinds `record_events`; its first events come with it, as RunHandle.next_events gives them.
    """
def stats() -> dict:
    ...
def stream(graph: CompiledGraph, input: typing.Any, dispatcher: LoopDispatcher, budget: typing.Any, deadline: typing.SupportsFloat | typing.SupportsIndex, timeout: typing.SupportsFloat | typing.SupportsIndex, gather: typing.SupportsFloat | typing.SupportsIndex, record_events: EventKinds, form: EventForm, on_failure: typing.Any) -> typing.Any:
    """
    A Stream of a run that is not durable, recording `record_events` and yielding chunks in `form`; `on_failure(report)` raises for a run that did not succeed.
    """
def tbb_compiled_interface_version() -> int:
    ...
def tbb_runtime_interface_version() -> int:
    ...
def tbb_runtime_version() -> str:
    ...
DEFAULT_BATCH_WINDOW: int = 1024
