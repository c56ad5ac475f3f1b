"""What counterpoint's spans are called and the attributes they carry: the OpenTelemetry
GenAI semantic conventions' names where one applies, ``counterpoint.*`` for what no
convention covers (docs/observability-otel.md lists them all)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..._errors import AgentTimeout, CircuitOpenError, ReviewRejected
from ..._results import Result, confidence_of

# GenAI semantic conventions.
OPERATION = "gen_ai.operation.name"
INVOKE_WORKFLOW = "invoke_workflow"
INVOKE_AGENT = "invoke_agent"
WORKFLOW_NAME = "gen_ai.workflow.name"
AGENT_NAME = "gen_ai.agent.name"
CONVERSATION = "gen_ai.conversation.id"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
# General conventions.
ERROR_TYPE = "error.type"
OTHER_ERROR = "_OTHER"  # the conventions' value for a failure that has no type

# counterpoint's own.
RUN_ID = "counterpoint.run.id"
RUN_STATUS = "counterpoint.run.status"
AGENT_STATUS = "counterpoint.agent.status"
ATTEMPT = "counterpoint.attempt"
FALLBACK = "counterpoint.fallback"
CONTINUATION = "counterpoint.continuation"
RETRY_DELAY = "counterpoint.retry.delay"
QUEUED = "counterpoint.queued."  # + the limit's name
BREAKER_STATE = "counterpoint.breaker.state"
SKIP_REASON = "counterpoint.skip.reason"
REVIEW_STATUS = "counterpoint.review.status"
REVIEW_REASON = "counterpoint.review.reason"
CONFIDENCE = "counterpoint.confidence"
RESTORED = "counterpoint.restored"
USAGE = "counterpoint.usage."  # + the usage's name, as the agent reported it

# Span events on the workflow span, for agents that made no call in the run.
SKIPPED_EVENT = "counterpoint.agent.skipped"
RESTORED_EVENT = "counterpoint.agent.restored"

# The usage names agents commonly report, as the conventions name them.
_TOKENS = {
    "input_tokens": INPUT_TOKENS,
    "prompt_tokens": INPUT_TOKENS,
    "output_tokens": OUTPUT_TOKENS,
    "completion_tokens": OUTPUT_TOKENS,
}

# How an agent failed when it raised nothing itself (the engine's own failures), named
# by the exception counterpoint reports for it as the AgentError's cause.
TIMED_OUT = AgentTimeout.__name__
CIRCUIT_OPEN = CircuitOpenError.__name__
REJECTED = ReviewRejected.__name__


def usage_attributes(usage: Mapping[str, float] | None) -> dict[str, Any]:
    """``Result(usage=...)`` as attributes: every name as ``counterpoint.usage.<name>``,
    and token counts under the conventions' names too."""
    attributes: dict[str, Any] = {}
    if not usage:
        return attributes
    for name, amount in usage.items():
        attributes[USAGE + name] = float(amount)
        convention = _TOKENS.get(name)
        if convention is not None:
            attributes[convention] = int(attributes.get(convention, 0) + amount)
    return attributes


def output_attributes(output: Any) -> dict[str, Any]:
    """What an agent's output says about itself: its usage and confidence, if reported."""
    attributes = usage_attributes(output.usage) if isinstance(output, Result) else {}
    confidence = confidence_of(output)
    if confidence is not None:
        attributes[CONFIDENCE] = confidence
    return attributes


def is_breaker_refusal(message: str) -> bool:
    """Whether an agent's failure is its circuit breaker refusing the call (the engine's
    wording: "circuit breaker '<name>' is open; failing fast")."""
    return "circuit breaker '" in message and "' is open" in message
