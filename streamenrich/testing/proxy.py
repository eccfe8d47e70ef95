"""A fault-injecting, counting HTTP proxy in front of a local Kinesis server.

Spark's Python workers are separate processes, so a stubbed client cannot reach them; a
proxy on a loopback port can. Point the source or sink option ``endpointUrl`` at
:attr:`KinesisProxy.endpoint_url` and every boto3 call of the driver and the executors goes
through it: it counts what passes and answers a chosen share of calls with Kinesis errors.

boto3 (1.44) speaks AWS JSON 1.1 to Kinesis: ``POST /`` with
``Content-Type: application/x-amz-json-1.1`` and ``X-Amz-Target: Kinesis_20131202.<Op>``,
binary ``Data`` base64-encoded. The proxy refuses any other body (CBOR, say) with a loud
error rather than count it wrongly. Signatures are not checked by moto or kinesis-mock, so
a rewritten ``PutRecords`` body is forwarded as is.

>>> with KinesisProxy(moto_endpoint) as proxy:           # doctest: +SKIP
...     proxy.fail("GetRecords", "ProvisionedThroughputExceededException", share=0.3)
...     client = kinesis_client(endpoint_url=proxy.endpoint_url)
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config

from streamenrich.kinesis.local import LOOPBACK, free_port

TARGET_PREFIX = "Kinesis_20131202."
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
# Not forwarded either way: they describe one hop, not the message.
HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
        "host",
    }
)


def single_attempt_client(endpoint_url: str, region: str = "us-east-1") -> Any:
    """A boto3 Kinesis client that makes exactly one attempt per call (botocore retries off).

    For unit tests of the library's own retries: every injected error reaches the caller.
    Credentials come from the environment the test suite sets.
    """
    config = Config(retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=60)
    return boto3.client("kinesis", endpoint_url=endpoint_url, region_name=region, config=config)


def entry_digest(partition_key: str, data: bytes) -> tuple[str, str]:
    """How the proxy identifies a PutRecords entry: its key and a SHA-256 of its data."""
    return partition_key, hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Exchange:
    """One request the proxy received.

    ``injected`` is the error code the proxy answered with instead of forwarding (``None``
    when forwarded). ``invocation_id`` and ``attempt`` come from botocore's
    ``amz-sdk-invocation-id`` / ``amz-sdk-request`` headers: botocore's own retries of one
    call share the invocation id, a new call from the library gets a new one. ``shard`` is
    the request's ``ShardId`` or ``ShardIterator`` when it has one, ``limit`` its ``Limit``;
    ``records`` is the number of records in the reply (GetRecords) or request (PutRecords).
    """

    at: float
    operation: str
    injected: str | None
    status: int
    invocation_id: str | None
    attempt: int | None
    shard: str | None
    records: int
    limit: int | None = None


@dataclass(frozen=True)
class Answer:
    """The proxy's reply to one request: ``records`` in it (GetRecords) or in the request
    (PutRecords), and ``injected``, the error code the proxy answered with on its own."""

    status: int
    headers: dict[str, str]
    body: bytes
    records: int = 0
    injected: str | None = None


@dataclass(frozen=True)
class PutExchange:
    """One PutRecords request: its entries (see :func:`entry_digest`), in order, and the
    indexes of the entries the proxy failed instead of forwarding."""

    entries: tuple[tuple[str, str], ...]
    failed: tuple[int, ...]


@dataclass
class _CallFault:
    operation: str
    error_code: str
    share: float
    times: int | None
    status: int
    message: str
    when: Callable[[dict[str, Any]], bool] | None
    rng: random.Random
    fired: int = 0


@dataclass
class _EntryFault:
    share: float
    error_code: str
    message: str
    rng: random.Random

    def pick(self, n: int) -> tuple[int, ...]:
        """The indexes of the entries of an ``n``-entry call that fail, ascending."""
        return tuple(sorted(self.rng.sample(range(n), round(self.share * n))))


class KinesisProxy:
    """Forwards Kinesis calls to ``upstream_url``, counts them, and injects faults.

    Counters (read them any time; each read is a consistent copy):

    - ``calls[operation]``: requests received per operation (injected ones included);
    - ``records_fetched``: records in the GetRecords replies returned to clients;
    - ``put_calls``: ``(record_count, total_bytes)`` of each PutRecords request as the
      client sent it (bytes are data plus partition key), except those failed whole by
      :meth:`fail`;
    - ``put_entries_forwarded``: PutRecords entries forwarded upstream and stored there;
    - ``put_log``: a :class:`PutExchange` per entry in ``put_calls``;
    - ``events``: ``(time.monotonic(), operation, injected error code or None)`` per request,
      on arrival; ``exchanges`` has the same requests with more detail.
    """

    def __init__(self, upstream_url: str, *, seed: int = 20131202) -> None:
        parts = urlsplit(upstream_url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream must be http://host:port, got {upstream_url!r}")
        self.upstream_url = upstream_url
        self._upstream = (parts.hostname, parts.port)
        self._lock = threading.Lock()
        self._seed = seed
        self._faults: list[_CallFault] = []
        self._entry_fault: _EntryFault | None = None
        self._calls: Counter[str] = Counter()
        self._records_fetched = 0
        self._put_calls: list[tuple[int, int]] = []
        self._put_log: list[PutExchange] = []
        self._put_forwarded = 0
        self._exchanges: list[Exchange] = []
        self._failures: list[str] = []
        self._local = threading.local()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = free_port()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> KinesisProxy:
        try:
            server = ThreadingHTTPServer((LOOPBACK, self._port), _handler_for(self))
        except OSError:  # taken since free_port() looked: pick another once
            self._port = free_port()
            server = ThreadingHTTPServer((LOOPBACK, self._port), _handler_for(self))
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> KinesisProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self._port}"

    # -- faults ----------------------------------------------------------------------------

    def fail(
        self,
        operation: str,
        error_code: str,
        share: float = 1.0,
        times: int | None = None,
        status: int = 400,
        message: str | None = None,
        when: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        """Answer ``share`` of the calls to ``operation`` with ``error_code``, not forwarding.

        The draw is made per call from the rule's own seeded RNG, so the n-th call to
        ``operation`` gets the same answer from run to run; ``times`` caps how many calls
        fail; ``when`` (given the decoded request) narrows the calls the rule applies to, e.g.
        ``when=lambda r: r.get("Limit") != 1`` spares the driver's one-record probes. Rules
        add up: the first rule of the operation that draws a failure answers.
        """
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share must be within 0..1, got {share}")
        text = message or f"{error_code} injected by KinesisProxy"
        with self._lock:
            # One RNG per rule: its draws do not depend on how other operations interleave.
            rng = random.Random(f"{self._seed}:{operation}:{len(self._faults)}")
            self._faults.append(
                _CallFault(operation, error_code, share, times, status, text, when, rng)
            )

    def fail_put_entries(
        self,
        share: float,
        error_code: str = "ProvisionedThroughputExceededException",
        message: str | None = None,
    ) -> None:
        """Fail ``share`` of the entries of each PutRecords call, like a partial failure.

        Exactly ``round(share * n)`` of a call's ``n`` entries fail, picked by the seeded RNG:
        a retry of the failed entries shrinks every time (below 0.5), so a test ends after a
        bounded number of calls, while ``share=1.0`` fails every entry for ever. The other
        entries are forwarded upstream; the reply has their real sequence numbers and shard
        ids, the failed entries' error code and message, in the request's order.
        """
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share must be within 0..1, got {share}")
        text = message or f"Rate exceeded for shard (injected by KinesisProxy): {error_code}"
        with self._lock:
            rng = random.Random(f"{self._seed}:PutRecords entries")
            self._entry_fault = _EntryFault(share, error_code, text, rng)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._entry_fault = None

    # -- counters --------------------------------------------------------------------------

    @property
    def calls(self) -> Counter[str]:
        with self._lock:
            return Counter(self._calls)

    @property
    def records_fetched(self) -> int:
        with self._lock:
            return self._records_fetched

    @property
    def put_calls(self) -> list[tuple[int, int]]:
        with self._lock:
            return list(self._put_calls)

    @property
    def put_log(self) -> list[PutExchange]:
        with self._lock:
            return list(self._put_log)

    @property
    def put_entries_forwarded(self) -> int:
        with self._lock:
            return self._put_forwarded

    @property
    def exchanges(self) -> list[Exchange]:
        """Every request so far, in order of arrival."""
        with self._lock:
            return sorted(self._exchanges, key=lambda e: e.at)

    @property
    def events(self) -> list[tuple[float, str, str | None]]:
        return [(e.at, e.operation, e.injected) for e in self.exchanges]

    def injected(self, operation: str | None = None) -> list[Exchange]:
        """The requests answered with an injected error (of ``operation`` if given)."""
        return [
            e
            for e in self.exchanges
            if e.injected is not None and (operation is None or e.operation == operation)
        ]

    # -- request handling (called from the server's threads) ---------------------------------

    def _draw_call_fault(self, operation: str, request: dict[str, Any]) -> _CallFault | None:
        with self._lock:
            for fault in self._faults:
                if fault.operation != operation:
                    continue
                if fault.when is not None and not fault.when(request):
                    continue
                if fault.times is not None and fault.fired >= fault.times:
                    continue
                if fault.rng.random() < fault.share:
                    fault.fired += 1
                    return fault
            return None

    def record_failure(self, exc: BaseException) -> None:
        with self._lock:
            self._failures.append(f"{type(exc).__name__}: {exc}")

    @property
    def failures(self) -> list[str]:
        """The proxy's own errors while handling requests (a healthy run has none)."""
        with self._lock:
            return list(self._failures)

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self._exchanges.append(exchange)

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        arrived = time.monotonic()
        lower = {k.lower(): v for k, v in headers.items()}
        target = lower.get("x-amz-target", "")
        operation = target.removeprefix(TARGET_PREFIX) if target else f"{method} {path}"
        invocation_id = lower.get("amz-sdk-invocation-id")
        attempt = _attempt(lower.get("amz-sdk-request"))
        content_type = lower.get("content-type", "")
        if body and not content_type.startswith("application/x-amz-json"):
            # Counting needs the JSON body; a CBOR client would silently skew every counter.
            with self._lock:
                self._calls[operation] += 1
            self._record(Exchange(arrived, operation, None, 415, invocation_id, attempt, None, 0))
            return _error_reply(
                415,
                "UnsupportedContentType",
                f"KinesisProxy speaks AWS JSON 1.1 only, got Content-Type {content_type!r}",
            )
        request = json.loads(body) if body else {}
        shard = request.get("ShardId") or request.get("ShardIterator")
        with self._lock:
            self._calls[operation] += 1
        fault = self._draw_call_fault(operation, request)
        if fault is not None:
            self._record(
                Exchange(
                    arrived,
                    operation,
                    fault.error_code,
                    fault.status,
                    invocation_id,
                    attempt,
                    shard,
                    0,
                    request.get("Limit"),
                )
            )
            return _error_reply(fault.status, fault.error_code, fault.message)
        answer = self._dispatch(operation, method, path, headers, request, body)
        if operation == "GetRecords" and answer.status == 200:
            with self._lock:
                self._records_fetched += answer.records
        self._record(
            Exchange(
                arrived,
                operation,
                answer.injected,
                answer.status,
                invocation_id,
                attempt,
                shard,
                answer.records,
                request.get("Limit"),
            )
        )
        return answer.status, answer.headers, answer.body

    def _dispatch(
        self,
        operation: str,
        method: str,
        path: str,
        headers: dict[str, str],
        request: dict[str, Any],
        body: bytes,
    ) -> Answer:
        """Answer one request that no fault rule took: forward it (subclasses add rules)."""
        if operation == "PutRecords":
            status, reply_headers, reply = self._put_records(method, path, headers, request)
            return Answer(status, reply_headers, reply, len(request.get("Records", [])))
        status, reply_headers, reply = self._forward(method, path, headers, body)
        records = 0
        if operation == "GetRecords" and status == 200:
            records = len(json.loads(reply).get("Records", []))
        return Answer(status, reply_headers, reply, records)

    def _put_records(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        request: dict[str, Any],
        refused: Mapping[int, tuple[str, str]] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """Forward a PutRecords call, failing some entries instead of forwarding them.

        ``refused`` maps entry indexes to the ``(error code, message)`` they fail with (a
        subclass's per-shard limits); the entry fault of :meth:`fail_put_entries` adds its
        own picks. The reply lists every entry in the request's order.
        """
        entries = request.get("Records", [])
        digests = tuple(
            entry_digest(e["PartitionKey"], base64.b64decode(e["Data"])) for e in entries
        )
        size = sum(
            len(base64.b64decode(e["Data"])) + len(e["PartitionKey"].encode("utf-8"))
            for e in entries
        )
        errors: dict[int, tuple[str, str]] = dict(refused or {})
        with self._lock:
            fault = self._entry_fault
            if fault is not None:
                for index in fault.pick(len(entries)):
                    errors.setdefault(index, (fault.error_code, fault.message))
            failed = tuple(sorted(errors))
            self._put_calls.append((len(entries), size))
            self._put_log.append(PutExchange(digests, failed))
        if not failed:
            status, reply_headers, reply = self._forward(
                method, path, headers, json.dumps(request).encode()
            )
            if status == 200:
                self._count_stored(json.loads(reply))
            return status, reply_headers, reply
        kept = [e for i, e in enumerate(entries) if i not in errors]
        upstream_results: list[dict[str, Any]] = []
        upstream_failed = 0
        reply_headers = {"Content-Type": JSON_CONTENT_TYPE}
        if kept:
            status, reply_headers, reply = self._forward(
                method, path, headers, json.dumps({**request, "Records": kept}).encode()
            )
            if status != 200:
                return status, reply_headers, reply
            parsed = json.loads(reply)
            self._count_stored(parsed)
            upstream_results = parsed["Records"]
            upstream_failed = int(parsed.get("FailedRecordCount", 0))
        forwarded = iter(upstream_results)
        merged = [
            {"ErrorCode": errors[i][0], "ErrorMessage": errors[i][1]}
            if i in errors
            else next(forwarded)
            for i in range(len(entries))
        ]
        synthesised = {"FailedRecordCount": len(errors) + upstream_failed, "Records": merged}
        headers_out = {k: v for k, v in reply_headers.items() if k.lower() != "x-amz-crc32"}
        return 200, headers_out, json.dumps(synthesised).encode()

    def _count_stored(self, reply: dict[str, Any]) -> None:
        stored = sum(1 for r in reply.get("Records", []) if not r.get("ErrorCode"))
        with self._lock:
            self._put_forwarded += stored

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        out_headers = {k: v for k, v in headers.items() if k.lower() not in HOP_HEADERS}
        out_headers["Host"] = f"{self._upstream[0]}:{self._upstream[1]}"
        out_headers["Content-Length"] = str(len(body))
        for fresh in (False, True):
            conn = self._connection(fresh)
            try:
                conn.request(method, path, body=body, headers=out_headers)
                response = conn.getresponse()
                reply = response.read()
            except (http.client.HTTPException, ConnectionError):
                # A kept-alive upstream connection may have been closed: retry once, fresh.
                conn.close()
                if fresh:
                    raise
                continue
            reply_headers = {k: v for k, v in response.getheaders() if k.lower() not in HOP_HEADERS}
            return response.status, reply_headers, reply
        raise AssertionError("unreachable")

    def _connection(self, fresh: bool) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = http.client.HTTPConnection(*self._upstream, timeout=120)
            self._local.conn = conn
        return conn


def _attempt(header: str | None) -> int | None:
    # botocore sends "amz-sdk-request: attempt=2; max=4".
    for part in (header or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == "attempt" and value.isdigit():
            return int(value)
    return None


def _error_reply(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"__type": code, "message": message}).encode()
    headers = {
        "Content-Type": JSON_CONTENT_TYPE,
        "x-amzn-RequestId": str(uuid.uuid4()),
        "x-amzn-ErrorType": code,
    }
    return status, headers, body


def _handler_for(proxy: KinesisProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as boto3's connection pool expects
        disable_nagle_algorithm = True  # headers and body go out without a delayed-ACK stall

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            try:
                status, headers, reply = proxy.handle(
                    self.command, self.path, dict(self.headers.items()), body
                )
            except Exception as exc:
                # A 400 (never retried by botocore) so a proxy bug fails the test loudly.
                proxy.record_failure(exc)
                status, headers, reply = _error_reply(
                    400, "KinesisProxyError", f"{type(exc).__name__}: {exc}"
                )
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(reply)

        do_POST = _serve
        do_GET = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: pytest output stays readable

    return Handler
