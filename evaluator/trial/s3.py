"""A trial under an S3 prefix, seen through the same calls as a local folder.

The reader asks for four things (list after a cursor, read an object, check one exists, read a
range), which map one to one onto ListObjectsV2 with StartAfter, GetObject, HeadObject and a
ranged GetObject: no call ever lists per tensor or re-lists what the cursor has passed.

Failures are sorted by what the caller can do about them. Throttling (SlowDown, 503) and 5xx
are retried by botocore's "standard" mode with exponential backoff and jitter; if they persist
they surface as :class:`StorageUnavailable`, which the reader rides out. A missing bucket,
refused credentials or a wrong region will not pass by retrying: they raise ``TrialError``
naming what to check. botocore retries a request whose answer fails, but hands over a body that
breaks while it is read (``IncompleteRead``, a reset mid-read): such a GET is sent again here,
with backoff, on a budget of its own (``BODY_ATTEMPTS``, ``BODY_RETRY_SECONDS``), separate from
the reader's wait for a file that is not there yet. Credentials come from boto3's standard
chain (environment, profile, container or instance role), never from here.

What is bounded in time is every wait on the endpoint, not every transfer: an attempt waits at
most ``CONNECT_TIMEOUT_SECONDS`` to connect and ``READ_TIMEOUT_SECONDS`` for each next bytes
(the answer's first, then each chunk of a body); a request makes at most ``MAX_ATTEMPTS``
attempts, with botocore's backoff between them; broken bodies start no GET past
``BODY_RETRY_SECONDS``. So a read against an endpoint that stops answering gives up within
``BODY_RETRY_SECONDS`` + ``MAX_ATTEMPTS`` x (``CONNECT_TIMEOUT_SECONDS`` +
``READ_TIMEOUT_SECONDS``) + the backoff (at most 156 s) + one ``READ_TIMEOUT_SECONDS`` for the
body: 30 + 250 + 156 + 20 s, under 8 minutes, where botocore's default timeouts (60 s each)
allowed 24. A body that keeps arriving, however slowly (bytes less than
``READ_TIMEOUT_SECONDS`` apart), is bounded by nothing but its size.
"""

from __future__ import annotations

import contextlib
import datetime
import http.client
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as EndpointUnreachable
from botocore.utils import parse_timestamp as botocore_parse_timestamp
from urllib3.exceptions import HTTPError as URLLib3Error

from evaluator.core.text import shortened
from evaluator.trial.contract import StorageUnavailable, TrialError

MAX_POOL = 10
"""HTTP connections kept to the endpoint: at least the reader's fetch threads (8 by default)."""

MAX_ATTEMPTS = 10
"""Attempts per request in all, the first included (botocore's ``total_max_attempts``), in its
standard retry mode: exponential backoff with full jitter between attempts, from 1 s doubling to
20 s after throttling (50 ms doubling after other errors and timeouts), 5 s more where S3 asks
(``x-amz-retry-after``): 156 s at most over the 9 waits of one request (botocore 1.44)."""

CONNECT_TIMEOUT_SECONDS = 5.0
"""How long one attempt waits to open a connection to the endpoint (botocore's
``connect_timeout``; its default is 60 s). Connecting to S3 takes milliseconds; an endpoint that
drops packets fails each attempt in this time, so an unreachable endpoint is reported after
``MAX_ATTEMPTS`` x 5 s and the backoff (under a minute) instead of ten minutes."""

READ_TIMEOUT_SECONDS = 20.0
"""How long one attempt waits for the next bytes on an open connection (botocore's
``read_timeout``; its default is 60 s): for its answer to begin, and then between any two chunks
of a body. It bounds silence, not transfer: a body is read however long it takes while bytes
keep coming. A wait for an answer that times out is retried by botocore (within
``MAX_ATTEMPTS``); a body that stalls this long breaks (``ReadTimeoutError``) and is fetched
again as any broken body is. S3 answers within a second; 20 s leaves a loaded S3-compatible
store room."""

PAGE_SIZE = 1000
"""Keys per ListObjectsV2 page (S3's maximum): one request per 1000 index files."""

BODY_ATTEMPTS = 6
"""GETs of one object in all, the first included, while its body breaks mid-read. At a fifth of
bodies cut (a bad link), six in a row fail once in 15,000 reads, and the reader's own retries of
the part on later polls come on top; a link that breaks more often than that is an outage."""

BODY_RETRY_SECONDS = 30.0
"""Seconds from an object's first GET after which a broken body starts no further GET. It bounds
when GETs start, not how long one takes: each is a request of up to ``MAX_ATTEMPTS`` attempts
and then its body, whose waits ``CONNECT_TIMEOUT_SECONDS`` and ``READ_TIMEOUT_SECONDS`` bound
(the module's docstring adds it up: under 8 minutes for one read of a failing endpoint)."""

BODY_BACKOFF_SECONDS = 0.1
"""The wait before the second GET of a broken body; doubled before each next one, with full
jitter (a random share of it, so that parallel fetches do not retry in step)."""

BODY_BACKOFF_CAP_SECONDS = 4.0
"""The longest wait between two GETs of a broken body."""

_BROKEN_BODY = (BotoCoreError, OSError, http.client.HTTPException, URLLib3Error)
"""What reading a body raises when the connection breaks under it: botocore's
``IncompleteReadError``, ``ResponseStreamingError`` and ``ReadTimeoutError``, and the socket's
or the HTTP library's own errors should one get through unwrapped."""

_MISSING_KEY = frozenset({"NoSuchKey", "404", "NotFound"})
_DENIED = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AccountProblem",
        "403",
    }
)
_WRONG_REGION = frozenset(
    {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"}
)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``(bucket, prefix)`` of ``s3://bucket/prefix``; the prefix has no slashes at its ends."""
    if not uri.startswith("s3://"):
        raise TrialError(f"Expected an S3 URI like s3://bucket/prefix, but got {uri!r}")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise TrialError(f"Expected an S3 URI like s3://bucket/prefix, but {uri!r} names no bucket")
    return bucket, prefix.strip("/")


def make_client(
    endpoint_url: str | None = None,
    *,
    max_pool: int = MAX_POOL,
    max_attempts: int = MAX_ATTEMPTS,
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    read_timeout: float = READ_TIMEOUT_SECONDS,
    session: Any = None,
) -> Any:
    """An S3 client with standard retries, a connection pool sized for parallel fetches, and
    every wait on the endpoint bounded (``connect_timeout``, ``read_timeout``, set here, so not
    botocore's 60 s each, nor whatever a profile says).

    With no ``endpoint_url`` boto3 (>= 1.28) takes ``AWS_ENDPOINT_URL_S3`` or
    ``AWS_ENDPOINT_URL`` from the environment or the profile, else AWS itself. A new boto3
    session (the default) resolves credentials afresh; passing one shares its loaded service
    models, which makes every client after the first ~15x cheaper to create.
    """
    config = Config(
        retries={"mode": "standard", "total_max_attempts": max(1, max_attempts)},
        max_pool_connections=max_pool,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )
    # Not boto3's default session: creating clients from it is not thread-safe.
    if session is None:
        session = boto3.session.Session(botocore_session=botocore.session.get_session())
    core = getattr(session, "_session", None)  # boto3's Session holds its botocore one there
    if core is not None:
        core.get_component("response_parser_factory").set_parser_defaults(
            timestamp_parser=parse_timestamp
        )
    return session.client("s3", endpoint_url=endpoint_url, config=config)


def parse_timestamp(value: Any) -> datetime.datetime:
    """A timestamp of an S3 answer, as botocore's parser gives it (an aware datetime).

    A listing's every key has an ISO 8601 ``LastModified`` ("2026-12-01T19:39:23.000Z"), which
    botocore hands to dateutil: 0.35 ms a key, three quarters of a listing's cost, paid by every
    shard of a sharded evaluation for the whole index. ``datetime.fromisoformat`` reads it a
    hundred times faster; anything else (a HEAD's HTTP date) goes to botocore's own parser."""
    if isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=datetime.UTC)
    parsed_by_botocore: datetime.datetime = botocore_parse_timestamp(value)
    return parsed_by_botocore


class S3Storage:
    """Keys are relative to ``prefix``, exactly as the reader's keys are relative to a folder."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        endpoint_url: str | None = None,
        max_pool: int = MAX_POOL,
        max_attempts: int = MAX_ATTEMPTS,
        page_size: int = PAGE_SIZE,
        body_attempts: int = BODY_ATTEMPTS,
        body_retry_seconds: float = BODY_RETRY_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._root = f"{self.prefix}/" if self.prefix else ""
        self._owns_client = client is None
        self.client = client or make_client(
            endpoint_url, max_pool=max_pool, max_attempts=max_attempts
        )
        self._page_size = max(1, min(page_size, PAGE_SIZE))
        self._body_attempts = max(1, body_attempts)
        self._body_retry_seconds = max(0.0, body_retry_seconds)
        self._sleep = sleep
        self.body_retries = 0
        """GETs sent again because a body broke mid-read (a diagnostic for tests)."""
        self._body_retries_lock = threading.Lock()
        self._exists = False
        self._reached = threading.Event()
        """Set once the endpoint answered: later connection failures are outages, not typos."""

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def local_path(self) -> None:
        """Remote: nothing on this machine to watch."""
        return None

    @property
    def endpoint(self) -> str:
        """Where requests go, for messages."""
        return str(self.client.meta.endpoint_url)

    def exists(self) -> bool:
        """Whether any object is under the prefix yet (remembered once true: one LIST per poll
        only while a training job has not written anything)."""
        if not self._exists:
            page = self._call(
                "list",
                "",
                self.client.list_objects_v2,
                Bucket=self.bucket,
                Prefix=self._root,
                MaxKeys=1,
            )
            self._exists = bool(page.get("KeyCount", len(page.get("Contents", []))))
        return self._exists

    def list_keys(
        self, prefix: str, start_after: str | None = None, max_keys: int | None = None
    ) -> list[str]:
        """Keys under ``prefix`` after ``start_after``: one request per page of 1000 keys.

        ``max_keys`` stops paging once at least that many keys are in (the whole last page is
        kept: its keys are paid for): a reader that takes a bounded number of steps per poll
        does not pay for listing the rest of a long trial each time.
        """
        arguments: dict[str, Any] = {
            "Bucket": self.bucket,
            "Prefix": self._root + prefix,
            "MaxKeys": self._page_size,
        }
        if start_after is not None:
            arguments["StartAfter"] = self._root + start_after
        keys: list[str] = []
        while True:
            page = self._call("list", prefix, self.client.list_objects_v2, **arguments)
            keys += [
                entry["Key"][len(self._root) :]
                for entry in page.get("Contents", [])
                if entry["Key"].startswith(self._root)
            ]
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return keys
            if max_keys is not None and len(keys) >= max_keys:
                return keys
            arguments["ContinuationToken"] = token

    def read_bytes(self, key: str) -> bytes:
        """The whole object in one GET (more if its body breaks); FileNotFoundError when it
        is missing."""
        return self._read_object(key)[1]

    def read_range(self, key: str, start: int, length: int) -> tuple[bytes, int]:
        """Up to ``length`` bytes from ``start`` in one ranged GET, and the object's size."""
        if length <= 0:
            return b"", start
        try:
            response, data = self._read_object(key, Range=f"bytes={start}-{start + length - 1}")
        except _RangeNotSatisfiable as error:
            return b"", error.size if error.size is not None else start
        content_range = response.get("ContentRange") or ""
        if "/" in content_range:
            total = content_range.rpartition("/")[2]
            if total.isdigit():
                return data, int(total)
        # A server that ignores Range sends the whole object.
        return data[start : start + length], len(data)

    def key_exists(self, key: str) -> bool:
        """One HEAD request."""
        try:
            self._call(
                "head", key, self.client.head_object, Bucket=self.bucket, Key=self._root + key
            )
        except FileNotFoundError:
            return False
        return True

    def modified_time(self, key: str) -> float | None:
        """The object's LastModified (one HEAD request), None when it does not exist."""
        try:
            response = self._call(
                "head", key, self.client.head_object, Bucket=self.bucket, Key=self._root + key
            )
        except FileNotFoundError:
            return None
        return _unix_time(response.get("LastModified"))

    def close(self) -> None:
        """Close the connections of a client this storage made (a given one is its owner's)."""
        if self._owns_client:
            close = getattr(self.client, "close", None)  # botocore >= 1.29
            if close is not None:
                close()

    # -- errors -------------------------------------------------------------------------------

    def _get(self, key: str, **extra: Any) -> Any:
        return self._call(
            "read", key, self.client.get_object, Bucket=self.bucket, Key=self._root + key, **extra
        )

    def _read_object(self, key: str, **extra: Any) -> tuple[Any, bytes]:
        """A GET's answer and its whole body, sent again while the body breaks mid-read (a stall
        of ``READ_TIMEOUT_SECONDS`` included), within ``BODY_ATTEMPTS`` GETs, none started past
        ``BODY_RETRY_SECONDS``; then ``StorageUnavailable`` (the reader tries the part again on
        a later poll). An object rewritten between two GETs is simply read whole again: every
        GET is a request of its own."""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            response = self._get(key, **extra)
            try:
                return response, bytes(response["Body"].read())
            except _BROKEN_BODY as error:
                _close_quietly(response["Body"])
                spent = time.monotonic() - started
                delay = random.uniform(0.0, _body_backoff(attempt))  # jitter, not secrets
                if attempt >= self._body_attempts or spent + delay > self._body_retry_seconds:
                    raise StorageUnavailable(
                        f"{self._uri(key)}: the connection broke while reading the object, "
                        f"{attempt} time(s) in {spent:.1f} s (the last: {error})"
                    ) from error
                with self._body_retries_lock:  # fetch threads share the storage
                    self.body_retries += 1
                self._sleep(delay)

    def _call(self, action: str, key: str, method: Any, **arguments: Any) -> Any:
        try:
            response = method(**arguments)
        except ClientError as error:
            raise self._client_error(error, action, key) from error
        except (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError) as error:
            raise TrialError(
                f"{self.location}: no usable AWS credentials ({error}). They are looked up "
                "the standard way: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE and "
                "~/.aws, then the container or instance role; set one of them."
            ) from error
        except (EndpointUnreachable, HTTPClientError) as error:
            if not self._reached.is_set():
                raise TrialError(
                    f"{self.location}: cannot reach the S3 endpoint {self.endpoint} ({error}). "
                    "Check s3_endpoint_url / AWS_ENDPOINT_URL and the network."
                ) from error
            raise StorageUnavailable(
                f"{self._uri(key)}: the S3 endpoint {self.endpoint} stopped answering ({error})"
            ) from error
        self._reached.set()
        return response

    def _client_error(self, error: ClientError, action: str, key: str) -> Exception:
        """The exception the reader acts on for an S3 error response."""
        self._reached.set()
        details = error.response.get("Error", {})
        code = str(details.get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code == "InvalidRange" or status == 416:
            size = details.get("ActualObjectSize")
            return _RangeNotSatisfiable(int(size) if str(size).isdigit() else None)
        if code == "NoSuchBucket":
            return TrialError(
                f"{self.location}: the bucket {self.bucket!r} does not exist at {self.endpoint}. "
                "Check the bucket name in the trial URI (the training job's debugger output "
                "path) and the endpoint (s3_endpoint_url / AWS_ENDPOINT_URL)."
            )
        if code in _MISSING_KEY or (status == 404 and action != "list"):
            return FileNotFoundError(f"{self._uri(key)} does not exist")
        if code in _DENIED or status == 403:
            return TrialError(
                f"{self.location}: S3 refused to {action} {self._uri(key)} ({code or status}). "
                "Check the credentials (standard chain: environment, AWS_PROFILE, container or "
                f"instance role) and that they allow s3:ListBucket on arn:aws:s3:::{self.bucket} "
                f"and s3:GetObject on arn:aws:s3:::{self.bucket}/{self._root}*."
            )
        if code in _WRONG_REGION or status == 301:
            return TrialError(
                f"{self.location}: the bucket is in another region than the client's ({code}). "
                "Set AWS_REGION (or AWS_DEFAULT_REGION) to the bucket's region."
            )
        return StorageUnavailable(
            f"{self._uri(key)}: S3 {action} failed with {code or status} after "
            f"retries ({shortened(str(details.get('Message', error)))})"
        )

    def _uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._root}{key}"


def _body_backoff(attempt: int) -> float:
    """The longest wait after the ``attempt``-th broken body (1, 2, ...): exponential, capped."""
    return min(BODY_BACKOFF_CAP_SECONDS, BODY_BACKOFF_SECONDS * 2.0 ** min(attempt - 1, 16))


def _close_quietly(body: Any) -> None:
    """Let go of a broken body's connection (it is not returned to the pool half-read)."""
    with contextlib.suppress(*_BROKEN_BODY):
        body.close()


class _RangeNotSatisfiable(Exception):
    """S3 answers 416 to a range starting at or past the end, including any range of an empty
    object: for the reader that is simply no bytes."""

    def __init__(self, size: int | None) -> None:
        super().__init__(f"range not satisfiable (object size {size})")
        self.size = size


def _unix_time(modified: object) -> float | None:
    """A HEAD answer's LastModified as Unix time. botocore parses it into an aware datetime; an
    endpoint that sends none gives None (the caller then takes its own clock), and a naive one
    is read as UTC, as S3 sends it, not as this machine's local time."""
    if not isinstance(modified, datetime.datetime):
        return None
    if modified.tzinfo is None:
        modified = modified.replace(tzinfo=datetime.UTC)
    return modified.timestamp()
