"""Real object-store API servers on loopback for the tests: moto's S3 server and a GCS emulator."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

import boto3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@dataclass
class S3Server:
    endpoint: str
    server: object  # moto.server.ThreadedMotoServer

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def new_bucket(self, versioned: bool = False, object_lock: bool = False) -> str:
        name = f"b-{uuid.uuid4().hex[:12]}"
        client = self.client()
        client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=object_lock)
        if versioned:
            client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name


def start_s3() -> S3Server:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    wait_for_port(port)
    return S3Server(f"http://127.0.0.1:{port}", server)


def start_s3_with_auth(initial_no_auth_actions: int = 0) -> tuple[str, subprocess.Popen]:
    """A separate moto server process that enforces IAM auth: unknown keys get 403s. The first
    ``initial_no_auth_actions`` requests go unchecked (to create IAM users, keys and buckets)."""
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(initial_no_auth_actions)}
    process = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port)
    return f"http://127.0.0.1:{port}", process


@dataclass(frozen=True)
class IAMUser:
    access_key_id: str
    secret_access_key: str


def s3_user_without_permissions(endpoint: str, bucket: str) -> IAMUser:
    """On a server from ``start_s3_with_auth(initial_no_auth_actions=3)``: an IAM user with valid
    keys and no policy (every S3 call is denied), and an existing bucket. Uses the 3 free actions."""
    setup = {
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "setup",
        "aws_secret_access_key": "setup",
    }
    iam = boto3.client("iam", **setup)
    iam.create_user(UserName="no-permissions")
    key = iam.create_access_key(UserName="no-permissions")["AccessKey"]
    boto3.client("s3", **setup).create_bucket(Bucket=bucket)
    return IAMUser(key["AccessKeyId"], key["SecretAccessKey"])


@dataclass
class GCSServer:
    endpoint: str
    server: object

    def new_bucket(self) -> str:
        import gcsfs

        name = f"b-{uuid.uuid4().hex[:12]}"
        gcsfs.GCSFileSystem(endpoint_url=self.endpoint, token="anon", project="test").mkdir(name)
        return name


def start_gcs() -> GCSServer:
    # gcsfs otherwise asks Google's gRPC storage-control API about each bucket and waits ~60 s.
    os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    wait_for_port(port)
    return GCSServer(f"http://127.0.0.1:{port}", server)


class WebhookReceiver:
    """A real HTTP server on loopback that records the JSON bodies POSTed to it (a Slack stand-in).
    ``secret_path`` is the part of the URL that Slack makes the secret; ``body`` and ``headers``
    are what it answers with (Slack answers 403 ``invalid_token``, 404 ``no_service``, 429 with
    Retry-After)."""

    def __init__(
        self,
        status: int = 200,
        secret_path: str = "T000/B000/XXXX",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.bodies: list[dict] = []
        self.status = status
        answer = body if body is not None else (b"ok" if status == 200 else b"invalid_token")
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                receiver.bodies.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(receiver.status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/services/{secret_path}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class StubHTTPServer:
    """A real HTTP server on loopback that gives every request (any method, any path) the same
    JSON answer and counts the requests: an OAuth token endpoint, or a store that refuses."""

    def __init__(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[tuple[str, str]] = []
        payload = json.dumps(body).encode()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length", 0) or 0)
                if length:
                    self.rfile.read(length)
                stub.requests.append((self.command, self.path))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
