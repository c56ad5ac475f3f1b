"""Orchestration patterns, each a builder of native graphs that nest to any depth."""

from .chain import sequential
from .iterate import END, Verdict, group_chat, loop
from .merging import Judge, judge
from .parallel import consensus, fan_out, parallel
from .routing import adaptive, router
from .supervisor import PlanError, Subtask, supervisor

__all__ = [
    "END",
    "Judge",
    "PlanError",
    "Subtask",
    "Verdict",
    "adaptive",
    "consensus",
    "fan_out",
    "group_chat",
    "judge",
    "loop",
    "parallel",
    "router",
    "sequential",
    "supervisor",
]
