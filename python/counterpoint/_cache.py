"""Per-agent output cache (``cache=cp.Cache(...)``): an agent called with an input it
was already given returns the output the graph's store kept, without being called."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import pickle
import time
import weakref
from collections.abc import Callable
from typing import Any

from ._agents import _declares_loop, entry_point
from ._codec import Codec
from ._errors import StoreError
from ._native import _core
from ._policies import Cache, audit_notes
from ._results import Result
from ._store import Store

# Inputs are hashed as JSON whatever the store's codec, so a key does not depend on it.
_JSON = Codec()


def qualified_name(agent: Any) -> str:
    """``module.qualname`` of a function, method or class; of its class for any other
    object (a callable object, a runnable)."""
    target = agent if inspect.isroutine(agent) or inspect.isclass(agent) else type(agent)
    module = getattr(target, "__module__", None) or "?"
    return f"{module}.{getattr(target, '__qualname__', type(target).__name__)}"


def cache_identity(name: str, agent: Any, cache: Cache) -> str:
    """Whose entries these are: the Cache's ``key``, or the agent's name in its graph and
    qualified name (the name keeps apart agents of one class, such as two LangChain
    chains, that would otherwise share entries)."""
    return cache.key if cache.key is not None else f"{name}:{qualified_name(agent)}"


def _input_bytes(input: Any) -> bytes:
    """The input as bytes that equal inputs share: canonical JSON (dict keys sorted, as a
    join's dict may come in any order), or a pickle of what JSON cannot encode."""
    try:
        data = json.loads(_JSON.encode(input))
    except (TypeError, ValueError):
        return pickle.dumps(input, protocol=pickle.HIGHEST_PROTOCOL)
    return json.dumps(data, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def entry_key(identity: str, version: str | int, input: Any) -> str:
    """The key of the entry for ``input``: a SHA-256 over the identity, the version and
    the input."""
    digest = hashlib.sha256(json.dumps([identity, version]).encode("utf-8"))
    digest.update(b"\0")
    digest.update(_input_bytes(input))
    return digest.hexdigest()


class _Entries:
    """Looks up and stores one cached agent's entries."""

    def __init__(self, store: Store, name: str, identity: str, cache: Cache) -> None:
        # Weakly: the engine may keep a graph's agents after the graph is gone, and the
        # store (with its checkpoint writer) must not live on with them. Every run of
        # the graph holds the store while it runs.
        try:
            self._store: Callable[[], Store | None] = weakref.ref(store)
        except TypeError:  # not weakly referenceable: kept as long as the agent
            self._store = lambda: store
        self._name_of_store = repr(store)
        self.name = name
        self.identity = identity
        self.cache = cache

    @property
    def store(self) -> Store:
        store = self._store()
        if store is None:
            raise StoreError(f"{self._name_of_store} was garbage-collected, so agent "
                             f"'{self.name}' has no cache; keep the store open while its "
                             "graph runs")
        return store

    def lookup(self, input: Any) -> tuple[str, bool, Any]:
        """``(key, hit, output)``: on a hit, the output to return for ``input``."""
        try:
            key = entry_key(self.identity, self.cache.version, input)
        except Exception as exc:
            raise StoreError(
                f"agent '{self.name}': its input cannot be hashed for its cache, as it can "
                f"be neither encoded as JSON nor pickled ({type(exc).__name__}: {exc}); pass "
                "it JSON-compatible or picklable input, or drop cache="
            ) from exc
        hit, entry = self.store.cache_get(key)
        self.cache._counted(hit)
        if not hit:
            return key, False, None
        notes = audit_notes.get()
        if notes is not None:  # the run's audit log marks the outcome as cached
            notes.append({"kind": "cache_hit", "agent": self.name})
        output, routes = entry["output"], entry["routes"]
        return key, True, output if routes is None else _core.Routed(output, routes)

    def keep(self, key: str, output: Any) -> None:
        """Stores what a real call returned (its usage left out: a hit spends nothing)."""
        routes = None
        if isinstance(output, _core.Routed):
            output, routes = output.value, list(output.routes)
        if isinstance(output, Result) and output.usage is not None:
            output = dataclasses.replace(output, usage=None)
        ttl = self.cache.ttl
        self.store.cache_put(key, {"output": output, "routes": routes}, owner=self.identity,
                             expires=None if ttl is None else time.time() + ttl)


def cached_agent(store: Store, name: str, declared: Any, agent: Any, cache: Cache) -> Any:
    """``agent`` (as the engine would call it) answering from ``store``'s cache when it
    can, and filling it when it calls the agent.

    Args:
        name: The agent's name in its graph.
        declared: The agent as given to the graph, for its identity.
        agent: What to call on a miss (the declared agent, or its executor's binding).
    """
    entries = _Entries(store, name, cache_identity(name, declared, cache), cache)
    call, is_async = entry_point(agent)
    if is_async:
        @functools.wraps(call)
        async def cached_async(input: Any) -> Any:
            key, hit, output = entries.lookup(input)
            if hit:
                return output
            output = await call(input)
            entries.keep(key, output)
            return output

        return cached_async

    @functools.wraps(call)
    def cached(input: Any) -> Any:
        key, hit, output = entries.lookup(input)
        if hit:
            return output
        output = call(input)
        entries.keep(key, output)
        return output

    if _declares_loop(agent):  # it delegates to graphs with coroutine agents
        cached.uses_event_loop = True  # type: ignore[attr-defined]
    return cached
