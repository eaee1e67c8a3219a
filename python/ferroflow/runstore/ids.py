"""Run and result ids; they live in `ferroflow.ids` (the results layer below uses them too)."""

from ferroflow.ids import clock_ordered_uuid

__all__ = ["clock_ordered_uuid"]
