"""Data shared by the benchmarks: realistic, compressible payloads sized by FERROFLOW_BENCH_MIB,
and a FERROFLOW_HOME of their own."""

import os
import pickle
import random

import pytest

DEFAULT_MIB = 24


def pytest_collect_file(file_path, parent):
    """Collects the `bench_*.py` files (pytest's default pattern is `test_*.py`); a file named on
    the command line is collected by pytest itself."""
    is_bench = file_path.suffix == ".py" and file_path.name.startswith("bench_")
    if is_bench and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


@pytest.fixture(autouse=True)
def own_ferroflow_home(tmp_path_factory, monkeypatch):
    """Every benchmark gets a fresh FERROFLOW_HOME and the default run store URL: its run store,
    result files and settings never touch the user's ~/.ferroflow (nor another benchmark's)."""
    for name in ("FERROFLOW_RUNSTORE_URL", "FERROFLOW_LOCAL_STORAGE_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FERROFLOW_HOME", str(tmp_path_factory.mktemp("ferroflow-home")))


def bench_mib() -> int:
    return int(os.environ.get("FERROFLOW_BENCH_MIB", DEFAULT_MIB))


@pytest.fixture(scope="session")
def records_payload() -> bytes:
    """About FERROFLOW_BENCH_MIB MiB of pickled event records: text and numbers with structure,
    the kind of result a pipeline persists (it compresses 4-5x, like real logs and tables)."""
    rng = random.Random(20240611)
    events = ["click", "view", "purchase", "signup", "logout", "refund"]
    count = bench_mib() * 2**20 // 43  # each pickled record takes about 43 bytes
    records = [
        {
            "id": i,
            "user": f"user-{rng.randrange(50_000)}",
            "event": rng.choice(events),
            "value": round(rng.random() * 1000, 2),
            "ok": rng.random() < 0.9,
        }
        for i in range(count)
    ]
    return pickle.dumps(records, protocol=5)
