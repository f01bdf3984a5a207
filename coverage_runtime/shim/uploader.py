"""Put coverage snapshots into S3, one object per execution environment.

The key is ``<prefix><function>/<version>/<init date>/<environment id>.coverage``
and every snapshot overwrites the previous one, so S3 always holds the latest
complete data of each environment and the report merges one file each.

The client is `s3.ObjectClient` (``PutObject`` and ``HeadObject`` signed with
the standard library), not boto3: it is built in ~0.1 ms and its first
request imports ``hashlib``/``hmac`` only, against 180-250 ms of CPU and
~25 MB of RSS for boto3's import and client (botocore's signer, credentials
and HTTP session alone: 60-100 ms, 6-7 MB), measured by bench/upload_paths.py
on the host's 3.13 next to the shim's own imports.  On the third of a vCPU a
512 MB function gets, boto3's build took about a second of the shipping
thread after the first response, and an environment shut down before it was
built spent its 400 ms shutdown window building it.  The arguments are
`s3.put_arguments`', the same as the combiner's.

`coverage_runtime.s3` (with ``http.client``'s HTTPS side) is imported when the
uploader is built, on the shipping thread after the first response: 7-15 ms of
the init in the image otherwise.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

from coverage_runtime import layout
from coverage_runtime.errors import UploadError
from coverage_runtime.layout import ObjectKey
from coverage_runtime.settings import Settings
from coverage_runtime.shim.identity import EnvironmentIdentity

if TYPE_CHECKING:
    from coverage_runtime import s3

# Attempts in all, the first included.
MAX_ATTEMPTS = 3
CONNECT_TIMEOUT_SECONDS = 2.0
READ_TIMEOUT_SECONDS = 5.0
# Object metadata: the snapshot's generation, which only grows in an environment.
GENERATION_KEY = layout.GENERATION


class Superseded(Exception):
    """A newer snapshot's upload has started: this older one must not be sent."""


def object_key(settings: Settings, identity: EnvironmentIdentity, *, delta: bool = False) -> str:
    where = ObjectKey(
        identity.function_name,
        identity.function_version,
        identity.init_date,
        identity.environment_id,
    )
    return where.format_delta(settings.prefix) if delta else where.format(settings.prefix)


class UploadResult(NamedTuple):
    """(A `NamedTuple` because the init imports this module: see `errors.ConfigProblem`.)

    ``seconds``: the whole upload, what it took its caller, retries and the
    pauses before them included.  ``attempt_seconds``: the attempt that
    succeeded alone, what a PUT of ``bytes`` takes: the rate the session's
    estimates of a PUT's time go by (`session.CoverageSession._put_rate`).
    ``attempts``: how many it took, and ``retried_after`` what the failed ones
    came to (S3's last refusal, the last attempt it did not answer, or both:
    `SnapshotUploader._retried_after`): a retry that succeeded is otherwise
    invisible, and a run of them is S3 throttling or a flaky path.
    """

    bucket: str
    key: str
    bytes: int
    seconds: float
    attempt_seconds: float
    etag: str | None
    attempts: int = 1
    retried_after: str | None = None


class SnapshotUploader:
    """Uploads snapshots of one environment with SSE, owner check and bounded retries:
    to its base object, or (`for_delta`) to its delta object."""

    def __init__(
        self,
        settings: Settings,
        identity: EnvironmentIdentity,
        *,
        delta: bool = False,
        client: s3.ObjectClient | None = None,
    ) -> None:
        if settings.bucket is None:
            raise UploadError("COVERAGE_S3_BUCKET is not set")
        self.settings = settings
        self.identity = identity
        self.bucket = settings.bucket
        self.key = object_key(settings, identity, delta=delta)
        from coverage_runtime import s3

        self._client: s3.ObjectClient = client or s3.make_client(
            purpose="uploader",
            region=settings.region,
            endpoint_url=settings.endpoint_url,
            attempts=MAX_ATTEMPTS,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            read_timeout=READ_TIMEOUT_SECONDS,
            light=True,
        )
        # An attempt was left running at its deadline: it may still land, after
        # a newer one (the shutdown then reads the stored generation back).
        self.abandoned = False
        # An attempt went without its answer (one retried, or the last of an upload
        # that failed): S3 may still complete it, after a newer one was confirmed.
        # (Conservative: a refused attempt counts too.)
        self.unanswered = False
        # Fencing: no attempt (first send or retry) of an older snapshot may
        # start once a newer one has started, so an abandoned upload can never
        # overwrite newer data.
        self._newest_started = 0
        # The first generation an attempt was made for: none older can land later.
        self._first_started: int | None = None
        # What the attempts of the newest started generation came to (`refused`).
        self._newest_attempts: s3.Attempts | None = None
        self._fence = threading.Lock()

    @property
    def _where(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def _fenced(
        self, generation: int, attempts: s3.Attempts, gate: Callable[[], None] | None = None
    ) -> Callable[[], None]:
        """What runs before each attempt of ``generation``'s upload (``gate`` first),
        whose ``attempts`` then are the newest upload's."""

        def check() -> None:
            if gate is not None:
                gate()
            with self._fence:
                if generation < self._newest_started:
                    raise Superseded(f"snapshot {generation} superseded by {self._newest_started}")
                if generation == self._newest_started:  # an attempt of it went before
                    self.unanswered = True
                self._newest_started = generation
                self._newest_attempts = attempts
                if self._first_started is None:
                    self._first_started = generation

        return check

    def for_delta(self) -> SnapshotUploader:
        """The uploader of this environment's delta object, on the same client.
        (Its own fence: each object's generations only grow.)"""
        return SnapshotUploader(self.settings, self.identity, delta=True, client=self._client)

    def older_attempted(self, generation: int) -> bool:
        """Was an attempt ever made for a generation older than ``generation``?
        If not, no older snapshot can land after it (nothing to read back)."""
        with self._fence:
            return self._first_started is not None and self._first_started < generation

    @property
    def client(self) -> s3.ObjectClient:
        return self._client

    def upload(
        self,
        body: bytes,
        metadata: Mapping[str, str],
        *,
        generation: int = 0,
        deadline: float | None = None,
        before_attempt: Callable[[], None] | None = None,
    ) -> UploadResult:
        """Put snapshot ``generation``.  With a ``deadline`` (a `time.monotonic`
        value), give up when it passes, even in the middle of a request or a
        retry; a newer generation started meanwhile cancels the older one's
        further attempts, and so does ``before_attempt`` raising `Superseded`
        (`RunningUploads.of`'s gate)."""
        from coverage_runtime import s3

        args = s3.put_arguments(
            self.settings, self.key, body, {**metadata, GENERATION_KEY: str(generation)}
        )
        started = time.monotonic()
        attempts = s3.Attempts()
        check = self._fenced(generation, attempts, before_attempt)
        try:
            if deadline is None:
                response = self._put(args, check, None, attempts)
            else:
                response = self._put_before(args, check, deadline, attempts)
        except UploadError:
            with self._fence:
                if self._newest_started == generation:  # (an attempt of it started)
                    self.unanswered = True
            raise
        seconds = time.monotonic() - started
        return UploadResult(
            bucket=self.bucket,
            key=self.key,
            bytes=len(body),
            seconds=seconds,
            # (Set by the client on success; the whole upload only if it never said.)
            attempt_seconds=seconds if attempts.seconds is None else attempts.seconds,
            etag=(response.get("ETag") or "").strip('"') or None,
            attempts=attempts.made,  # (at least the one that succeeded)
            retried_after=self._retried_after(attempts) if attempts.made > 1 else None,
        )

    def refused(self, generation: int) -> str | None:
        """How S3 last refused an attempt of ``generation``'s upload (`_refused`), if it
        did and no newer upload has started: read also while that upload runs, by
        a caller whose own deadline came first (`session.CoverageSession.shutdown`)."""
        with self._fence:
            attempts = self._newest_attempts if generation == self._newest_started else None
        refusal = attempts.refusal if attempts is not None else None
        return self._refused(refusal) if refusal is not None else None

    def stored_generation(self, deadline: float) -> int | None:
        """The generation of the object in S3 now (None if unknown or absent)."""
        args = {"Bucket": self.bucket, "Key": self.key}
        if self.settings.expected_owner:
            args["ExpectedBucketOwner"] = self.settings.expected_owner
        try:
            head = call_before(lambda: self._client.head_object(args, deadline=deadline), deadline)
        except Exception:  # a verification only: never the cause of a failure
            return None
        value = (head.get("Metadata") or {}).get(GENERATION_KEY)
        return int(value) if value and value.isdigit() else None

    def _put(
        self,
        args: dict[str, Any],
        check: Callable[[], None],
        deadline: float | None,
        attempts: s3.Attempts,
    ) -> dict[str, Any]:
        from coverage_runtime import s3

        where = self._where
        try:
            return self._client.put_object(
                args, deadline=deadline, before_attempt=check, attempts=attempts
            )
        except Superseded as exc:
            raise UploadError(f"not sent: {exc}") from exc
        except s3.S3RequestError as exc:
            found = exc.problem
            if found.kind == "deadline":
                raise UploadError(self._cut_short(attempts)) from exc
            if found.kind == "no_credentials":
                raise UploadError(f"no AWS credentials to upload to {where}: {exc}") from exc
            if found.status is None:
                raise UploadError(f"could not reach S3 for {where}: {exc}") from exc
            raise UploadError(self._refused(found)) from exc

    def _refused(self, found: s3.S3Problem) -> str:
        """S3's error answer to a PUT, as the upload's error says it."""
        hint = ""
        if found.kind == "access_denied":
            hint = " (check the function role's s3:PutObject permission on the prefix" + (
                ", and that COVERAGE_S3_EXPECTED_OWNER is the bucket owner's account)"
                if self.settings.expected_owner
                else ")"
            )
        return f"S3 refused {self._where}: {found.answer()}{hint}"

    @staticmethod
    def _retried_after(attempts: s3.Attempts) -> str | None:
        """What the failed attempts came to: S3's last refusal, the last attempt it
        did not answer, or both."""
        said = []
        if attempts.refusal is not None:
            said.append(attempts.refusal.answer())
        if attempts.unanswered is not None:
            said.append(f"no answer: {attempts.unanswered.message}")
        return "; ".join(said) or None

    def _cut_short(self, attempts: s3.Attempts) -> str:
        """The error of an upload its deadline ended, S3's last refusal first if an
        attempt had one (a 5xx whose retry the deadline cut): an operator must be
        able to tell that S3 refused the PUT from a slow S3."""
        refusal = attempts.refusal
        if refusal is not None:
            return f"{self._refused(refusal)}; its retry did not finish before the deadline"
        unanswered = attempts.unanswered
        if unanswered is not None:  # (a reset, say: not a slow S3 either)
            return (
                f"could not reach S3 for {self._where}: {unanswered.message}; "
                "its retry did not finish before the deadline"
            )
        return f"upload to {self._where} did not finish before the deadline"

    def _put_before(
        self,
        args: dict[str, Any],
        check: Callable[[], None],
        deadline: float,
        attempts: s3.Attempts,
    ) -> dict[str, Any]:
        """The put, with a hard deadline.

        The client's timeouts and its retries stop at the deadline, but name
        resolution, for one, has no timeout: only waiting from outside gives a
        hard deadline.  The abandoned attempt cannot land later over newer
        data: see the fence.  (Its ``attempts`` are still read: what S3
        answered the attempts before it.)
        """
        try:
            return call_before(lambda: self._put(args, check, deadline, attempts), deadline)
        except TimeoutError as exc:
            self.abandoned = True
            raise UploadError(self._cut_short(attempts)) from exc


class RunningUploads:
    """The uploads on the wire, each until its answer is recorded, so that the
    shutdown can wait for a checkpoint's instead of racing it with a PUT of
    the same key; and the gate that keeps any other upload off the wire once
    the shutdown has begun.

    Two PUTs of one key at once share the shutdown's bandwidth, and which
    lands last is S3's choice (hence the read-back); the local S3 (moto) even
    answers one of them 500 (its second ``put_object`` closes the first's
    buffer before that one's ETag is read).  Waiting for the checkpoint's
    upload first lets the shutdown skip its own when the checkpoint held
    everything, and send it alone otherwise.

    An upload counts from its first attempt, not from its snapshot: between
    the two (the S3 client's build, hashing the body) the shutdown would wait
    for a thread that may never get the GIL in its window.  The gate (`close`,
    checked before each attempt, atomically with counting it) makes that
    safe: an upload either started before the shutdown closed it, and the
    shutdown sees it, or never starts.  An upload abandoned at its deadline
    (a flush's) ends here while its request may still be on the wire: the
    fence and the shutdown's read-back cover that one.
    """

    def __init__(self) -> None:
        self._registered: dict[int, int] = {}
        self._on_wire: dict[int, bool] = {}  # generation -> is it a delta's
        self._closed = False
        self._changed = threading.Condition()

    @contextmanager
    def of(
        self, generation: int, *, final: bool = False, delta: bool = False
    ) -> Iterator[Callable[[], None]]:
        """Around ``generation``'s upload (of the delta object if ``delta``, else of
        the base) and the record of its answer; yields the gate each attempt
        passes first (`SnapshotUploader.upload`'s ``before_attempt``):
        `Superseded` once `close` was called, unless ``final`` (the shutdown's
        own upload)."""

        def gate() -> None:
            with self._changed:
                if self._closed and not final:
                    raise Superseded("the shutdown has begun: it uploads the newest snapshot")
                self._on_wire[generation] = delta

        with self._changed:
            self._registered[generation] = self._registered.get(generation, 0) + 1
        try:
            yield gate
        finally:
            with self._changed:
                count = self._registered.pop(generation) - 1
                if count:
                    self._registered[generation] = count
                else:
                    self._on_wire.pop(generation, None)
                self._changed.notify_all()

    def close(self) -> None:
        """The shutdown has begun: no attempt but its own starts from now on
        (a retry of an earlier one included)."""
        with self._changed:
            self._closed = True

    def older(self, generation: int, *, delta: bool | None = None) -> bool:
        """Is the upload of a generation older than ``generation`` on the wire?  Of
        the delta object only if ``delta``, of the base only if False, of either
        if None."""
        with self._changed:
            return self._older(generation, delta)

    def _older(self, generation: int, delta: bool | None) -> bool:
        return any(
            other < generation and (delta is None or of_delta is delta)
            for other, of_delta in self._on_wire.items()
        )

    def wait_for_older(self, generation: int, until: float, *, delta: bool | None = None) -> bool:
        """Wait until no upload older than ``generation`` (of the object ``delta``
        says: see `older`) is on the wire, or until ``until`` (monotonic); True
        if none is."""
        with self._changed:
            while self._older(generation, delta):
                left = until - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True


class DeadlinePassed(TimeoutError):
    """`call_before`'s deadline passed with the call still running."""


def call_before(call: Any, deadline: float, *, name: str = "coverage-upload") -> Any:
    """``call()`` on a helper thread, waited for until ``deadline`` (monotonic);
    `DeadlinePassed` then, and the call is left to end with the process.

    A client's timeouts bound each attempt, not name resolution, and nothing
    bounds writing a data file: only waiting from outside gives a hard deadline
    (an upload, the whole shutdown before Lambda's SIGKILL).
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["response"] = call()
        except BaseException:  # handed to the waiting thread
            outcome["error"] = sys.exc_info()[1]

    worker = threading.Thread(target=run, name=name, daemon=True)
    try:
        worker.start()
    except RuntimeError:  # 3.12+: no new threads at interpreter shutdown (atexit)
        return call()
    worker.join(max(0.0, deadline - time.monotonic()))
    if worker.is_alive():
        raise DeadlinePassed
    if "error" in outcome:
        raise outcome["error"]
    return outcome["response"]
