"""Results on S3: ferroflow against boto3 (`put_object`/`get_object` of the same bytes) and the
Prefect 2 path (s3fs through fsspec, a JSON document with the pickle base64-encoded), on the same
data and the same loopback server, in one run. Also the peak extra memory of writing a 256 MiB
result to S3, and the local read of a 32 MiB `bytes` result next to joblib.Memory's.

Two servers, each named in the output: moto's server mode (written in Python; `moto[server]`),
and s3s-fs (a Rust S3 server on a folder: `cargo install s3s-fs --features binary`), used when
its binary is on PATH or at $S3S_FS. Run:

    .venv/bin/python -m pytest benches/bench_s3.py -s -p no:cacheprovider

Figures are printed, never asserted: a missed target is a finding to report.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import cloudpickle
import joblib
import numpy as np
import pytest

from _report import print_table, race

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from ferroflow.filesystems import S3, LocalFileSystem  # noqa: E402
from ferroflow.results import PersistedResult  # noqa: E402
from ferroflow.serializers import PickleSerializer  # noqa: E402
from s3_servers import free_port, start_moto  # noqa: E402

pytestmark = pytest.mark.timeout(1800)

MIB = 1024 * 1024
ACCESS_KEY, SECRET_KEY, BUCKET = "bench-access-key", "bench-secret-key", "bench"
TARGETS = {"vs boto3": 1.0, "vs Prefect 2 path": 5.0}


class S3sFs:
    """s3s-fs serving a temporary folder on loopback."""

    def __init__(self, binary: str, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [
                binary,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--access-key",
                ACCESS_KEY,
                "--secret-key",
                SECRET_KEY,
                str(root),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.endpoint, timeout=1)
                break
            except urllib.error.HTTPError:
                break  # it answers (with an S3 error for an unsigned request)
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("s3s-fs did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """(name, endpoint) of every S3 server that can run here."""
    started = []
    moto = start_moto(tmp_path_factory.mktemp("moto"))
    started.append(("moto (Python)", moto.endpoint, moto))
    binary = os.environ.get("S3S_FS") or shutil.which("s3s-fs")
    if binary:
        s3s = S3sFs(binary, tmp_path_factory.mktemp("s3s-fs"))
        started.append(("s3s-fs (Rust)", s3s.endpoint, s3s))
    else:
        print("\ns3s-fs not found (set S3S_FS or put it on PATH): only moto is measured")
    for _, endpoint, _ in started:
        boto3_client(endpoint).create_bucket(Bucket=BUCKET)
    yield [(name, endpoint) for name, endpoint, _ in started]
    for _, _, server in started:
        server.stop()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def boto3_client(endpoint: str):  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )


def payloads() -> dict[str, object]:
    rng = np.random.default_rng(0)
    return {
        "256 MiB NumPy": np.cumsum(rng.standard_normal(256 * MIB // 8)),
        "32 MiB bytes": rng.bytes(32 * MIB),
    }


def raw_bytes(value: object) -> bytes:
    return value.tobytes() if isinstance(value, np.ndarray) else value  # type: ignore[return-value]


def measure(endpoint: str, name: str, value: object) -> dict[str, float]:
    """Best write and read times (s) of ferroflow, boto3 and the Prefect 2 path, taken in turns."""
    import s3fs

    storage = S3(bucket_path=f"{BUCKET}/ferroflow", endpoint_url=endpoint)
    # The same with the threshold a cloud (https://) endpoint gets: results above 64 MiB go as
    # multipart uploads.
    cloud_threshold = S3(
        bucket_path=f"{BUCKET}/cloud-threshold", endpoint_url=endpoint, multipart_threshold=64 * MIB
    )
    client = boto3_client(endpoint)
    fs = s3fs.S3FileSystem(
        key=ACCESS_KEY,
        secret=SECRET_KEY,
        client_kwargs={"endpoint_url": endpoint, "region_name": "us-east-1"},
    )
    body = raw_bytes(value)
    serializer = PickleSerializer()
    key = name.replace(" ", "-")

    def ferroflow_write() -> None:
        PersistedResult._write(
            value, storage=storage, serializer=serializer, storage_key=key, cache_in_memory=False
        )

    def cloud_threshold_write() -> None:
        PersistedResult._write(
            value, storage=cloud_threshold, serializer=serializer, storage_key=key, cache_in_memory=False
        )

    def boto3_write() -> None:
        client.put_object(Bucket=BUCKET, Key=f"boto3/{key}", Body=body)

    def prefect2_write() -> None:
        document = {
            "serializer": {"type": "pickle", "picklelib": "cloudpickle"},
            "data": base64.b64encode(cloudpickle.dumps(value)).decode(),
            "prefect_version": "2.20.0",
        }
        fs.pipe(f"{BUCKET}/prefect2/{key}", json.dumps(document).encode())

    def ferroflow_read() -> None:
        PersistedResult(
            storage=storage, storage_key=key, serializer_type="pickle", cache_in_memory=False
        ).get()

    def boto3_read() -> None:
        client.get_object(Bucket=BUCKET, Key=f"boto3/{key}")["Body"].read()

    def prefect2_read() -> None:
        document = json.loads(fs.cat(f"{BUCKET}/prefect2/{key}"))
        pickle.loads(base64.b64decode(document["data"]))

    writes = race(
        {
            "ferroflow": ferroflow_write,
            "cloud threshold": cloud_threshold_write,
            "boto3": boto3_write,
            "prefect2": prefect2_write,
        }
    )
    reads = race({"ferroflow": ferroflow_read, "boto3": boto3_read, "prefect2": prefect2_read})
    return {**{f"write {k}": v for k, v in writes.items()}, **{f"read {k}": v for k, v in reads.items()}}


# "write" is ferroflow's default for these http:// servers (one PUT up to 1 GiB, as put_object);
# "write, cloud threshold" the default of a cloud (https://) endpoint: results above 64 MiB as
# multipart uploads of 8 MiB parts, 4 at a time (the 32 MiB result is one PUT either way).


def test_s3_results_next_to_boto3_and_the_prefect2_path(servers):
    rows = []
    for server, endpoint in servers:
        for name, value in payloads().items():
            size = len(raw_bytes(value))
            times = measure(endpoint, name, value)
            for op, ours_as in (
                ("write", "ferroflow"),
                ("write, cloud threshold", "cloud threshold"),
                ("read", "ferroflow"),
            ):
                kind = op.split(",")[0]
                ours = times[f"{kind} {ours_as}"]
                boto, prefect = (times[f"{kind} {who}"] for who in ("boto3", "prefect2"))
                rows.append(
                    [
                        server,
                        name,
                        op,
                        size / ours / 1e6,
                        size / boto / 1e6,
                        size / prefect / 1e6,
                        boto / ours,
                        prefect / ours,
                    ]
                )
    print_table(
        "S3 results on loopback (MB/s; ratios are speed-ups of ferroflow, targets: >= 1.0 vs boto3, "
        ">= 5 vs the Prefect 2 path)",
        ["server", "result", "op", "ferroflow", "boto3", "Prefect 2 path", "vs boto3", "vs Prefect 2"],
        rows,
    )


PEAK_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from ferroflow.filesystems import S3
    from ferroflow.results import PersistedResult
    from ferroflow.serializers import PickleSerializer

    def status_mib(field):
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024

    value = np.cumsum(np.random.default_rng(0).standard_normal(256 * 1024 * 1024 // 8))
    threshold = int(sys.argv[3]) if sys.argv[3] != "default" else None
    storage = S3(bucket_path=sys.argv[2] + "/peak", endpoint_url=sys.argv[1], multipart_threshold=threshold)
    storage.write_path("warm-up", b"x")  # the client, runtime and connection exist before
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    before = status_mib("VmRSS")
    PersistedResult._write(value, storage=storage, serializer=PickleSerializer(), storage_key="peak",
                           cache_in_memory=False)
    print(status_mib("VmHWM") - before)
    """
)


def test_peak_extra_memory_writing_256_mib_to_s3(servers):
    rows = []
    for server, endpoint in servers:
        for upload, threshold in (("one PUT (default)", "default"), ("multipart", str(64 * MIB))):
            done = subprocess.run(
                [sys.executable, "-c", PEAK_SCRIPT, endpoint, BUCKET, threshold],
                capture_output=True,
                text=True,
                check=True,
            )
            extra_mib = float(done.stdout.strip().splitlines()[-1])
            target = "met" if extra_mib / 256 <= 1.2 else "MISSED"
            rows.append([server, upload, extra_mib, extra_mib / 256, target])
    print_table(
        "Peak extra memory writing a 256 MiB NumPy result to S3 (target: <= 1.2x the result)",
        ["server", "upload", "extra MiB", "x result", "target"],
        rows,
    )


def test_local_reads_next_to_joblib(tmp_path):
    """A 32 MiB `bytes` result read back from a local folder, against a joblib.Memory cache hit
    returning the same bytes; and a 256 MiB array read (mapped) in GB/s."""
    data = np.random.default_rng(1).bytes(32 * MIB)
    storage = LocalFileSystem(basepath=str(tmp_path / "ferroflow"))
    PersistedResult._write(
        data, storage=storage, serializer=PickleSerializer(), storage_key="bytes", cache_in_memory=False
    )
    memory = joblib.Memory(str(tmp_path / "joblib"), verbose=0)

    @memory.cache
    def produce(seed: int) -> bytes:
        return data

    produce(1)

    def ferroflow_read() -> None:
        value = PersistedResult(
            storage=storage, storage_key="bytes", serializer_type="pickle", cache_in_memory=False
        ).get()
        assert len(value) == len(data)

    def joblib_read() -> None:
        assert len(produce(1)) == len(data)

    best = race({"ferroflow": ferroflow_read, "joblib.Memory": joblib_read}, repeat=7)

    array = np.cumsum(np.random.default_rng(2).standard_normal(256 * MIB // 8))
    PersistedResult._write(
        array, storage=storage, serializer=PickleSerializer(), storage_key="array", cache_in_memory=False
    )

    def array_read() -> None:
        PersistedResult(
            storage=storage, storage_key="array", serializer_type="pickle", cache_in_memory=False
        ).get()

    array_best = race({"array": array_read}, repeat=5)["array"]
    print_table(
        "Local reads (targets: 32 MiB bytes >= 1.2x joblib.Memory; 256 MiB array >= 5 GB/s)",
        ["case", "ms", "ratio / GB/s", "target"],
        [
            [
                "32 MiB bytes, ferroflow",
                best["ferroflow"] * 1e3,
                best["joblib.Memory"] / best["ferroflow"],
                "met" if best["joblib.Memory"] / best["ferroflow"] >= 1.2 else "MISSED",
            ],
            ["32 MiB bytes, joblib.Memory", best["joblib.Memory"] * 1e3, 1.0, ""],
            [
                "256 MiB array, ferroflow",
                array_best * 1e3,
                256 * MIB / array_best / 1e9,
                "met" if 256 * MIB / array_best / 1e9 >= 5 else "MISSED",
            ],
        ],
    )
