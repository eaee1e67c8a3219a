"""A sensor-data pipeline: the flow that `examples/demo.py` (and `make demo`) runs.

Two tasks produce the large results — a float32 array of sensor readings (256 MiB by default)
and a maintenance log (a list of records) — and are cached by their inputs
(`cache_key_fn=task_input_hash`). Two tasks reduce them to small results, and the last one
publishes a report. The flow persists every result with pickle + zstd and retries once: when
asked to, the report fails on the flow's first attempt (a simulated outage), and the retry
reuses every task that had completed instead of computing it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np

from ferroflow import flow, task
from ferroflow.context import get_run_context
from ferroflow.serializers import CompressedSerializer
from ferroflow.tasks import task_input_hash

#: Every result is pickled (arrays as out-of-band buffers, no copy) and each segment compressed
#: with zstd at its default level: ~3x smaller readings at a few hundred MB/s on two cores.
RESULT_SERIALIZER = CompressedSerializer(serializer="pickle", compressionlib="zstd", level=3)

REGIONS = ("north", "south", "east", "west", "harbour", "airport")
ACTIONS = ("inspected", "recalibrated", "cleaned", "battery replaced", "firmware updated", "moved")


@dataclass(frozen=True)
class PipelineSize:
    """How much data the pipeline makes: `sensors` x `samples` float32 readings and
    `log_rows` maintenance records."""

    sensors: int
    samples: int
    log_rows: int

    @classmethod
    def for_bytes(cls, readings_bytes: int, sensors: int = 64) -> PipelineSize:
        samples = max(1_000, readings_bytes // (4 * sensors))
        # One maintenance record per 100 readings: 670,000 records (~45 MiB pickled) at 256 MiB.
        return cls(sensors=sensors, samples=samples, log_rows=max(100, sensors * samples // 100))

    @property
    def readings_bytes(self) -> int:
        return self.sensors * self.samples * 4


class ReportServerUnavailable(ConnectionError):
    """The simulated outage of the report server on the flow's first attempt."""


@task(cache_key_fn=task_input_hash, cache_expiration=timedelta(days=7))
def record_readings(sensors: int, samples: int, seed: int) -> np.ndarray:
    """Temperature readings (degrees C, 0.01 resolution) of each sensor: a slow drift with noise,
    which compresses the way real measurements do."""
    rng = np.random.default_rng(seed)
    readings = np.empty((sensors, samples), dtype=np.float32)
    for sensor in range(sensors):  # one row at a time: no temporary twice the array's size
        drift = np.cumsum(rng.standard_normal(samples, dtype=np.float32) * np.float32(0.05))
        readings[sensor] = np.round(drift + rng.uniform(5, 25), 2)
    return readings


@task(cache_key_fn=task_input_hash, cache_expiration=timedelta(days=7))
def load_maintenance_log(rows: int, sensors: int, seed: int) -> list[dict[str, Any]]:
    """The maintenance log: who did what to which sensor, and when."""
    rng = np.random.default_rng(seed)
    sensor_ids = rng.integers(0, sensors, rows)
    hours = np.sort(rng.integers(0, 24 * 365, rows))
    actions = rng.integers(0, len(ACTIONS), rows)
    minutes = rng.integers(5, 240, rows)
    return [
        {
            "entry": entry,
            "sensor": f"sensor-{sensor:03d}",
            "region": REGIONS[sensor % len(REGIONS)],
            "hour": int(hour),
            "action": ACTIONS[action],
            "technician": f"tech-{(entry * 7 + sensor) % 40:02d}",
            "minutes": int(duration),
        }
        for entry, (sensor, hour, action, duration) in enumerate(
            zip(sensor_ids.tolist(), hours.tolist(), actions.tolist(), minutes.tolist(), strict=True)
        )
    ]


@task
def sensor_statistics(readings: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sensor mean, minimum, maximum and standard deviation."""
    return {
        "mean": readings.mean(axis=1),
        "min": readings.min(axis=1),
        "max": readings.max(axis=1),
        "std": readings.std(axis=1),
    }


@task
def unstable_sensors(statistics: dict[str, np.ndarray], log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sensors whose readings spread most, with how often they were serviced."""
    visits: dict[str, int] = {}
    for record in log:
        visits[record["sensor"]] = visits.get(record["sensor"], 0) + 1
    spread = statistics["max"] - statistics["min"]
    worst = np.argsort(spread)[::-1][:5]
    return [
        {
            "sensor": f"sensor-{index:03d}",
            "range": round(float(spread[index]), 2),
            "visits": visits.get(f"sensor-{index:03d}", 0),
        }
        for index in worst.tolist()
    ]


@task
def publish_report(unstable: list[dict[str, Any]], fail_first_attempt: bool) -> str:
    """The report's text. Fails on the flow's first attempt when `fail_first_attempt` is set."""
    if fail_first_attempt and get_run_context().flow_run.run_count == 1:
        raise ReportServerUnavailable("simulated outage: the report server did not answer")
    lines = [f"{row['sensor']}: range {row['range']} C, serviced {row['visits']} times" for row in unstable]
    return "Least stable sensors\n" + "\n".join(lines)


@flow(retries=1, result_serializer=RESULT_SERIALIZER)
def sensor_pipeline(
    sensors: int, samples: int, log_rows: int, seed: int = 0, fail_first_attempt: bool = False
) -> str:
    readings = record_readings(sensors, samples, seed)
    log = load_maintenance_log(log_rows, sensors, seed)
    statistics = sensor_statistics(readings)
    unstable = unstable_sensors(statistics, log)
    return publish_report(unstable, fail_first_attempt)
