"""`SnapshotUploader` against the real moto S3 server over HTTP."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from coverage_runtime.errors import UploadError
from coverage_runtime.layout import CONTENT_TYPE
from coverage_runtime.settings import load_settings
from coverage_runtime.shim.identity import EnvironmentIdentity
from coverage_runtime.shim.uploader import (
    MAX_ATTEMPTS,
    RunningUploads,
    SnapshotUploader,
    Superseded,
    object_key,
)
from tests.harness import FAKE_CREDENTIALS
from tests.s3_proxy import Fault, FaultProxy, fault_proxy

MOTO_ACCOUNT = "123456789012"  # moto's default account: the owner of every bucket
ENV_ID = "0123456789abcdef0123456789abcdef"
BODY = b"SQLite format 3\x00" + b"\x00" * 4080


@pytest.fixture(autouse=True)
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)


def identity(**changes: Any) -> EnvironmentIdentity:
    values: dict[str, Any] = {
        "function_name": "orders-api",
        "function_version": "$LATEST",
        "environment_id": ENV_ID,
        "init_time": datetime(2026, 11, 25, 10, 30, tzinfo=UTC),
    }
    values.update(changes)
    return EnvironmentIdentity(**values)


def uploader(endpoint_url: str, bucket: str, **variables: str) -> SnapshotUploader:
    settings = load_settings(
        {
            "LAMBDA_TASK_ROOT": "/var/task",
            "COVERAGE_S3_BUCKET": bucket,
            "COVERAGE_S3_ENDPOINT_URL": endpoint_url,
            "AWS_REGION": "us-east-1",
            **variables,
        }
    )
    return SnapshotUploader(settings, identity())


def test_object_key_layout_and_body(s3_server, s3, bucket):
    up = uploader(s3_server.endpoint_url, bucket)
    expected = f"coverage/orders-api/$LATEST/2026-11-25/{ENV_ID}.coverage"
    assert up.key == expected
    result = up.upload(BODY, {"mode": "full"})
    assert (result.bucket, result.key, result.bytes) == (bucket, expected, len(BODY))
    assert result.seconds >= 0
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == [expected]
    stored = s3.get_object(Bucket=bucket, Key=expected)
    assert stored["Body"].read() == BODY
    assert stored["ContentType"] == CONTENT_TYPE
    assert stored["ETag"].strip('"') == result.etag


def test_prefix_shapes_the_key(s3_server, s3, bucket):
    team = uploader(s3_server.endpoint_url, bucket, COVERAGE_S3_PREFIX="team/cov")
    bare = uploader(s3_server.endpoint_url, bucket, COVERAGE_S3_PREFIX="")
    assert team.upload(BODY, {}).key == f"team/cov/orders-api/$LATEST/2026-11-25/{ENV_ID}.coverage"
    assert bare.upload(BODY, {}).key == f"orders-api/$LATEST/2026-11-25/{ENV_ID}.coverage"
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 2


def test_each_snapshot_overwrites_the_environment_object(s3_server, s3, bucket):
    up = uploader(s3_server.endpoint_url, bucket)
    first = up.upload(b"first", {"invocations": "1"})
    second = up.upload(b"second, longer", {"invocations": "2"})
    assert first.key == second.key
    assert first.etag != second.etag
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1
    stored = s3.get_object(Bucket=bucket, Key=second.key)
    assert stored["Body"].read() == b"second, longer"
    assert stored["Metadata"] == {"invocations": "2", "snapshot-generation": "0"}


def test_metadata_is_stored(s3_server, s3, bucket):
    metadata = {
        "coverage-version": "7.17.4",
        "python-version": "3.11.7",
        "mode": "selective",
        "branch": "true",
        "invocations": "42",
        "init-time": "2026-11-25T10:30:00.000Z",
        "snapshot-time": "2026-11-25T10:31:00.000Z",
        "code-revision": "3f2a9c1",
    }
    up = uploader(s3_server.endpoint_url, bucket)
    up.upload(BODY, metadata, generation=7)
    assert s3.head_object(Bucket=bucket, Key=up.key)["Metadata"] == {
        **metadata,
        "snapshot-generation": "7",
    }
    assert up.stored_generation(time.monotonic() + 5) == 7


def test_server_side_encryption_aes256_by_default(s3_server, s3, bucket):
    up = uploader(s3_server.endpoint_url, bucket)
    up.upload(BODY, {})
    head = s3.head_object(Bucket=bucket, Key=up.key)
    assert head["ServerSideEncryption"] == "AES256"
    assert "SSEKMSKeyId" not in head


def test_server_side_encryption_kms_with_a_key_id(s3_server, s3, bucket):
    key_id = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    up = uploader(
        s3_server.endpoint_url,
        bucket,
        COVERAGE_S3_SSE="aws:kms",
        COVERAGE_S3_KMS_KEY_ID=key_id,
    )
    up.upload(BODY, {})
    head = s3.head_object(Bucket=bucket, Key=up.key)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == key_id


def test_missing_bucket_is_an_upload_error(s3_server):
    missing = f"missing-{uuid.uuid4().hex[:12]}"
    up = uploader(s3_server.endpoint_url, missing)
    with pytest.raises(UploadError) as caught:
        up.upload(BODY, {})
    message = str(caught.value)
    assert f"s3://{missing}/coverage/orders-api/" in message
    assert "NoSuchBucket" in message


def test_missing_bucket_is_an_upload_error_with_a_deadline_too(s3_server):
    up = uploader(s3_server.endpoint_url, f"missing-{uuid.uuid4().hex[:12]}")
    with pytest.raises(UploadError, match="NoSuchBucket"):
        up.upload(BODY, {}, deadline=time.monotonic() + 5)


def test_no_bucket_configured():
    settings = load_settings({"LAMBDA_TASK_ROOT": "/var/task"})
    with pytest.raises(UploadError, match="COVERAGE_S3_BUCKET"):
        SnapshotUploader(settings, identity())


def test_unreachable_endpoint_is_an_upload_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    up = uploader(f"http://127.0.0.1:{closed_port}", "some-bucket")
    started = time.monotonic()
    with pytest.raises(UploadError, match="could not reach S3"):
        up.upload(BODY, {}, deadline=time.monotonic() + 10)
    assert time.monotonic() - started < 10


def test_the_client_is_created_once_and_reused(s3_server, bucket):
    up = uploader(s3_server.endpoint_url, bucket)
    client = up.client
    up.upload(BODY, {})
    up.upload(BODY, {}, deadline=time.monotonic() + 5)
    assert up.client is client


# -- expected bucket owner ---------------------------------------------------------------


@pytest.fixture
def owner_checking_s3(s3_server) -> Iterator[FaultProxy]:
    """moto behind the fault proxy, which enforces ExpectedBucketOwner as S3 does."""
    with fault_proxy(s3_server.port, owner=MOTO_ACCOUNT) as proxy:
        yield proxy


def owners_sent(proxy: FaultProxy) -> list[str | None]:
    return [seen.headers.get("x-amz-expected-bucket-owner") for seen in proxy.seen]


def test_expected_owner_matching_uploads(owner_checking_s3, s3, bucket):
    up = uploader(owner_checking_s3.endpoint_url, bucket, COVERAGE_S3_EXPECTED_OWNER=MOTO_ACCOUNT)
    up.upload(BODY, {})
    assert owners_sent(owner_checking_s3) == [MOTO_ACCOUNT]
    assert s3.head_object(Bucket=bucket, Key=up.key)["ContentLength"] == len(BODY)


def test_expected_owner_mismatch_is_an_upload_error(owner_checking_s3, s3, bucket):
    up = uploader(owner_checking_s3.endpoint_url, bucket, COVERAGE_S3_EXPECTED_OWNER="111111111111")
    with pytest.raises(UploadError) as caught:
        up.upload(BODY, {})
    message = str(caught.value)
    assert message.startswith(f"S3 refused s3://{bucket}/coverage/orders-api/")
    assert "AccessDenied" in message
    assert owners_sent(owner_checking_s3) == ["111111111111"], "refused at once, not retried"
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_no_expected_owner_header_unless_configured(owner_checking_s3, bucket):
    uploader(owner_checking_s3.endpoint_url, bucket).upload(BODY, {})
    assert owners_sent(owner_checking_s3) == [None]


# -- the deadline --------------------------------------------------------------------------


def test_deadline_bounds_an_upload_to_a_hanging_endpoint(hanging_endpoint):
    up = uploader(hanging_endpoint, "some-bucket")
    started = time.monotonic()
    with pytest.raises(UploadError) as caught:
        up.upload(BODY, {}, deadline=started + 0.3)
    elapsed = time.monotonic() - started
    assert elapsed < 3, f"took {elapsed:.2f}s"
    assert "deadline" in str(caught.value)
    assert f"s3://some-bucket/{up.key}" in str(caught.value)


def test_a_deadline_already_passed_fails_at_once(hanging_endpoint):
    up = uploader(hanging_endpoint, "some-bucket")
    started = time.monotonic()
    with pytest.raises(UploadError, match="deadline"):
        up.upload(BODY, {}, deadline=started - 1)
    assert time.monotonic() - started < 3


def test_object_key_function_matches_the_uploader(s3_server, bucket):
    up = uploader(s3_server.endpoint_url, bucket)
    assert up.key == object_key(up.settings, identity())


def test_attempts_mean_attempts_and_the_status_is_named(s3_server, s3, bucket):
    from tests.s3_proxy import fault_proxy

    with fault_proxy(int(s3_server.endpoint_url.rsplit(":", 1)[1])) as proxy:
        proxy.set("PUT", "status", 503)
        up = uploader(proxy.endpoint_url, bucket)
        with pytest.raises(UploadError, match="HTTP 503 SlowDown"):
            up.upload(BODY, {}, generation=1)
        assert len(proxy.requests("PUT")) == MAX_ATTEMPTS


def test_an_older_snapshots_retry_is_never_sent_after_a_newer_one_started(s3_server, s3, bucket):
    """Generation 1's first attempt is held and then refused (botocore would retry);
    generation 2 starts meanwhile: the retry of 1 is cancelled, 2 stays in S3."""
    from tests.s3_proxy import fault_proxy

    with fault_proxy(int(s3_server.endpoint_url.rsplit(":", 1)[1])) as proxy:
        proxy.set("PUT", "stall_503", times=1)
        up = uploader(proxy.endpoint_url, bucket)
        errors: list[BaseException] = []

        def older() -> None:
            try:
                up.upload(b"older", {}, generation=1)
            except BaseException as exc:
                errors.append(exc)

        worker = threading.Thread(target=older)
        worker.start()
        proxy.wait_for("PUT")
        up.upload(b"newer", {}, generation=2)
        proxy.release()
        worker.join(30)
        assert errors and "superseded" in str(errors[0])
        sent = [s.headers["x-amz-meta-snapshot-generation"] for s in proxy.requests("PUT")]
        assert sent == ["1", "2"], "the older snapshot was not sent again"
        assert s3.get_object(Bucket=bucket, Key=up.key)["Body"].read() == b"newer"


@pytest.mark.parametrize(
    ("action", "value", "message"),
    [
        ("status", 403, "HTTP 403 AccessDenied"),
        ("status", 500, "HTTP 500 InternalError"),
        ("reset", 0, "could not reach S3"),
    ],
)
def test_s3_faults_are_one_clear_upload_error(s3_server, s3, bucket, action, value, message):
    from tests.s3_proxy import fault_proxy

    with fault_proxy(int(s3_server.endpoint_url.rsplit(":", 1)[1])) as proxy:
        proxy.set("PUT", action, value)
        up = uploader(proxy.endpoint_url, bucket)
        with pytest.raises(UploadError, match=message):
            up.upload(BODY, {}, generation=1)
        assert len(proxy.requests("PUT")) <= MAX_ATTEMPTS
        proxy.clear()
        assert up.upload(BODY, {}, generation=2).key  # and it works again once S3 does


def test_a_delayed_s3_within_the_deadline_is_only_slower(s3_server, s3, bucket):
    from tests.s3_proxy import fault_proxy

    with fault_proxy(int(s3_server.endpoint_url.rsplit(":", 1)[1])) as proxy:
        proxy.set("PUT", "delay", 0.3)
        up = uploader(proxy.endpoint_url, bucket)
        result = up.upload(BODY, {}, generation=1, deadline=time.monotonic() + 5)
        assert result.seconds >= 0.3
        assert s3.get_object(Bucket=bucket, Key=up.key)["Body"].read() == BODY


def test_a_retry_the_deadline_cuts_still_names_s3s_refusal(s3_server, bucket):
    """S3 refuses the first attempt (500); the retry, after the client's pause (up to
    1 s: it fits), is held on the wire until the deadline.  The error says both: S3
    refused it, as a refusal is said, and the retry did not finish before the
    deadline (before: the deadline only; an operator reading the shutdown's loss
    record could not tell S3 refused the PUT from a slow S3)."""
    with fault_proxy(s3_server.port) as proxy:
        proxy.set("PUT", "status", 500, times=1, then=Fault("stall"))
        up = uploader(proxy.endpoint_url, bucket)
        with pytest.raises(UploadError) as caught:
            up.upload(BODY, {}, generation=1, deadline=time.monotonic() + 1.5)
        assert [seen.action for seen in proxy.requests("PUT")] == ["status", "stall"]
    message = str(caught.value)
    where = f"s3://{bucket}/{up.key}"
    refused = f"S3 refused {where}: HTTP 500 InternalError: injected by the test proxy"
    assert message == f"{refused}; its retry did not finish before the deadline", message
    assert up.refused(1) == refused  # (what a shutdown cut at the same deadline says)
    assert up.refused(2) is None


def test_a_retry_the_deadline_cuts_after_a_reset_still_names_the_reset(s3_server, bucket):
    """The first attempt's connection is reset; the retry, after the client's pause,
    is held on the wire until the deadline.  The error names the reset, as an
    unanswered attempt is said, and the deadline (before: the deadline only)."""
    with fault_proxy(s3_server.port) as proxy:
        proxy.set("PUT", "reset", times=1, then=Fault("stall"))
        up = uploader(proxy.endpoint_url, bucket)
        with pytest.raises(UploadError) as caught:
            up.upload(BODY, {}, generation=1, deadline=time.monotonic() + 1.5)
        assert [seen.action for seen in proxy.requests("PUT")] == ["reset", "stall"]
    message = str(caught.value)
    assert message.startswith(f"could not reach S3 for s3://{bucket}/{up.key}: PUT "), message
    assert message.endswith("; its retry did not finish before the deadline"), message
    assert up.refused(1) is None  # (no answer: nothing S3 refused)


def test_no_time_left_for_a_retry_is_the_deadline_with_s3s_refusal_kept(s3_server, bucket):
    """The client alone: S3 refuses the first attempt (500) and the deadline has
    passed when the pause before the retry would begin (``before_attempt`` runs
    there, and waits it out).  The call fails as the deadline's (``deadline``),
    not as the refusal, whose retry it never tried; `Attempts` keeps the refusal
    (before: the refusal, as if no retry were left)."""
    from coverage_runtime import s3 as s3_module

    with fault_proxy(s3_server.port) as proxy:
        proxy.set("PUT", "status", 500, times=1)
        client = s3_module.make_client(purpose="test", endpoint_url=proxy.endpoint_url, light=True)
        deadline = time.monotonic() + 1
        calls: list[float] = []

        def before_attempt() -> None:
            calls.append(time.monotonic())
            if len(calls) == 2:  # before the pause: wait out the deadline
                threading.Event().wait(max(0.0, deadline - time.monotonic()))

        attempts = s3_module.Attempts()
        with pytest.raises(s3_module.S3RequestError) as caught:
            client.put_object(
                {"Bucket": bucket, "Key": "k", "Body": b"x"},
                deadline=deadline,
                before_attempt=before_attempt,
                attempts=attempts,
            )
        assert [seen.action for seen in proxy.requests("PUT")] == ["status"]
    assert caught.value.problem.kind == "deadline", caught.value.problem
    assert attempts.refusal is not None
    assert attempts.refusal.answer() == "HTTP 500 InternalError: injected by the test proxy"
    assert attempts.seconds is None, "no attempt succeeded"


def test_a_retried_puts_attempt_seconds_are_the_answered_attempts_alone(s3_server, s3, bucket):
    """S3 refuses the first attempt (500); the client pauses (random, up to 1 s) and
    retries, answered at once.  ``attempt_seconds``, the rate the session's
    estimates of a PUT go by, are the retry's alone: not the refused attempt, not
    the pause (before: the whole upload's, which made a body that fits look as if
    it would not); ``seconds`` are still the whole upload's."""
    with fault_proxy(s3_server.port) as proxy:
        proxy.set("PUT", "status", 500, times=1)
        up = uploader(proxy.endpoint_url, bucket)
        gates: list[float] = []  # before each attempt, and before the pause
        result = up.upload(
            BODY, {}, generation=1, before_attempt=lambda: gates.append(time.monotonic())
        )
        returned = time.monotonic()
        assert [seen.action for seen in proxy.requests("PUT")] == ["status", "pass"]
    assert len(gates) == 3, gates
    # The retry began after its gate (the last) and ended before the upload returned.
    assert 0 < result.attempt_seconds <= returned - gates[-1], (result, gates)
    assert result.seconds >= result.attempt_seconds + (gates[-1] - gates[0]), (result, gates)
    assert s3.get_object(Bucket=bucket, Key=up.key)["Body"].read() == BODY
    # Said: two attempts, the first refused.
    assert result.attempts == 2, result
    assert result.retried_after == "HTTP 500 InternalError: injected by the test proxy", result


def test_a_put_answered_at_once_took_one_attempt(s3_server, s3, bucket):
    result = uploader(s3_server.endpoint_url, bucket).upload(BODY, {}, generation=1)
    assert (result.attempts, result.retried_after) == (1, None), result


def test_a_put_retried_after_a_reset_says_it_was_not_answered(s3_server, s3, bucket):
    with fault_proxy(s3_server.port) as proxy:
        proxy.set("PUT", "reset", times=1)
        up = uploader(proxy.endpoint_url, bucket)
        result = up.upload(BODY, {}, generation=1)
        assert [seen.action for seen in proxy.requests("PUT")] == ["reset", "pass"]
    assert result.attempts == 2, result
    assert result.retried_after is not None and result.retried_after.startswith("no answer: ")
    assert s3.get_object(Bucket=bucket, Key=up.key)["Body"].read() == BODY


# -- the signature, checked as S3 checks it ------------------------------------------------


@pytest.fixture
def signature_checking_s3(s3_server) -> Iterator[FaultProxy]:
    """moto behind the fault proxy, which checks SigV4 with botocore's signer as S3 does."""
    with fault_proxy(s3_server.port, secret=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]) as proxy:
        yield proxy


def test_every_request_is_signed_as_s3_checks_it(signature_checking_s3, s3, bucket, monkeypatch):
    """Every header S3 reads, a key that needs quoting, metadata that is not
    ASCII, a session token: the proxy recomputes each signature with botocore."""
    monkeypatch.setenv("AWS_SESSION_TOKEN", "a-session-token/with+odd=chars")
    key_id = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    up = uploader(
        signature_checking_s3.endpoint_url,
        bucket,
        COVERAGE_S3_PREFIX="team cov/~x+y@z=",
        COVERAGE_S3_SSE="aws:kms:dsse",
        COVERAGE_S3_KMS_KEY_ID=key_id,
        COVERAGE_S3_EXPECTED_OWNER=MOTO_ACCOUNT,
    )
    up.upload(BODY, {"code-revision": "  spaced  out  ", "note": "café"}, generation=3)
    assert up.stored_generation(time.monotonic() + 5) == 3
    seen = signature_checking_s3.seen
    assert [(s.method, s.action) for s in seen] == [("PUT", "pass"), ("HEAD", "pass")]
    assert seen[0].headers["x-amz-security-token"] == "a-session-token/with+odd=chars"
    assert seen[0].headers["x-amz-server-side-encryption"] == "aws:kms:dsse"
    assert seen[0].headers["x-amz-server-side-encryption-aws-kms-key-id"] == key_id
    assert seen[0].path.startswith(f"/{bucket}/team%20cov/~x%2By%40z%3D/orders-api/%24LATEST/")
    head = s3.head_object(Bucket=bucket, Key=up.key)
    assert head["Metadata"]["note"] == "=?UTF-8?B?Y2Fmw6k=?="  # RFC 2047, as S3 keeps it
    assert s3.get_object(Bucket=bucket, Key=up.key)["Body"].read() == BODY


def test_a_wrong_secret_is_refused_as_s3_refuses_it(signature_checking_s3, s3, bucket, monkeypatch):
    """The check can fail: the same upload, signed with another secret."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    up = uploader(signature_checking_s3.endpoint_url, bucket)
    with pytest.raises(UploadError, match="HTTP 403 SignatureDoesNotMatch"):
        up.upload(BODY, {})
    assert len(signature_checking_s3.requests("PUT")) == 1, "refused at once, not retried"
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_a_bucket_in_another_region_is_signed_for_its_region(signature_checking_s3, s3, bucket):
    """S3 answers a request signed for the wrong region with the bucket's region:
    the client signs again for it, once, and keeps it for the next requests."""
    from tests.s3_proxy import REDIRECT_REGION

    signature_checking_s3.set("PUT", "redirect", times=1)
    up = uploader(signature_checking_s3.endpoint_url, bucket)
    up.upload(BODY, {}, generation=1)
    assert up.stored_generation(time.monotonic() + 5) == 1
    scopes = [
        (s.method, s.action, s.headers["authorization"].split("/")[2])
        for s in signature_checking_s3.seen
    ]
    assert scopes == [
        ("PUT", "redirect", "us-east-1"),
        ("PUT", "pass", REDIRECT_REGION),
        ("HEAD", "pass", REDIRECT_REGION),
    ]
    assert s3.get_object(Bucket=bucket, Key=up.key)["Body"].read() == BODY


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made here (no CA trusts it)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "local s3")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "s3.pem", directory / "s3.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def https_s3(s3_server, tmp_path) -> Iterator[tuple[FaultProxy, Path]]:
    """moto behind the signature-checking proxy, served over HTTPS; and its certificate."""
    import ssl

    cert_file, key_file = self_signed_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    secret = FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
    with fault_proxy(s3_server.port, secret=secret, tls=context) as proxy:
        yield proxy, cert_file


def test_https_with_the_ca_bundle_botocore_honours(https_s3, s3, bucket, monkeypatch):
    """S3 is reached over TLS in Lambda: the certificate is verified against the
    system's trust store or AWS_CA_BUNDLE's, and the connection is kept alive."""
    proxy, cert_file = https_s3
    monkeypatch.setenv("AWS_CA_BUNDLE", str(cert_file))
    up = uploader(proxy.endpoint_url, bucket)
    up.upload(BODY, {}, generation=1)
    up.upload(BODY + b"more", {}, generation=2)
    assert up.stored_generation(time.monotonic() + 5) == 2
    assert [(s.method, s.action) for s in proxy.seen] == [("PUT", "pass")] * 2 + [("HEAD", "pass")]
    assert len({seen.peer for seen in proxy.seen}) == 1, "one connection, kept alive"
    assert s3.get_object(Bucket=bucket, Key=up.key)["Body"].read() == BODY + b"more"


def test_a_connection_s3_closed_while_idle_is_not_reused(signature_checking_s3, s3, bucket):
    """S3 drops idle connections (and Lambda freezes the environment between
    invocations): a kept-alive connection closed meanwhile is never sent on, so
    it costs no attempt; here the client has one attempt only."""
    from coverage_runtime.s3 import make_client

    proxy = signature_checking_s3
    client = make_client(purpose="test", endpoint_url=proxy.endpoint_url, attempts=1, light=True)
    client.put_object({"Bucket": bucket, "Key": "k", "Body": b"one"})
    signature_checking_s3.drop_connections()
    client.put_object({"Bucket": bucket, "Key": "k", "Body": b"two"})
    peers = [seen.peer for seen in signature_checking_s3.seen]
    assert len(peers) == 2 and peers[0] != peers[1]
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two"


def test_https_to_a_certificate_no_one_trusts_is_refused(https_s3, bucket, monkeypatch):
    proxy, _ = https_s3
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    up = uploader(proxy.endpoint_url, bucket)
    with pytest.raises(UploadError, match=r"could not reach S3 .*CERTIFICATE_VERIFY_FAILED"):
        up.upload(BODY, {})
    assert proxy.seen == [], "nothing was sent"


# -- credentials -----------------------------------------------------------------------------


@pytest.fixture
def container_credentials() -> Iterator[str]:
    """A container credentials endpoint on 127.0.0.1, as ECS and Lambda Managed
    Instances serve the role's credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI)."""
    import http.server
    import json

    served: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            served.append(self.headers.get("Authorization") or "")
            body = json.dumps(
                {
                    "AccessKeyId": "from-the-container",
                    "SecretAccessKey": FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                    "Token": "container-token",
                    "Expiration": "2099-01-01T00:00:00Z",
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/credentials"
    finally:
        server.shutdown()
        server.server_close()


def test_without_environment_credentials_botocores_chain_finds_them(
    signature_checking_s3, s3, bucket, monkeypatch, container_credentials
):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", container_credentials)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    up = uploader(signature_checking_s3.endpoint_url, bucket)
    up.upload(BODY, {})
    put = signature_checking_s3.requests("PUT")[0]
    assert (put.action, put.headers["x-amz-security-token"]) == ("pass", "container-token")
    assert "Credential=from-the-container/" in put.headers["authorization"]
    assert s3.get_object(Bucket=bucket, Key=up.key)["Body"].read() == BODY


def test_credentials_renewed_in_the_environment_are_used(
    signature_checking_s3, bucket, monkeypatch
):
    """Read at each request, as botocore's environment provider refreshes them:
    an environment restored from a snapshot is given new ones."""
    up = uploader(signature_checking_s3.endpoint_url, bucket)
    up.upload(BODY, {}, generation=1)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "renewed")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "renewed-token")
    up.upload(BODY, {}, generation=2)
    first, second = signature_checking_s3.requests("PUT")
    assert "Credential=testing/" in first.headers["authorization"]
    assert "Credential=renewed/" in second.headers["authorization"]
    assert (second.action, second.headers["x-amz-security-token"]) == ("pass", "renewed-token")


def test_no_credentials_anywhere_is_one_clear_upload_error(s3_server, bucket, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    up = uploader(s3_server.endpoint_url, bucket)
    with pytest.raises(UploadError, match="no AWS credentials to upload to s3://"):
        up.upload(BODY, {})


# -- what building and using it costs the function ----------------------------------------


def test_the_uploader_imports_neither_boto3_nor_urllib3(s3_server, bucket):
    """In a fresh interpreter: the shim's modules, then the uploader built and
    used; nothing of boto3's (or urllib3) is ever imported, and the build
    itself imports only the client's module (kept out of the init)."""
    import json
    import os
    import subprocess
    import sys

    from tests.harness import REPO_ROOT

    probe = f"""
import json, sys, time
from coverage_runtime.settings import load_settings
from coverage_runtime.shim import session
from coverage_runtime.shim.identity import EnvironmentIdentity
settings = load_settings({{"LAMBDA_TASK_ROOT": "/var/task", "COVERAGE_S3_BUCKET": {bucket!r},
    "COVERAGE_S3_ENDPOINT_URL": {s3_server.endpoint_url!r}}})
identity = EnvironmentIdentity.detect({{}})
before = set(sys.modules)
up = session.SnapshotUploader(settings, identity)
built = set(sys.modules) - before
up.upload(b"data", {{}})
print(json.dumps({{"built": sorted(built), "loaded": sorted(sys.modules)}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env={**os.environ, **FAKE_CREDENTIALS, "PYTHONPATH": str(REPO_ROOT)},
        cwd=REPO_ROOT,
        timeout=60,
        check=True,
    )
    found = json.loads(done.stdout.splitlines()[-1])
    # Only the client's own module, imported here rather than at init (see uploader.py).
    assert found["built"] == ["coverage_runtime.s3"]
    heavy = [m for m in found["loaded"] if m.partition(".")[0] in ("boto3", "botocore", "urllib3")]
    assert heavy == []


def test_read_timeouts_bound_each_attempt_without_a_deadline(s3_server, bucket):
    """A checkpoint has no deadline: each attempt still ends at the read timeout,
    and the attempts are counted (the proxy holds every PUT)."""
    from coverage_runtime import s3 as s3_module

    with fault_proxy(s3_server.port) as proxy:
        proxy.set("PUT", "stall")
        client = s3_module.make_client(
            purpose="test",
            endpoint_url=proxy.endpoint_url,
            attempts=2,
            connect_timeout=1,
            read_timeout=0.3,
            light=True,
        )
        started = time.monotonic()
        with pytest.raises(s3_module.S3RequestError) as caught:
            client.put_object({"Bucket": bucket, "Key": "k", "Body": b"x"})
        assert time.monotonic() - started < 5
        assert caught.value.problem.kind == "timeout"
        assert len(proxy.requests("PUT")) == 2


def test_an_argument_the_light_client_cannot_send_is_an_error_not_dropped():
    """put_arguments is the one place PutObject's arguments are made: one the
    light client has no header for fails loudly instead of going unsent."""
    from coverage_runtime.s3 import wire_headers

    with pytest.raises(ValueError, match="cannot send StorageClass"):
        wire_headers({"Bucket": "b", "Key": "k", "Body": b"", "StorageClass": "GLACIER"})


@pytest.mark.parametrize(
    ("region", "bucket", "variables", "expected"),
    [
        ("eu-west-1", "coverage-bucket", {}, "coverage-bucket.s3.eu-west-1.amazonaws.com /k"),
        ("us-east-1", "with.dots", {}, "s3.us-east-1.amazonaws.com /with.dots/k"),
        ("cn-north-1", "b-cn", {}, "b-cn.s3.cn-north-1.amazonaws.com.cn /k"),
        (
            "us-gov-west-1",
            "gov-bucket",
            {"AWS_USE_FIPS_ENDPOINT": "true"},
            "gov-bucket.s3-fips.us-gov-west-1.amazonaws.com /k",
        ),
        (
            "eu-west-1",
            "v6-bucket",
            {"AWS_USE_DUALSTACK_ENDPOINT": "true"},
            "v6-bucket.s3.dualstack.eu-west-1.amazonaws.com /k",
        ),
    ],
)
def test_where_requests_go_without_an_endpoint_override(
    region, bucket, variables, expected, monkeypatch
):
    """S3's own endpoints, as botocore builds them: virtual-hosted over TLS, path-style
    for a name TLS cannot put in a host name, the partition's domain, FIPS, dual-stack."""
    from coverage_runtime.s3 import make_client

    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    client = make_client(purpose="test", region=region, light=True)
    scheme, host, path = client._location(bucket, "k")
    assert (scheme, f"{host} {path}") == ("https", expected)


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"])
def test_the_sdks_configured_endpoint_is_honoured_as_boto3_does(
    s3_server, s3, bucket, monkeypatch, variable
):
    """LocalStack users set AWS_ENDPOINT_URL(_S3), which boto3 honours: so does the shim."""
    monkeypatch.setenv(variable, s3_server.endpoint_url)
    settings = load_settings(
        {"LAMBDA_TASK_ROOT": "/var/task", "COVERAGE_S3_BUCKET": bucket, "AWS_REGION": "us-east-1"}
    )
    assert settings.endpoint_url is None
    up = SnapshotUploader(settings, identity())
    up.upload(BODY, {"mode": "full"})
    assert s3.get_object(Bucket=bucket, Key=up.key)["Body"].read() == BODY


def test_a_configured_endpoint_can_be_ignored_and_must_be_a_url(monkeypatch):
    from coverage_runtime import env

    environ = {"AWS_ENDPOINT_URL": "http://127.0.0.1:4566"}
    assert env.configured_s3_endpoint(environ) == "http://127.0.0.1:4566"
    environ["AWS_ENDPOINT_URL_S3"] = "https://s3.example.test"
    assert env.configured_s3_endpoint(environ) == "https://s3.example.test"
    environ["AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"] = "true"
    assert env.configured_s3_endpoint(environ) is None
    with pytest.raises(ValueError, match="AWS_ENDPOINT_URL_S3"):
        env.configured_s3_endpoint({"AWS_ENDPOINT_URL_S3": "localhost:4566"})


def test_the_shutdown_waits_for_older_uploads_only_and_until_told():
    """`RunningUploads`: a checkpoint's upload (generation 1) holds back the
    shutdown's (2) until its answer is recorded, or until the wait's end;
    never an upload of its own generation or a newer one."""
    uploads = RunningUploads()
    entered, leave = threading.Event(), threading.Event()

    def checkpoint() -> None:
        with uploads.of(1) as gate:
            gate()  # its first attempt: on the wire from here
            entered.set()
            leave.wait(10)

    running = threading.Thread(target=checkpoint)
    running.start()
    assert entered.wait(10)
    assert uploads.older(2) and not uploads.older(1)
    assert uploads.wait_for_older(1, time.monotonic() + 10)  # nothing older than 1
    assert not uploads.wait_for_older(2, time.monotonic())  # its time is up: gives up
    leave.set()
    assert uploads.wait_for_older(2, time.monotonic() + 10)  # returns once 1 is recorded
    running.join(10)
    assert not uploads.older(2)


def test_once_closed_no_upload_but_the_shutdowns_gets_on_the_wire():
    """`RunningUploads.close`: a checkpoint registered before the shutdown began
    but not yet past its gate is refused there (`Superseded`), and the shutdown
    does not wait for it; one already on the wire is waited for, and its retry
    is refused; the shutdown's own upload (``final``) passes."""
    uploads = RunningUploads()
    with uploads.of(1) as pending, uploads.of(2) as sent:
        sent()
        uploads.close()
        with pytest.raises(Superseded):
            pending()
        assert uploads.older(3) and not uploads.older(2)  # 2 is on the wire, 1 never
        with pytest.raises(Superseded):
            sent()  # a retry of 2
        with uploads.of(3, final=True) as final:
            final()
            assert uploads.older(4)
    assert not uploads.older(4)
    assert uploads.wait_for_older(4, time.monotonic())
