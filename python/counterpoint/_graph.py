"""Graph builder and compiled graph: the public face of the native engine."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import math
import os
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any

from . import _tracing
from ._async_stream import AsyncStream
from ._audit import AuditEvent
from ._cache import cached_agent
from ._durable import (
    AuditedRun,
    Resumption,
    audit_attach,
    audit_begin,
    audit_finish,
    call_scope,
    check_resumable,
    fingerprint,
    hold_until_end,
    paused_gates,
    restored_outcomes,
    writer_for,
)
from ._errors import GraphError
from ._executors import Executor, RayBatch, connect, run_batch_on
from ._fork import begin_fork, fork_arguments
from ._handoffs import Node, mismatches
from ._leases import take_lease
from ._lent_thread import LentThread, lent_thread
from ._loops import EVENT_GATHER, bridge_for_running_loop, engine_dispatcher
from ._native import _core
from ._perfetto import timeline_trace
from ._picture import GraphPicture
from ._policies import Cache, CircuitBreaker, Limit, Retry, Review, audit_notes
from ._postgres_store import PostgresStore, is_dsn
from ._progress import Progress, progress_label
from ._run import TIMELINE_EVENTS, Run, RunResult, as_exception, failure_exception, unwrap
from ._spec import GRAPH_ERROR_MODES, NodeSpec
from ._sqlite_store import SQLiteStore
from ._store import RunSummary, Store
from ._stored_timeline import timeline_from_store
from ._streaming import AgentObserver, StreamModes
from ._timeline import Timeline
from ._timeline_picture import TimelinePicture

# How long one wait for events lasts before Python gets a chance to see Ctrl-C.
_EVENT_SLICE = 0.05
# What a run that nobody streams records.
_NO_EVENTS = _core.EventKinds([])
# Runs a batch keeps in flight when the caller sets no max_concurrency: enough to keep
# agents that wait busy, few enough that memory stays bounded whatever the input size.
DEFAULT_BATCH_WINDOW: int = _core.DEFAULT_BATCH_WINDOW
_RunReport = _core.RunReport


def _raise_failure(report: Any) -> None:
    """Raises what invoke would for a streamed run that did not succeed (the end of a
    native stream, ``_core.stream``)."""
    raise failure_exception(report)


def _nested_graph(agent: Any) -> CompiledGraph | None:
    """The graph whose child runs an agent starts, when it is known before any run: a
    compiled graph added as an agent, or a loop's or group chat's iteration."""
    if isinstance(agent, CompiledGraph):
        return agent
    child = getattr(agent, "_cp_child_graph", None)
    return child if isinstance(child, CompiledGraph) else None


def _check_max_concurrency(max_concurrency: Any) -> None:
    if max_concurrency is not None and (
        isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int)
        or max_concurrency < 1
    ):
        raise ValueError(f"max_concurrency must be a positive int or None, got {max_concurrency!r}")


def _check_budget(budget: Any) -> dict[str, float] | None:
    if budget is None:
        return None
    if not isinstance(budget, Mapping) or not budget:
        raise ValueError(
            f"budget must be a non-empty dict like {{'tokens': 10000}}, got {budget!r}"
        )
    for name, limit in budget.items():
        if not isinstance(name, str) or isinstance(limit, bool) or \
                not isinstance(limit, (int, float)) or not limit > 0 or math.isinf(limit):
            raise ValueError(
                "budget entries must map a usage name to a positive number, got "
                f"{name!r}: {limit!r}"
            )
    return {name: float(limit) for name, limit in budget.items()}


def _check_deadline(deadline: Any) -> float:
    if deadline is None:
        return 0.0
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or \
            not deadline > 0 or math.isinf(deadline):
        raise ValueError(f"deadline must be a positive number of seconds, got {deadline!r}")
    return float(deadline)


# The class compile() builds. With langchain-core installed, the package registers a
# loader of its Runnable subclass (counterpoint.integrations.langchain), imported at the
# first compile() rather than with counterpoint, and never imported from here.
_compiled_class_loader: Callable[[], type[CompiledGraph]] | None = None
_compiled_class: type[CompiledGraph] | None = None


def register_compiled_class(loader: Callable[[], type[CompiledGraph]]) -> None:
    """Makes ``compile()`` build the class ``loader()`` returns (a CompiledGraph subclass),
    loaded at the first compile."""
    global _compiled_class_loader, _compiled_class
    _compiled_class_loader, _compiled_class = loader, None


# What CompiledGraph.to_spec() calls: counterpoint.specs, a layer above, registers it.
_spec_writer: Callable[[CompiledGraph], dict[str, Any]] | None = None


def register_spec_writer(writer: Callable[[CompiledGraph], dict[str, Any]]) -> None:
    global _spec_writer
    _spec_writer = writer


# The data edges of a graph's plan at every depth ({agent path: paths it runs after}),
# for run timelines: the plan view, a layer above (it reads patterns' nested graphs),
# registers it. Without it, a timeline has the top level's edges only.
_plan_edges: Callable[[CompiledGraph], dict[str, tuple[str, ...]]] | None = None


def register_plan_edges(edges: Callable[[CompiledGraph], dict[str, tuple[str, ...]]]) -> None:
    global _plan_edges
    _plan_edges = edges


# How a pattern's graph is built again from its declaration (``app._cp_declared``) when
# it is unpickled: counterpoint.patterns, a layer above, registers it.
_pattern_rebuilder: Callable[[str, dict[str, Any]], CompiledGraph] | None = None


def register_pattern_rebuilder(rebuild: Callable[[str, dict[str, Any]], CompiledGraph]) -> None:
    global _pattern_rebuilder
    _pattern_rebuilder = rebuild


# What CompiledGraph.draw() and to_mermaid() call: the modules that draw plans sit above
# counterpoint.patterns (they expand the child graphs patterns run) and register these.
_graph_drawer: Callable[[CompiledGraph], GraphPicture] | None = None
_mermaid_writer: Callable[[CompiledGraph], str] | None = None


def register_graph_drawer(draw: Callable[[CompiledGraph], GraphPicture]) -> None:
    global _graph_drawer
    _graph_drawer = draw


def register_mermaid_writer(write: Callable[[CompiledGraph], str]) -> None:
    global _mermaid_writer
    _mermaid_writer = write


def compiled_graph_class() -> type[CompiledGraph]:
    global _compiled_class
    if _compiled_class is None:
        _compiled_class = CompiledGraph if _compiled_class_loader is None \
            else _compiled_class_loader()
    return _compiled_class


class Graph:
    """A mutable description of agents and the order they depend on each other.

    Each agent receives what it needs and nothing else: an agent with no predecessors
    receives the run input, an agent with one predecessor receives that agent's output,
    and an agent with several receives ``{predecessor_name: output}``.

    Example:
        >>> g = Graph()
        >>> g.add("classify", classify)
        >>> g.add("billing", billing, after="classify")
        >>> app = g.compile()
        >>> app.invoke("my card was charged twice")
    """

    def __init__(self, *, on_error: str = "fail") -> None:
        """Creates an empty graph.

        Args:
            on_error: What an agent's failure does by default: ``"fail"`` ends the run
                at once (fail fast); ``"continue"`` lets siblings run on and skips only
                the agents that needed the failed one.
        """
        if on_error not in GRAPH_ERROR_MODES:
            raise GraphError(
                f"on_error={on_error!r} is not one of {', '.join(map(repr, GRAPH_ERROR_MODES))}"
            )
        self._on_error = on_error
        self._nodes: list[NodeSpec] = []

    def add(
        self,
        name: str,
        agent: Any,
        *,
        after: str | Sequence[str] | None = None,
        priority: int | None = None,
        dispatch: str = "auto",
        join: str = "all",
        on_error: str = "inherit",
        retry: Retry | int | None = None,
        timeout: float | None = None,
        fallback: Any = None,
        breaker: CircuitBreaker | None = None,
        limits: Limit | Sequence[Limit] | None = None,
        review: Review | None = None,
        executor: Executor | None = None,
        cache: Cache | None = None,
    ) -> Graph:
        """Adds an agent. Problems are reported by :meth:`compile`, naming the agent.

        Args:
            name: Unique name; also the key of this agent's output in joins and results.
            agent: A function, an ``async def`` function, an object with an ``invoke``
                (run on the thread pool) or ``ainvoke`` (run as a coroutine) method, or a
                compiled graph (run as a child run).
            after: Name or names of the agents whose outputs this one receives.
            priority: When several agents are ready at once, higher ones are scheduled
                and streamed first. Unset (None), an agent inherits the highest priority
                of its predecessors; any int, 0 included, is its own.
            dispatch: For plain callables: ``"auto"`` runs the agent inline on an engine
                thread while it measures fast and on the thread pool otherwise;
                ``"thread"`` always uses the pool; ``"inline"`` always runs inline (only
                for agents that never block).
            join: When an agent with several predecessors runs: ``"all"`` (every one
                succeeded, else it is skipped), ``"any"`` (the first to succeed, as
                ``{name: output}``), ``"available"`` (once all ended, with those that
                succeeded) or ``"settled"`` (once all ended, failures included as
                :class:`Failed`).
            on_error: ``"fail"`` or ``"continue"`` for this agent; ``"inherit"`` takes
                the graph's.
            retry, timeout, fallback, breaker, limits, review: Policies; see
                :func:`counterpoint.policy`.
            executor: Where the agent's calls run, if not in this process:
                :func:`counterpoint.ray` (a Ray task per call) or
                :func:`counterpoint.ray_actors` (a pool of Ray actors). The engine and
                every policy stay here; see docs/scale-out.md.
            cache: A :class:`Cache`: an input the agent was already given returns the
                output the graph's store kept, without calling it (the graph must be
                compiled with a store). See docs/durability.md.

        Returns:
            The graph, so calls can be chained.
        """
        self._nodes.append(NodeSpec(name, agent, after, priority, dispatch, join, on_error,
                                    retry, timeout, fallback, breaker, limits, review,
                                    executor, cache))
        return self

    def compile(
        self,
        *,
        store: Store | str | os.PathLike[str] | None = None,
        budget: Mapping[str, float] | None = None,
        deadline: float | None = None,
    ) -> CompiledGraph:
        """Validates the graph and wires it into the native engine.

        Args:
            store: Makes runs durable: a :class:`Store`, a path for a
                :class:`SQLiteStore`, or a ``postgresql://`` URI for a
                :class:`PostgresStore`. Every finished agent's output is written before the
                run uses it, so a killed run resumes without re-running finished agents,
                and runs paused for review can be resumed later.
            budget: Default per-run budget, e.g. ``{"tokens": 10000, "cost": 0.5}``.
            deadline: Default per-run deadline in seconds.

        Raises:
            GraphError: naming the agent and the problem (empty graph, duplicate or
                invalid name, unknown predecessor, cycle, non-callable agent, cache
                without a store, connected agents whose annotated input and output types
                cannot match).
        """
        cached = []
        for spec in self._nodes:
            spec.validate()
            if spec.caches:
                cached.append(spec.name)
        if is_dsn(store):
            store = PostgresStore(store)
        elif isinstance(store, (str, os.PathLike)):
            store = SQLiteStore(store)
        if store is not None and not isinstance(store, Store):
            raise GraphError(f"store must be a counterpoint Store, a file path or a "
                             f"postgresql:// URI, got {store!r}")
        if cached and store is None:
            raise GraphError(
                f"agent '{cached[0]}': cache= keeps its outputs in the graph's store; pass "
                "store= to compile(), e.g. compile(store='runs.db') (an agent inside a "
                "pattern cannot be cached: the pattern's graph has no store)",
                cached[0],
            )
        caching = None if store is None else functools.partial(cached_agent, store)
        nodes = [spec.to_native(caching) for spec in self._nodes]
        try:
            budget = _check_budget(budget)
            deadline_seconds = _check_deadline(deadline)
        except ValueError as exc:
            raise GraphError(str(exc)) from None
        try:
            native_graph = _core.CompiledGraph([node.spec for node in nodes],
                                               GRAPH_ERROR_MODES[self._on_error])
        except _core.InvalidGraph as exc:
            message, node = exc.args
            raise GraphError(message, node or None) from None
        _check_handoffs(self._nodes)
        return compiled_graph_class()(
            native_graph, any(node.uses_event_loop for node in nodes),
            submits_calls=any(node.submits_calls for node in nodes), store=store,
            budget=budget, deadline=deadline_seconds, specs=tuple(self._nodes),
            on_error=self._on_error)


def _check_handoffs(specs: Sequence[NodeSpec]) -> None:
    """Raises GraphError listing every pair of connected agents whose annotated types
    cannot match (typed handoffs), before any agent runs."""
    found = mismatches([Node(spec.name, spec.predecessors(), spec.annotations)
                        for spec in specs])
    if found:
        raise GraphError(
            "annotated types of connected agents cannot match: " +
            "; ".join(mismatch.problem for mismatch in found) +
            ". Change the agents or their annotations so that each output fits the input "
            "of the agent after it", found[0].agent)


class CompiledGraph:
    """An immutable, validated graph. Thread-safe: any number of runs may share it.

    A compiled graph is also an agent: add it to another graph (or pass it to a pattern)
    and each call becomes a child run, scheduled natively, cancelled with its parent,
    its events streamed as ``"<agent>/<child agent>"``.

    It pickles as what it was built from and is compiled again when unpickled: with
    ``pickle`` when its agents are module-level functions, with ``cloudpickle`` when
    they are lambdas or closures too (see :meth:`__reduce__`).
    """

    # What __init__ sets: compiling again makes them, so they are never pickled.
    _COMPILED = frozenset({"_native", "_specs", "_has_async", "_submits_calls", "_store",
                           "_budget", "_deadline", "_on_error", "_fingerprint",
                           "_plan_edges_cache"})

    def __init__(self, native: Any, has_async: bool, *, submits_calls: bool = False,
                 store: Store | None = None, budget: dict[str, float] | None = None,
                 deadline: float = 0.0, specs: tuple[NodeSpec, ...] = (),
                 on_error: str = "fail") -> None:
        self._native = native
        # What it was built from: for pictures, schemas, specs and pickling.
        self._specs = specs
        self._has_async = has_async
        self._submits_calls = submits_calls
        self._store = store
        self._budget = budget
        self._deadline = deadline
        self._on_error = on_error
        self._fingerprint = fingerprint(self.describe()) if store is not None else ""

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickles the graph as its declaration; unpickling compiles it again (into the
        class ``compile()`` makes, a LangChain Runnable where langchain-core is installed).

        A pattern's graph (``cp.parallel(...)`` ...) is its builder's name and the
        arguments it was given, so the pickle carries the user's agents, not the
        pattern's internal closures and child graphs. Any other graph is its node specs
        (agents and policies), ``on_error``, store, budget and deadline. Attributes set
        on the graph after compiling (a spec's name and description) go along.

        What belongs to this process stays: runs in flight, and the state of breakers
        and limits (see :class:`CircuitBreaker` and :class:`Limit`).
        """
        added = {name: value for name, value in self.__dict__.items()
                 if name not in self._COMPILED and name != "_cp_declared"}
        declared = self.__dict__.get("_cp_declared")
        if declared is not None:
            assert _pattern_rebuilder is not None, "counterpoint.patterns registers it"
            return _pattern_rebuilder, declared, added or None
        return (_recompile, (self._specs, self._on_error, self._store, self._budget,
                             self._deadline or None), added or None)

    @property
    def uses_event_loop(self) -> bool:
        """True if some agent (at any depth) is a coroutine."""
        return self._has_async

    @property
    def submits_calls(self) -> bool:
        """True if some agent (at any depth) runs its calls elsewhere (on Ray)."""
        return self._submits_calls

    @property
    def agents(self) -> list[str]:
        """Agent names in a topological order."""
        return list(self._native.names)

    @property
    def store(self) -> Store | None:
        """Where durable runs are kept (None: runs are not durable)."""
        return self._store

    def to_spec(self) -> dict[str, Any]:
        """This graph as a spec: plain data to save as JSON or YAML, which
        :func:`counterpoint.load` builds into an equivalent graph. Agents (and every
        function a pattern or policy was given) are written as import paths, so they
        must be module-level objects. See docs/specs.md.

        Raises:
            SpecError: listing every agent or function that has no import path.
        """
        assert _spec_writer is not None, "counterpoint.specs registers the spec writer"
        return _spec_writer(self)

    def draw(self) -> GraphPicture:
        """A picture of the graph, drawn offline (no graphviz, no network): each agent a
        box with its priority and policies, nested graphs and patterns as labelled boxes
        around their agents, routed edges dashed, a loop's repeat edge shown.

        In Jupyter a compiled graph shows as this picture by itself.

        Example:
            >>> app.draw().save("graph.svg")  # or "graph.html"

        Returns:
            A :class:`GraphPicture` (``.svg``, ``.save(path)``).
        """
        assert _graph_drawer is not None, "counterpoint._graph_svg registers the drawer"
        return _graph_drawer(self)

    def to_mermaid(self) -> str:
        """The graph as a Mermaid flowchart (``flowchart TD``): nested graphs and
        patterns as subgraphs, routed edges dotted, a loop's repeat edge dotted and
        labelled ``again``. Paste it in Markdown (GitHub renders it) or a Mermaid
        editor."""
        assert _mermaid_writer is not None, "counterpoint._mermaid registers the writer"
        return _mermaid_writer(self)

    def _repr_svg_(self) -> str:
        return self.draw().svg

    def _repr_html_(self) -> str:
        return self.draw()._repr_html_()

    def describe(self) -> dict[str, Any]:
        """The compiled plan: nodes with their predecessors, entries and sinks."""
        return json.loads(self._native.plan_json())

    def _dispatcher(self) -> Any:
        return engine_dispatcher() if self._has_async else None

    def _settings(self, budget: Any, deadline: Any) -> tuple[dict[str, float] | None, float]:
        budget = self._budget if budget is None else _check_budget(budget)
        deadline = self._deadline if deadline is None else _check_deadline(deadline)
        return budget, deadline

    def _request(self, input: Any, dispatcher: Any, *, record_events: Any = _NO_EVENTS,
                 budget: Any = None, deadline: Any = None, observer: Any = None,
                 announce_events: bool = False) -> Any:
        budget, deadline = self._settings(budget, deadline)
        return _core.RunRequest(input, dispatcher=dispatcher, record_events=record_events,
                                budget=budget, deadline=deadline, observer=observer,
                                announce_events=announce_events)

    def _gates(self) -> dict[str, Review]:
        """The review gates of this graph's agents, by path: its own, and those of the
        graphs added to it as agents, at any depth (not those of graphs a pattern builds
        while it runs, such as a supervisor's workers)."""
        gates = {}
        for spec in self._specs:
            policed = spec.policed
            if policed is not None and policed.review is not None:
                gates[spec.name] = policed.review
            nested = _nested_graph(spec.agent)
            if nested is not None:
                for path, gate in nested._gates().items():
                    gates[f"{spec.name}/{path}"] = gate
        return gates

    def _durable_request(self, request: Any, run_key: str | None = None,
                         resumed: Resumption | None = None,
                         budget: dict[str, float] | None = None
                         ) -> tuple[Any, str, AuditedRun]:
        """Registers a durable run in the store (a new one, or one being resumed), starts
        its audit log's tracking and points the request at its checkpoints."""
        store = self._store
        assert store is not None
        if run_key is None:
            run_key = uuid.uuid4().hex
            store.record_start(run_key, self._fingerprint, request.input, [AuditEvent(
                "run_started", None, {"graph": self._fingerprint, "budget": budget},
                {"input": request.input})])
        else:
            store.set_status(run_key, "running")
            store.append_audit(run_key, [AuditEvent("run_resumed", None, {
                "graph": self._fingerprint, "budget": budget,
                "restored": sorted(r.agent for r in resumed.restored) if resumed else []})])
        audited = AuditedRun(store, run_key, self._gates(), budget)
        audit_begin(audited)
        request.key = run_key
        request.hook = writer_for(store).hook
        request.observer = call_scope(run_key, resumed.answers if resumed else {},
                                      request.observer)
        if resumed is not None and resumed.restored:
            request.restored = resumed.restored
        return request, run_key, audited

    def _launch(self, input: Any, dispatcher: Any, *, record_events: Any = _NO_EVENTS,
                budget: Any = None, deadline: Any = None, run_key: str | None = None,
                resumed: Resumption | None = None, observer: Any = None,
                timeline: bool = False, announce_events: bool = False) -> Run:
        """Starts a run; with ``timeline``, one whose record keeps every agent's steps
        (``record_events`` is then the timeline's). A traced run that nobody streams
        keeps them too: its spans are completed from them. With ``announce_events``,
        the loop of ``dispatcher`` is told of its events (an astream reads them there)."""
        tracer = _tracing.tracer
        if tracer is None:
            return self._start_run(input, dispatcher, record_events, budget, deadline, run_key,
                                   resumed, observer, timeline, announce_events=announce_events)
        trace = tracer.trace(self, observer)
        try:
            run = self._start_run(input, dispatcher, record_events, budget, deadline, run_key,
                                  resumed, trace.observer,
                                  timeline or record_events is _NO_EVENTS, trace,
                                  announce_events=announce_events)
        except BaseException as exc:
            trace.abandoned(exc)
            raise
        trace.started(run._handle, run.run_key)
        return run

    def _start_run(self, input: Any, dispatcher: Any, record_events: Any, budget: Any,
                   deadline: Any, run_key: str | None, resumed: Resumption | None,
                   observer: Any, timeline: bool, trace: _tracing.RunTrace | None = None,
                   *, announce_events: bool = False) -> Run:
        if timeline:
            record_events = TIMELINE_EVENTS
        edges = self._edges if timeline else None
        request = self._request(input, dispatcher, record_events=record_events, budget=budget,
                                deadline=deadline, observer=observer,
                                announce_events=announce_events)
        if self._store is None:
            return Run(_core.start_run(self._native, request), edges=edges, trace=trace)
        request, run_key, audited = self._durable_request(
            request, run_key, resumed, self._settings(budget, deadline)[0])
        token = audit_notes.set(audited.notes)  # the run's agent calls copy this context
        try:
            handle = _core.start_run(self._native, request)
        finally:
            audit_notes.reset(token)
        audit_attach(audited, handle)
        return Run(handle, run_key, self._store,
                   on_end=lambda: audit_finish(audited), edges=edges, trace=trace)

    def _edges(self) -> dict[str, tuple[str, ...]]:
        """The plan's data edges at every depth, worked out once per compiled graph."""
        edges: dict[str, tuple[str, ...]] | None = self.__dict__.get("_plan_edges_cache")
        if edges is None:
            if _plan_edges is not None:
                edges = _plan_edges(self)
            else:
                edges = {node["name"]: tuple(node["after"]) for node in self.describe()["nodes"]}
            self._plan_edges_cache = edges
        return edges

    def start(self, input: Any, *, budget: Mapping[str, float] | None = None,
              deadline: float | None = None) -> Run:
        """Starts a run and returns its handle at once (wait, cancel, result, record).

        Args:
            budget: This run's budget, e.g. ``{"tokens": 10000}``: once the agents'
                reported usage reaches it, no further agent starts.
            deadline: Seconds the run may take; then it ends as timed out.
        """
        return self._launch(input, self._dispatcher(), budget=budget, deadline=deadline,
                            timeline=True)

    def run(self, input: Any, **options: Any) -> RunResult:
        """Runs the graph and returns a :class:`RunResult` with every agent's outcome,
        instead of raising when the run does not succeed."""
        return self.start(input, **options).record()

    def invoke(self, input: Any, *, budget: Mapping[str, float] | None = None,
               deadline: float | None = None) -> Any:
        """Runs the graph on ``input`` and returns the sink's output.

        With several sinks the result is ``{sink_name: output}``. The GIL is released
        while the run executes; Ctrl-C interrupts the run and raises KeyboardInterrupt.

        Raises:
            AgentError: an agent raised; its exception is ``__cause__``.
            RunTimeout, BudgetExceeded, NeedsReview, RunCancelled: see their docs.
        """
        if self._store is None and _tracing.tracer is None:
            budget, deadline = self._settings(budget, deadline)
            if self._submits_calls:
                result = self._invoke_lending_thread(input, budget, deadline)
            else:
                result = _core.invoke(self._native, input, self._dispatcher(), budget,
                                      deadline)
            if type(result) is _RunReport:  # any other result is the output itself
                raise failure_exception(result)
            return result
        return self.start(input, budget=budget, deadline=deadline).result()

    def _invoke_lending_thread(self, input: Any, budget: dict[str, float] | None,
                               deadline: float) -> Any:
        """invoke() for a graph whose agents run elsewhere: this thread waits for their
        calls itself while it waits for the run (see counterpoint._lent_thread)."""
        _core.refuse_wait_here()
        lender = LentThread()
        token = lent_thread.set(lender)  # the run's agent calls copy this context
        try:
            run = _core.start(self._native, input, self._dispatcher(), budget, deadline)
        finally:
            lent_thread.reset(token)
        try:
            lender.serve(run)
        except BaseException:  # Ctrl-C: as the engine's own wait does
            run.interrupt()
            raise
        run.wait()  # it has ended: this releases what the run let go of
        return run.output_or_report()

    def resume(self, run_key: str, decision: Any = None, *,
               budget: Mapping[str, float] | None = None, deadline: float | None = None) -> Any:
        """Continues a stored run: finished agents are not run again.

        Use it after the process running the run was killed, or to give the decision a
        paused run awaits: ``cp.approve()``, ``cp.approve(new_output)``,
        ``cp.reject(reason)`` (or a dict of them by agent when several await review).
        Works from any process that builds the same graph on the same store.

        Returns:
            The run's result, as :meth:`invoke` returns it.
        """
        return self.start_resumed(run_key, decision, budget=budget, deadline=deadline).result()

    def start_resumed(self, run_key: str, decision: Any = None, *,
                      budget: Mapping[str, float] | None = None,
                      deadline: float | None = None) -> Run:
        """Like :meth:`resume`, returning the run's handle at once."""
        if self._store is None:
            raise GraphError("this graph has no store, so it has no runs to resume; "
                             "compile(store=...)")
        # Held until the run ends: a second process resuming it is refused meanwhile.
        lease = take_lease(self._store, run_key)
        try:
            stored = self._store.load_run(run_key)
            check_resumable(stored, self._fingerprint)
            gates = self._gates()
            if any(outcome.status == "needs_review" for outcome in stored.outcomes.values()):
                # Paused gates as they recorded themselves: those of graphs a pattern
                # built while running are in no graph the resuming process holds.
                gates.update(paused_gates(self._store.audit(run_key)))
            resumed = restored_outcomes(stored, decision, gates)
            if resumed.recorded:
                errors = self._store.record_outcomes(run_key, resumed.recorded, resumed.events)
                for error in errors:
                    if error is not None:
                        raise error
            run = self._launch(stored.input, self._dispatcher(), budget=budget,
                               deadline=deadline, run_key=run_key, resumed=resumed,
                               timeline=True)
        except BaseException:
            lease.release()
            raise
        hold_until_end(run_key, lease)
        return run

    def fork(self, run_key: str, rerun: str | Sequence[str] | None = None,
             inputs: Any = None, overrides: Mapping[str, Any] | None = None, *,
             budget: Mapping[str, float] | None = None,
             deadline: float | None = None) -> Any:
        """Runs a stored run again as a new run (a new key), reusing the outcomes of its
        agents that nothing asked to change: the prompt-iteration loop.

        Agents named in ``rerun`` run again, and so does every agent downstream of one
        (by the graph's edges). Agents in ``overrides`` do not run: they take the output
        given, and their downstream agents run. Every other agent's stored ``succeeded``
        outcome is restored (``AgentOutcome.restored``; its usage counts), and any other
        outcome runs again. The stored run is not changed.

        Args:
            run_key: The run to fork, made by this graph (same fingerprint).
            rerun: An agent name or names to run again.
            inputs: A new run input; None keeps the stored one. A new input makes the
                entry agents (those that receive the input) and everything downstream
                run again.
            overrides: ``{agent: output}``: outputs to use as if the agents had produced
                them (``cp.route(value, to=[...])`` for a router's choice).
            budget, deadline: As for :meth:`start`.

        Returns:
            The new run's result, as :meth:`invoke` returns it. Its key is in the audit
            log: ``run_started`` records ``forked_from``.

        Raises:
            ValueError: an unknown agent name (the message lists the known ones), or an
                agent both rerun and overridden.
            StoreError: no such run, a run of a different graph, or an input or override
                the store cannot encode.
            GraphError: the graph has no store.
        """
        return self.start_fork(run_key, rerun, inputs, overrides, budget=budget,
                               deadline=deadline).result()

    def start_fork(self, run_key: str, rerun: str | Sequence[str] | None = None,
                   inputs: Any = None, overrides: Mapping[str, Any] | None = None, *,
                   budget: Mapping[str, float] | None = None,
                   deadline: float | None = None) -> Run:
        """Like :meth:`fork`, returning the new run's handle at once."""
        if self._store is None:
            raise GraphError("this graph has no store, so it has no runs to fork; "
                             "compile(store=...)")
        names, given = fork_arguments(self.agents, rerun, overrides)
        settled_budget = self._settings(budget, deadline)[0]
        stored = self._store.load_run(run_key)
        check_resumable(stored, self._fingerprint, "fork")
        after = {node["name"]: node["after"] for node in self.describe()["nodes"]}
        fork_key = begin_fork(self._store, self._fingerprint, stored, after, names, given,
                              inputs, settled_budget)
        return self.start_resumed(fork_key, budget=budget, deadline=deadline)

    def timeline(self, run_key: str) -> TimelinePicture:
        """The timeline of a stored run (see :meth:`RunResult.timeline`), from any
        process that builds the same graph on the same store.

        A run made by ``invoke``, ``ainvoke``, ``run``, ``start`` (once waited for) or
        ``resume`` has its whole timeline kept in the store (the latest session of a
        resumed run). Any other (a streamed or batched run, or one whose process died)
        is rebuilt from its audit log: attempts and backoffs of top-level agents, without
        queueing on limits, review waits or nested agents.
        """
        return TimelinePicture(self._stored_timeline(run_key))

    def trace(self, run_key: str, format: str = "json") -> dict[str, Any]:
        """A stored run as a JSON-ready trace; see :meth:`RunResult.trace` for the
        formats (``"perfetto"``: Chrome trace events for ui.perfetto.dev)."""
        return timeline_trace(self._stored_timeline(run_key), format)

    def _stored_timeline(self, run_key: str) -> Timeline:
        if self._store is None:
            raise GraphError("this graph has no store, so it keeps no runs; the timeline "
                             "of a run is RunResult.timeline(); for stored runs, "
                             "compile(store=...)")
        self._store.load_run(run_key)  # a clear StoreError for an unknown key
        kept = self._store.load_timeline(run_key)
        if kept is not None:
            return Timeline.from_json(kept)
        return timeline_from_store(self._store, run_key, edges=self._edges())

    def runs(self, status: str | Sequence[str] | None = None) -> list[RunSummary]:
        """This graph's runs in its store (by graph fingerprint), newest first; e.g.
        ``runs("interrupted")`` lists those Ctrl-C or interpreter exit stopped, to resume,
        ``runs("needs_review")`` those awaiting a decision. ``store.runs()`` lists every
        graph's runs."""
        if self._store is None:
            raise GraphError("this graph has no store; compile(store=...) to keep runs")
        return self._store.runs(status, graph=self._fingerprint)

    async def ainvoke(self, input: Any, *, budget: Mapping[str, float] | None = None,
                      deadline: float | None = None) -> Any:
        """Like :meth:`invoke`, awaited; coroutine agents run on the caller's loop.

        Cancelling the awaiting task cancels the run.
        """
        return await self._ainvoke_observed(input, None, budget=budget, deadline=deadline)

    async def _ainvoke_observed(self, input: Any, observer: Any, *, budget: Any = None,
                                deadline: Any = None) -> Any:
        bridge = bridge_for_running_loop()
        run = None
        if self._store is None and observer is None and _tracing.tracer is None:
            budget, deadline = self._settings(budget, deadline)
            handle = _core.start(self._native, input, bridge.dispatcher, budget, deadline)
        else:
            # A durable run keeps its timeline in its store, as invoke's does.
            run = self._launch(input, bridge.dispatcher, budget=budget, deadline=deadline,
                               observer=observer, timeline=self._store is not None)
            handle = run._handle
        run_id = handle.id
        finished = bridge.run_finished(run_id)
        bridge.drain()  # coroutine entries were queued by the start itself
        try:
            if not handle.done:
                await finished
        except asyncio.CancelledError:
            handle.cancel()
            raise
        finally:
            bridge.forget(run_id)
            if run is not None:
                run._end_trace()
        if run is not None:
            return run.result()  # a durable run's end is recorded in its store too
        result = handle.output_or_report()
        if type(result) is _RunReport:  # any other result is the output itself
            raise failure_exception(result)
        return result

    @staticmethod
    def _end_chunks(handle: Any, run: Run | None, modes: StreamModes) -> list[Any]:
        """The chunks that end the stream of a run whose events were all taken, or
        raises what invoke would."""
        if run is not None:
            run.wait()  # a durable run's end is recorded in its store first
        if not modes.ends_with_chunks and handle.succeeded:
            return []  # no "end" event to make
        end = handle.end_event_or_report()
        if type(end) is _RunReport:
            raise failure_exception(end, None if run is None else run.run_key,
                                    None if run is None else run._durable_store)
        return modes.end(end)

    def stream(self, input: Any, *, stream_mode: str | Sequence[str] = "values",
               budget: Mapping[str, float] | None = None,
               deadline: float | None = None) -> Iterator[Any]:
        """Runs the graph, yielding what ``stream_mode`` asks for as it happens.

        Modes (one, or a list of them for ``(mode, chunk)`` pairs):

        - ``"values"`` (default): the run's result, as :meth:`invoke` returns it.
        - ``"updates"``: ``{agent_path: output}`` as each agent finishes.
        - ``"events"``: an :class:`Event` for each agent start, finish, error, skip and
          review, then an ``"end"`` event carrying the result.
        - ``"custom"``: what agents send with :func:`counterpoint.emit`.
        - ``"messages"``: ``(chunk, metadata)`` for each chunk a LangChain chat model
          streams inside an agent (needs langchain-core); ``metadata["agent"]`` is the
          agent's path.

        Agents of nested graphs and patterns are named ``"<agent>/<child agent>"``.
        Closing the iterator early cancels the run.

        Raises:
            AgentError: after yielding the failing agent's ``"error"`` event (and the
                other exceptions of :meth:`invoke`).
        """
        modes = StreamModes.of(stream_mode)
        return self._stream(input, modes, self._observer_for(modes), budget, deadline)

    def _observer_for(self, modes: StreamModes) -> Any:
        if "messages" in modes.modes:
            raise ImportError(
                "stream_mode='messages' streams the chunks of LangChain chat models called "
                "inside agents; install langchain-core: pip install 'counterpoint[langchain]'"
            )
        return AgentObserver() if modes.publishes else None

    def _stream(self, input: Any, modes: StreamModes, observer: Any, budget: Any = None,
                deadline: Any = None) -> Iterator[Any]:
        if (modes.batches_are_chunks and observer is None and self._store is None
                and _tracing.tracer is None):
            # "events" or "updates" alone, of a plain run: a native iterator makes each
            # chunk from the run's events, with no Python frame per chunk.
            budget, deadline = self._settings(budget, deadline)
            return _core.stream(self._native, input, self._dispatcher(), budget, deadline,
                                _EVENT_SLICE, EVENT_GATHER, modes.recorded, modes.form,
                                _raise_failure)
        return self._stream_chunks(input, modes, observer, budget, deadline)

    def _stream_chunks(self, input: Any, modes: StreamModes, observer: Any, budget: Any,
                       deadline: Any) -> Iterator[Any]:
        if not modes.records_events and observer is None:  # "values" alone: one result
            yield modes.chunk("values", CompiledGraph.invoke(self, input, budget=budget,
                                                             deadline=deadline))
            return
        run = None
        if self._store is None and observer is None and _tracing.tracer is None:
            # The run's first events come with its start, in one native call.
            budget, deadline = self._settings(budget, deadline)
            started = _core.start_stream(self._native, input, self._dispatcher(), budget,
                                         deadline, _EVENT_SLICE, EVENT_GATHER, modes.recorded,
                                         modes.form)
            handle, events = started.handle, started.events
        else:
            run = self._launch(input, self._dispatcher(), record_events=modes.recorded,
                               budget=budget, deadline=deadline, observer=observer)
            handle = run._handle
            events = handle.next_events(_EVENT_SLICE, EVENT_GATHER, modes.form) \
                if modes.records_events else None
        try:
            # Each batch (an EventBatch) makes its chunks, Events or updates as modes.form
            # says, one at a time as they are yielded.
            while events is not None:
                yield from events if modes.batches_are_chunks else modes.chunks(events)
                events = handle.next_events(_EVENT_SLICE, EVENT_GATHER, modes.form) \
                    if events.more else None
            yield from self._end_chunks(handle, run, modes)
        except KeyboardInterrupt:
            handle.interrupt()  # Ctrl-C: listed for resume, not cancelled on purpose
            raise
        finally:
            if not handle.done:  # closed early, or interrupted
                handle.cancel()
            if run is not None:
                run._end_trace()

    def astream(self, input: Any, *, stream_mode: str | Sequence[str] = "values",
                budget: Mapping[str, float] | None = None,
                deadline: float | None = None) -> AsyncIterator[Any]:
        """Like :meth:`stream`, for ``async for``; coroutine agents run on the caller's loop."""
        modes = StreamModes.of(stream_mode)
        return self._astream(input, modes, self._observer_for(modes), budget, deadline)

    def _astream(self, input: Any, modes: StreamModes, observer: Any,
                 budget: Any = None, deadline: Any = None) -> AsyncIterator[Any]:
        if not modes.records_events and observer is None:  # "values" alone: one result
            return self._astream_values(input, modes, budget, deadline)

        def launch(dispatcher: Any) -> tuple[Any, Run | None]:
            if self._store is None and observer is None and _tracing.tracer is None:
                limits, until = self._settings(budget, deadline)
                return _core.start(self._native, input, dispatcher, limits, until,
                                   modes.recorded, announce_events=True), None
            run = self._launch(input, dispatcher, record_events=modes.recorded,
                               budget=budget, deadline=deadline, observer=observer,
                               announce_events=True)
            return run._handle, run

        return AsyncStream(launch, modes, self._end_chunks).chunks()

    async def _astream_values(self, input: Any, modes: StreamModes, budget: Any,
                              deadline: Any) -> AsyncIterator[Any]:
        result = await CompiledGraph.ainvoke(self, input, budget=budget, deadline=deadline)
        yield modes.chunk("values", result)

    def batch(
        self,
        inputs: Iterable[Any],
        *,
        max_concurrency: int | None = None,
        return_exceptions: bool = False,
        budget: Mapping[str, float] | None = None,
        deadline: float | None = None,
        executor: RayBatch | None = None,
        progress: bool | str = False,
    ) -> list[Any]:
        """Runs the graph once per input, concurrently; results come in input order.

        Runs are independent: one failing does not affect the others.

        Args:
            inputs: One input per run.
            max_concurrency: At most this many runs in flight (default:
                ``DEFAULT_BATCH_WINDOW``, 1024, so memory stays bounded). With an
                executor, the runs in flight in each of its actors.
            return_exceptions: Put each failed run's exception in its place instead of
                raising the first one (in input order) after every run has finished.
            budget, deadline: Per run, as for :meth:`start`.
            executor: :func:`counterpoint.ray_batch` shards the runs over Ray actors,
                each compiling this graph once; None runs them in this process.
            progress: Show a progress bar counting finished and failed runs as they end
                (tqdm's, notebook-aware, with ``pip install "counterpoint[progress]"``;
                a line on stderr otherwise). A string is the bar's description.
        """
        label = progress_label(progress)
        if executor is not None:
            _check_max_concurrency(max_concurrency)
            return run_batch_on(executor, self, inputs, max_concurrency, return_exceptions,
                                budget, deadline, label)
        return self._batch(inputs, max_concurrency, return_exceptions, budget, deadline,
                           progress=label)

    def _batch(self, inputs: Iterable[Any], max_concurrency: int | None,
               return_exceptions: bool, budget: Any, deadline: Any,
               observers: Sequence[Any] | None = None, *,
               progress: str | None = None) -> list[Any]:
        """``batch``, each run observed by its entry of ``observers`` if given, with a
        progress bar described by ``progress`` if given."""
        _check_max_concurrency(max_concurrency)
        inputs = list(inputs)
        shared = self._request(None, self._dispatcher(), budget=budget, deadline=deadline)
        keys: list[str | None] = [None] * len(inputs)
        audits: list[AuditedRun | None] = [None] * len(inputs)
        tracer = _tracing.tracer
        traces: list[_tracing.RunTrace | None] = [None] * len(inputs)
        # Runs are prepared on engine threads: their traces are made in (a copy of) the
        # caller's context, to nest under whatever the caller is inside of.
        caller = contextvars.copy_context() if tracer is not None else None
        prepare = None
        if self._store is not None or observers is not None or tracer is not None:
            durable = self._store is not None

            def prepare(index: int, item: Any) -> Any:
                observer = None if observers is None else observers[index]
                if tracer is not None:
                    assert caller is not None
                    trace = traces[index] = caller.copy().run(tracer.trace, self, observer)
                    observer = trace.observer
                # A traced run records its timeline: the batch hands its events over as
                # it ends, to complete its spans.
                request = self._request(item, shared.dispatcher, budget=budget,
                                        deadline=deadline, observer=observer,
                                        record_events=_NO_EVENTS if tracer is None
                                        else TIMELINE_EVENTS)
                if durable:
                    request, keys[index], audits[index] = self._durable_request(
                        request, budget=self._settings(budget, deadline)[0])
                return request

        bar = None if progress is None else Progress(len(inputs), progress)

        def ended(indices: list[int], ended_reports: list[Any], events: list[Any],
                  elapsed: list[float]) -> None:
            # Each run's trace ends (its spans go out) with its run, not with the batch.
            if tracer is not None:
                for index, report, taken, seconds in zip(indices, ended_reports, events,
                                                         elapsed):
                    trace = traces[index]
                    if trace is not None:
                        traces[index] = None
                        timeline = None if taken is None else Timeline.from_events(
                            taken, run_id=report.run_id, status=report.status.name,
                            elapsed=seconds, edges=self._edges(), run_key=keys[index])
                        trace.reported(report, keys[index], timeline)
            if bar is not None:
                bar.advance(len(ended_reports),
                            sum(1 for report in ended_reports if not report.ok))

        try:
            reports = _core.batch(self._native, inputs, shared, max_concurrency or 0, prepare,
                                  ended if bar is not None or tracer is not None else None)
        except BaseException as exc:  # Ctrl-C: the runs that had started were interrupted
            for trace in traces:
                if trace is not None:
                    trace.abandoned(exc)
            raise
        finally:
            if bar is not None:
                bar.close()
        if self._store is not None:
            # Recorded here as well as by the checkpoint writer, so that once batch()
            # returns the store agrees (an "interrupted" status is never overwritten).
            for report, key, audited in zip(reports, keys, audits):
                if key is not None:
                    self._store.finish_run(key, report.status.name)
                if audited is not None:
                    audit_finish(audited, report)
        if return_exceptions:
            return [as_exception(report, key, self._store) for report, key in zip(reports, keys)]
        return [unwrap(report, key, self._store) for report, key in zip(reports, keys)]

    async def abatch(
        self,
        inputs: Iterable[Any],
        *,
        max_concurrency: int | None = None,
        return_exceptions: bool = False,
        budget: Mapping[str, float] | None = None,
        deadline: float | None = None,
        executor: RayBatch | None = None,
        progress: bool | str = False,
    ) -> list[Any]:
        """Like :meth:`batch`, awaited; coroutine agents run on the caller's loop (or,
        with an executor, the batch runs on Ray while the loop goes on)."""
        label = progress_label(progress)
        if executor is not None:
            connect(executor)
            return await asyncio.to_thread(
                self.batch, inputs, max_concurrency=max_concurrency,
                return_exceptions=return_exceptions, budget=budget, deadline=deadline,
                executor=executor, progress=label or False)
        return await self._abatch_each(
            list(inputs), max_concurrency, return_exceptions,
            lambda _, item: self.ainvoke(item, budget=budget, deadline=deadline), label)

    @staticmethod
    async def _abatch_each(inputs: list[Any], max_concurrency: int | None,
                           return_exceptions: bool,
                           run: Callable[[int, Any], Awaitable[Any]],
                           progress: str | None = None) -> list[Any]:
        """Awaits ``run(index, input)`` for every input, at most ``max_concurrency`` at
        once, with a progress bar described by ``progress`` if given."""
        _check_max_concurrency(max_concurrency)
        limit = asyncio.Semaphore(max_concurrency or DEFAULT_BATCH_WINDOW)
        bar = None if progress is None else Progress(len(inputs), progress)

        async def one(index: int, item: Any) -> Any:
            async with limit:
                if bar is None:
                    return await run(index, item)
                try:
                    result = await run(index, item)
                except Exception:
                    bar.advance(1, 1)
                    raise
                bar.advance(1)
                return result

        try:
            return await asyncio.gather(
                *(one(index, item) for index, item in enumerate(inputs)),
                return_exceptions=return_exceptions)
        finally:
            if bar is not None:
                bar.close()

    def __repr__(self) -> str:
        return f"CompiledGraph(agents={self.agents})"


def _recompile(specs: tuple[NodeSpec, ...], on_error: str, store: Store | None,
               budget: dict[str, float] | None, deadline: float | None) -> CompiledGraph:
    """Unpickles a compiled graph (see ``CompiledGraph.__reduce__``): its node specs
    added to a graph again and compiled."""
    graph = Graph(on_error=on_error)
    graph._nodes.extend(specs)
    return graph.compile(store=store, budget=budget, deadline=deadline)


def route(value: Any, to: Sequence[str]) -> Any:
    """Return this from an agent to deliver ``value`` only to the successors named in
    ``to``; the others are skipped (unless another predecessor delivers to them)."""
    return _core.Routed(value, list(to))


def delegate(graph: CompiledGraph, input: Any, *, then: Any = None) -> Any:
    """Return this from an agent to make its result the result of running ``graph`` on
    ``input`` as a native child run (cancelled with its parent, its events streamed as
    ``"<agent>/<child agent>"``).

    With ``then``, a quick function (run inline) receives the child's result and returns
    the agent's result, which may be another ``delegate(...)``: that is how loops
    iterate without a Python loop.
    """
    following = None if then is None else _core.SyncAgent(then, _core.Dispatch.inline)
    return _core.Delegation(graph._native, input, following)
