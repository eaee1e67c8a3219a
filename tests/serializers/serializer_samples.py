"""Values the serializer tests round-trip, defined at module level so that JSON can name their
classes and pickle can import them."""

import dataclasses
import datetime
import decimal
import enum
import pathlib
import threading
import uuid

from pydantic import BaseModel


class Color(enum.Enum):
    RED = "red"


class Point(BaseModel):
    x: int
    y: float


class Reading(BaseModel):
    at: datetime.datetime
    where: Point
    tags: set[str]
    id: uuid.UUID


@dataclasses.dataclass
class Span:
    start: datetime.date
    days: int


class Holder:
    def __init__(self) -> None:
        self.number = 1
        self.lock = threading.Lock()


EVERY_TYPE = {
    "datetime": datetime.datetime(2026, 11, 25, 12, 30, 5, 123456, tzinfo=datetime.UTC),
    "naive": datetime.datetime(2026, 11, 25, 12, 0),
    "date": datetime.date(2026, 11, 25),
    "time": datetime.time(23, 59, 58, 7),
    "timedelta": datetime.timedelta(days=-1, seconds=5, microseconds=3),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "decimal": decimal.Decimal("3.14159265358979323846"),
    "bytes": b"\x00\xffraw",
    "bytearray": bytearray(b"abc"),
    "set": {1, 2, 3},
    "frozenset": frozenset({"a", "b"}),
    "tuple": (1, ("nested", 2.5)),
    "enum": Color.RED,
    "path": pathlib.Path("/data/results"),
    "model": Reading(
        at=datetime.datetime(2026, 1, 1),
        where=Point(x=1, y=2.5),
        tags={"a"},
        id=uuid.UUID(int=7),
    ),
    "dataclass": Span(start=datetime.date(2026, 1, 1), days=3),
    "complex": 1 + 2j,
    "big_int": 2**100,
    "infinity": float("inf"),
    "non_str_keys": {1: "one", (2, 3): "pair"},
    "looks_tagged": {"__ferroflow_type__": "uuid", "value": "not a uuid"},
    "looks_prefect": {"__class__": "uuid.UUID", "data": "not a uuid"},
    "plain": [1, 2.5, "x", None, True, {"k": []}],
}
