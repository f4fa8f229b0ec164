"""A shoal HTTP server run as a real process on a free port: the one helper
for end-to-end tests (the API's and the CLI's)."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """Starts `python -m <module> serve-args... --port P` and waits for /healthz.
    module "shoal.api.server" takes server flags directly; "shoal.cli" gets
    the `command` first (`serve`, or `cluster serve`)."""

    def __init__(self, data_dir: Path, *args: str, module: str = "shoal.api.server", env: dict | None = None,
                 scheme: str = "http", verify: Any = True, command: Sequence[str] = ("serve",),
                 start_timeout_s: float = 30):
        self.port = free_port()
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        sub = list(command) if module == "shoal.cli" else []
        argv: Sequence[str] = [sys.executable, "-m", module, *sub, "--data", str(data_dir),
                               "--port", str(self.port), "--log-level", "warning", "--no-access-log", *args]
        self.proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + start_timeout_s
        while True:
            assert self.proc.poll() is None, self.proc.stdout.read().decode()
            try:
                if httpx.get(self.url + "/healthz", timeout=1, verify=verify).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> tuple[int, float, str]:
        """Signal the server; (exit code, seconds it took, its output)."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        return rc, time.monotonic() - t0, self.proc.stdout.read().decode()

    def peak_rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
