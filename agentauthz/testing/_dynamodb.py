"""A DynamoDB-compatible endpoint on 127.0.0.1 (moto in server mode), for tests and local runs."""

from __future__ import annotations

import importlib
import random
import threading
from types import TracebackType
from typing import Any

__all__ = ["LocalDynamoDB"]

INSTALL_HINT = 'pip install "moto[server]" "agentauthz[aws]"'


class LocalDynamoDB:
    """DynamoDB on 127.0.0.1, served by moto in a background thread, for tests of a fleet's sessions.

    Requests are answered one at a time, each applied whole, as DynamoDB applies
    an item write or a transaction atomically (moto alone serves requests on
    threads without locking its tables). Processes reach it at
    :attr:`endpoint_url`; :meth:`client` builds a boto3 client for it with
    placeholder credentials. Each endpoint keeps its own tables (moto's state
    of an account of its own), so endpoints in one process never share one.

    Args:
        port: the port to listen on; 0 picks a free one.
        region_name: the region clients name.

    Raises:
        ImportError: moto's server or boto3 is not installed (``pip install "moto[server]"``).

    Example:
        >>> with LocalDynamoDB() as dynamodb:
        ...     dynamodb.endpoint_url.startswith("http://127.0.0.1:")
        True
    """

    def __init__(self, *, port: int = 0, region_name: str = "us-east-1") -> None:
        self.port = port
        self.region_name = region_name
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>`` once started."""
        if self._server is None:
            raise RuntimeError("LocalDynamoDB is not running: use it as a context manager or call start()")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> LocalDynamoDB:
        """Start serving (idempotent)."""
        if self._server is not None:
            return self
        try:
            werkzeug_app = importlib.import_module("moto.moto_server.werkzeug_app")
            serving = importlib.import_module("werkzeug.serving")
            importlib.import_module("boto3")
        except ImportError as exc:
            raise ImportError(f"LocalDynamoDB needs moto's server and boto3: {INSTALL_HINT}") from exc
        dispatcher = werkzeug_app.DomainDispatcherApplication(werkzeug_app.create_backend_app)
        one_at_a_time = threading.Lock()
        account = f"{random.randrange(10**11, 10**12):012d}"

        def application(environ: dict[str, Any], start_response: Any) -> Any:
            environ["HTTP_X_MOTO_ACCOUNT_ID"] = account
            with one_at_a_time:
                return list(dispatcher(environ, start_response))

        class QuietHandler(werkzeug_app.MotoRequestHandler):  # type: ignore[misc, name-defined]
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass

        self._server = serving.make_server("127.0.0.1", self.port, application, threaded=True,
                                           request_handler=QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="LocalDynamoDB", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: clients then fail to connect (an unreachable endpoint)."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    def client(self, **kwargs: Any) -> Any:
        """A boto3 DynamoDB client for this endpoint (keyword arguments go to ``boto3.client``)."""
        boto3 = importlib.import_module("boto3")
        settings: dict[str, Any] = {
            "endpoint_url": self.endpoint_url, "region_name": self.region_name,
            "aws_access_key_id": "testing", "aws_secret_access_key": "testing", **kwargs}
        return boto3.client("dynamodb", **settings)

    def __enter__(self) -> LocalDynamoDB:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
