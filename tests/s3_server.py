"""A real S3 API over HTTP for the tests and the bench: moto's standalone server on 127.0.0.1.

The same approach s3fs's own tests use. :class:`S3Server` starts ``ThreadedMotoServer``
on a free port, creates a bucket, and gives the environment a registry process needs
to reach it (dummy credentials, ``CFREG_STORAGE_OPTIONS`` with the endpoint and short
timeouts so a stopped server fails fast). Stopping and starting it again on the same
port keeps the bucket's objects (moto keeps them in this process).
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

BUCKET = "cfreg-test"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class S3Server:
    """moto's S3 on ``127.0.0.1:<free port>`` with one bucket."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server: Any = None

    def env(self) -> dict[str, str]:
        """Environment variables a registry process needs to use this server."""
        options = {"endpoint_url": self.endpoint,
                   "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1, "read_timeout": 5}}
        return {**CREDENTIALS, "CFREG_STORAGE_OPTIONS": json.dumps(options)}

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"moto did not start on port {self.port}")

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def create_bucket(self, name: str = BUCKET) -> str:
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="testing",
                              aws_secret_access_key="testing", region_name="us-east-1")
        client.create_bucket(Bucket=name)
        return f"s3://{name}"

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="testing",
                            aws_secret_access_key="testing", region_name="us-east-1")
