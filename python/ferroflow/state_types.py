"""The types of state a flow or task run can be in, and which of them end a run.

Plain values with no imports, so every layer can name them: `ferroflow.states` builds its `State`
objects on them, and the run store computes a run's progress from them without the runtime.
"""

from __future__ import annotations

import enum


class StateType(str, enum.Enum):
    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    CRASHED = "CRASHED"
    PAUSED = "PAUSED"


TERMINAL_STATE_TYPES = frozenset(
    {StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED}
)
