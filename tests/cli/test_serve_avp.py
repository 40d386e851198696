"""agentauthz serve-avp in a subprocess: ready line, a working endpoint, Ctrl-C stops it.

Every wait is bounded; a server that does not stop is killed.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import agentauthz as az
from agentauthz.cli._main import main
from tests.conftest import EXAMPLE_STORE

ROOT = EXAMPLE_STORE.parent
READY_SECONDS = 30
STOP_SECONDS = 10


class Served:
    """A running ``agentauthz serve-avp`` and the lines it printed."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: str, seconds: float = READY_SECONDS) -> re.Match[str]:
        expression = re.compile(pattern)
        while True:
            try:
                line = self.lines.get(timeout=seconds)
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} within {seconds}s: {self.seen}") from None
            if line is None:
                raise AssertionError(f"the server exited before printing {pattern!r}: {self.seen}")
            self.seen.append(line)
            match = expression.search(line)
            if match:
                return match

    def stop(self) -> int:
        """Ctrl-C, then kill if it does not stop in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                return self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_SECONDS)
                raise AssertionError("serve-avp did not stop on SIGINT") from None
        return self.process.returncode


def _ctrl_c_default() -> None:
    # A suite started in the background by a shell (`pytest &`) ignores SIGINT, and so would the server
    # it starts; Ctrl-C is what this test sends, so the server gets the default disposition.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def serve() -> Iterator[Served]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    process = subprocess.Popen(
        [sys.executable, "-m", "agentauthz", "serve-avp", str(EXAMPLE_STORE), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, env=env,
        cwd=ROOT, preexec_fn=_ctrl_c_default)
    served = Served(process)
    try:
        yield served
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_SECONDS)
        if process.stdout is not None:
            process.stdout.close()


def test_serve_avp_prints_the_endpoint_serves_decisions_and_stops_on_ctrl_c(serve: Served) -> None:
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config  # type: ignore[import-untyped]

    url = serve.wait_for(r"endpoint: (http://127\.0\.0\.1:\d+)").group(1)
    store_id = serve.wait_for(r"Policy store id: (PS\w+)").group(1)
    serve.wait_for(r"Serving until Ctrl-C")
    assert any(f"agentauthz push --endpoint-url {url} --policy-store-id {store_id}" in line
               for line in serve.seen)

    from agentauthz.avp._engine import VerifiedPermissionsEngine

    store = az.PolicyStore.from_directory(EXAMPLE_STORE)
    client = boto3.client("verifiedpermissions", endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id="local", aws_secret_access_key="local",
                          config=Config(read_timeout=5, connect_timeout=5, retries={"max_attempts": 2}))
    with VerifiedPermissionsEngine(store_id, client=client) as engine:
        authz = az.Authorizer(engine, entities=store.entities, audit=[])
        with authz.acting_as(az.EntityUID("User", "bob")):
            decision = authz.authorize(action="read", resource=az.EntityUID("Document", "acme-eng-roadmap"))
    assert decision.allowed and decision.reasons == ("share-roadmap-with-bob",)
    assert serve.stop() == 0


def test_serve_avp_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["serve-avp", str(tmp_path / "missing")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert main(["serve-avp", str(EXAMPLE_STORE), "--port", "70000"]) == 2
    assert "not a TCP port" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.cedar").write_text("permit (principal, action, resource) when { ;")
    assert main(["serve-avp", str(broken)]) == 1
    assert "bad.cedar" in capsys.readouterr().err
