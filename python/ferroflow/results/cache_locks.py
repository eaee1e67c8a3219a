"""Cache locks: compute-once for `isolation_level="SERIALIZABLE"`.

A lock is a small object next to the cache records (`.ferroflow-cache/locks/<key>.lock`),
created with the storage's create-only put: of the processes that miss one key at the same time,
exactly one creates it and computes; the others wait for its record. The lock holds its owner
(host, process, thread), a token unique to this acquisition, a lease in seconds and a heartbeat
time, which a thread of the holder renews every third of the lease.

A holder that dies (killed, its machine gone) stops renewing: once its heartbeat is older than
its lease, a waiter takes the lock over. Taking over is itself create-only: a waiter first creates
a marker named after the dead holder's token, so that of several waiters one removes the dead
lock; the new lock is then created like any other (a newcomer may win it; the others go on
waiting). Heartbeats compare wall-clock times: machines sharing a storage need synchronized
clocks (NTP), as any lease does.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass

from ferroflow.exceptions import FerroflowException
from ferroflow.results.cache_records import LOCKS_PREFIX, RecordStorage, record_key, unique_name

DEFAULT_LEASE_SECONDS = 60.0
DEFAULT_WAIT_SECONDS = 600.0


class CacheLockTimeout(FerroflowException, TimeoutError):
    """Waiting for another run of the same cache key (SERIALIZABLE) took longer than allowed."""


@dataclass(frozen=True, slots=True)
class LockInfo:
    owner: str
    token: str
    lease_seconds: float
    heartbeat: float  # seconds since the epoch

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "owner": self.owner,
                "token": self.token,
                "lease_seconds": self.lease_seconds,
                "heartbeat": self.heartbeat,
            }
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LockInfo | None:
        try:
            document = json.loads(data)
            return cls(
                str(document["owner"]),
                str(document["token"]),
                float(document["lease_seconds"]),
                float(document["heartbeat"]),
            )
        except (ValueError, KeyError, TypeError):
            return None

    def expired(self, now: float) -> bool:
        return now - self.heartbeat > self.lease_seconds


def lock_key(cache_key: str) -> str:
    name = record_key(cache_key).rsplit("/", 1)[1].removesuffix(".json")
    return f"{LOCKS_PREFIX}{name}.lock"


_HOST = socket.gethostname()


def _owner() -> str:
    return f"{_HOST}:{os.getpid()}:{threading.current_thread().name}"


class HeldLock:
    """A lock this process holds; `release()` it when the run has ended (its record written)."""

    __slots__ = ("storage", "key", "info", "next_beat")

    def __init__(self, storage: RecordStorage, key: str, info: LockInfo) -> None:
        self.storage = storage
        self.key = key
        self.info = info
        self.next_beat = time.monotonic() + self.interval
        _heartbeats.add(self)

    @property
    def interval(self) -> float:
        return max(self.info.lease_seconds / 3, 0.01)

    def beat(self) -> bool:
        """Renew the heartbeat; False when the lock is no longer this holder's (taken over
        after this process stalled past its lease): nothing more to renew."""
        current = LockInfo.from_bytes(self.storage.read(self.key) or b"")
        if current is None or current.token != self.info.token:
            return False
        renewed = LockInfo(self.info.owner, self.info.token, self.info.lease_seconds, time.time())
        try:
            self.storage.replace(self.key, renewed.to_bytes())
        except OSError:
            pass  # tried again at the next beat; the lease covers a missed one
        self.next_beat = time.monotonic() + self.interval
        return True

    def release(self) -> None:
        _heartbeats.discard(self)
        current = LockInfo.from_bytes(self.storage.read(self.key) or b"")
        if current is not None and current.token == self.info.token:
            self.storage.delete(self.key)


class _Heartbeats:
    """One thread per process renews the heartbeats of every lock the process holds: starting a
    thread per lock cost more than the rest of taking and releasing it."""

    def __init__(self) -> None:
        self._held: dict[str, HeldLock] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._wake_at = 0.0  # when the thread wakes next (monotonic)

    def add(self, lock: HeldLock) -> None:
        with self._changed:
            self._held[lock.info.token] = lock
            if self._thread is None or not self._thread.is_alive():  # first use, or a forked child
                self._thread = threading.Thread(target=self._run, name="ferroflow-cache-locks", daemon=True)
                self._thread.start()
            elif lock.next_beat < self._wake_at:  # else the thread wakes in time anyway
                self._changed.notify()

    def discard(self, lock: HeldLock) -> None:
        with self._changed:
            self._held.pop(lock.info.token, None)

    def _run(self) -> None:
        idle_since = time.monotonic()
        while True:
            with self._changed:
                now = time.monotonic()
                if not self._held:
                    # Idle: look again within a second (a lock added meanwhile is due much later
                    # with any ordinary lease, so taking one wakes nobody), and end after a while.
                    if now - idle_since > _IDLE_EXIT_SECONDS:
                        self._thread = None
                        return
                    self._wake_at = now + _IDLE_POLL_SECONDS
                    self._changed.wait(_IDLE_POLL_SECONDS)
                    continue
                idle_since = now
                due = [lock for lock in self._held.values() if lock.next_beat <= now]
                if not due:
                    self._wake_at = min(lock.next_beat for lock in self._held.values())
                    self._changed.wait(self._wake_at - now)
                    continue
            for lock in due:
                if not lock.beat():
                    self.discard(lock)


_IDLE_POLL_SECONDS = 1.0
_IDLE_EXIT_SECONDS = 30.0
_heartbeats = _Heartbeats()


def try_acquire(storage: RecordStorage, cache_key: str, lease_seconds: float) -> HeldLock | None:
    """Take the lock of `cache_key` if no one holds it (or its holder's lease ran out); None
    when another holds it."""
    key = lock_key(cache_key)
    info = LockInfo(_owner(), unique_name(), lease_seconds, time.time())
    if storage.create_only(key, info.to_bytes()):
        return HeldLock(storage, key, info)
    current = LockInfo.from_bytes(storage.read(key) or b"")
    if current is None or not current.expired(time.time()):
        return None  # held (or released just now: the caller's next try will see)
    return _take_over(storage, key, current, info)


def _take_over(storage: RecordStorage, key: str, dead: LockInfo, info: LockInfo) -> HeldLock | None:
    """Replace the lock of a holder whose lease ran out, if this waiter wins the right to: the
    create-only marker named after the dead holder's token admits one waiter per dead lock."""
    marker = f"{key}.takeover-{dead.token}"
    now = time.time()
    if not storage.create_only(marker, LockInfo(_owner(), dead.token, dead.lease_seconds, now).to_bytes()):
        other = LockInfo.from_bytes(storage.read(marker) or b"")
        if other is not None and other.expired(now):  # a waiter died while taking over
            storage.delete(marker)
        return None
    try:
        again = LockInfo.from_bytes(storage.read(key) or b"")
        if again is not None and again.token == dead.token:
            storage.delete(key)
        if storage.create_only(key, info.to_bytes()):
            return HeldLock(storage, key, info)
        return None  # a newcomer took the free lock first
    finally:
        # Removed only now: a waiter that still saw the dead lock and wins the marker after
        # this finds another token (or none) in the lock, and deletes nothing.
        storage.delete(marker)


__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "DEFAULT_WAIT_SECONDS",
    "CacheLockTimeout",
    "HeldLock",
    "LockInfo",
    "lock_key",
    "try_acquire",
]
