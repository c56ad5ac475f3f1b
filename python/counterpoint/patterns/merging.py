"""Merge policies for parallel branches.

Every policy sees each branch's output by name, in declaration order, and returns a
:class:`~counterpoint.Merged` that says which branches agreed, which disagreed, which
failed, and how the value was chosen. Ties are broken by declaration order: among tied
outputs, the one first produced by the earliest-declared branch wins.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .._errors import GraphError
from .._agents import check_agent
from .._results import Failed, Merged, confidence_of, value_of



@dataclass(frozen=True)
class Judge:
    """A merge policy that lets an agent pick the winner.

    The judge (any agent: a function, a coroutine, a runnable, a graph) receives
    ``{branch: output}`` (failed branches left out) and returns the chosen value; the
    :class:`Merged` result records who agreed with it.
    """

    choose: Any

    def __post_init__(self) -> None:
        try:
            check_agent("judge", "the judge", self.choose)
        except GraphError:
            raise GraphError(
                f"judge needs a callable (or any agent) that picks the answer, got "
                f"{type(self.choose).__name__}"
            ) from None


def judge(choose: Callable[[dict[str, Any]], Any]) -> Judge:
    """Merge policy: ``choose({branch: output})`` returns the merged value."""
    return Judge(choose)


POLICIES = ("all", "first", "majority", "quorum", "confidence")


def _key(value: Any) -> Any:
    """Outputs are compared by value; unhashable ones by their canonical JSON."""
    try:
        hash(value)
        return ("value", value)
    except TypeError:
        return ("json", json.dumps(value, sort_keys=True, default=repr))


def _split(outputs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, BaseException]]:
    present: dict[str, Any] = {}
    failed: dict[str, BaseException] = {}
    for name, output in outputs.items():
        if isinstance(output, Failed):
            failed[name] = output.error
        else:
            present[name] = output
    return present, failed


def _weigh(
    present: Mapping[str, Any], weight: Callable[[Any], float]
) -> tuple[list[Any], dict[Any, float], dict[Any, Any]]:
    """Distinct keys in order of first appearance, their summed weights, their values."""
    order: list[Any] = []
    totals: dict[Any, float] = {}
    values: dict[Any, Any] = {}
    for output in present.values():
        key = _key(value_of(output))
        if key not in totals:
            order.append(key)
            totals[key] = 0.0
            values[key] = value_of(output)
        totals[key] += weight(output)
    return order, totals, values


def _merged(policy: str, value: Any, resolution: str, present: Mapping[str, Any],
            failed: dict[str, BaseException], tally: dict[str, float]) -> Merged:
    chosen = _key(value)
    agreeing = tuple(n for n, o in present.items() if _key(value_of(o)) == chosen)
    disagreeing = tuple(n for n, o in present.items() if _key(value_of(o)) != chosen)
    return Merged(
        value=value,
        policy=policy,
        resolution=resolution,
        outputs={n: value_of(o) for n, o in present.items()},
        agreeing=agreeing,
        disagreeing=disagreeing,
        failed=failed,
        tally=tally,
    )


def _no_output(policy: str, failed: dict[str, BaseException]) -> RuntimeError:
    names = ", ".join(failed) or "none"
    return RuntimeError(f"{policy} merge: every branch failed ({names}); nothing to merge")


def _by_weight(policy: str, outputs: Mapping[str, Any], weight: Callable[[Any], float],
               quorum: float | None = None) -> Merged:
    present, failed = _split(outputs)
    if not present:
        raise _no_output(policy, failed)
    order, totals, values = _weigh(present, weight)
    best = max(totals.values())
    tied = [k for k in order if totals[k] == best]
    winner = tied[0]
    tally = {repr(values[k]): totals[k] for k in order}
    unit = "votes" if policy != "confidence" else "confidence"
    resolution = f"{policy}: {values[winner]!r} with {best:g} {unit} of {sum(totals.values()):g}"
    if len(tied) > 1:
        resolution += (
            f"; tied with {', '.join(repr(values[k]) for k in tied[1:])}, broken by "
            "declaration order (earliest branch wins)"
        )
    if quorum is not None:
        needed = quorum if quorum >= 1 else quorum * (len(present) + len(failed))
        if best < needed:
            return Merged(
                value=None,
                policy=policy,
                resolution=f"no quorum: best {values[winner]!r} had {best:g} of {needed:g} "
                "votes needed",
                outputs={n: value_of(o) for n, o in present.items()},
                agreeing=(),
                disagreeing=tuple(present),
                failed=failed,
                tally=tally,
            )
    return _merged(policy, values[winner], resolution, present, failed, tally)


def majority(outputs: Mapping[str, Any]) -> Merged:
    return _by_weight("majority", outputs, lambda _: 1.0)


def quorum(outputs: Mapping[str, Any], needed: float) -> Merged:
    return _by_weight("quorum", outputs, lambda _: 1.0, quorum=needed)


def confidence_weighted(outputs: Mapping[str, Any]) -> Merged:
    def weight(output: Any) -> float:
        found = confidence_of(output)
        return 0.0 if found is None else found

    return _by_weight("confidence", outputs, weight)


def first(outputs: Mapping[str, Any]) -> Merged:
    ((winner, output),) = outputs.items()
    return _merged("first", value_of(output), f"first success: {winner!r}",
                   {winner: output}, {}, {})


def candidates(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """What a judge sees: the plain output of every branch that did not fail."""
    present, failed = _split(outputs)
    if not present:
        raise _no_output("judge", failed)
    return {n: value_of(o) for n, o in present.items()}


def judged(outputs: Mapping[str, Any], value: Any, judge_name: str) -> Merged:
    """Records the judge's choice among ``outputs``."""
    present, failed = _split(outputs)
    return _merged("judge", value_of(value), f"chosen by judge {judge_name}", present, failed, {})


def check_policy(pattern: str, merge: Any) -> None:
    if merge is None or isinstance(merge, Judge) or callable(merge):
        return
    if isinstance(merge, str) and merge in POLICIES:
        return
    raise GraphError(
        f"{pattern}: merge={merge!r} is not a policy; use one of "
        f"{', '.join(map(repr, POLICIES))}, cp.judge(callable), or a reducer callable"
    )
