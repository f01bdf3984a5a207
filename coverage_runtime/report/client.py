"""The report's S3 client, and what its errors mean to someone running a report."""

from __future__ import annotations

from typing import Any

from coverage_runtime import s3
from coverage_runtime.errors import ReportError


def make_client(
    endpoint_url: str | None = None, region: str | None = None, max_connections: int = 16
) -> Any:
    """An S3 client for listing and downloading, sized for the download pool."""
    return s3.make_client(
        purpose="report",
        region=region,
        endpoint_url=endpoint_url,
        attempts=6,
        connect_timeout=5,
        read_timeout=30,
        max_connections=max_connections,
    )


def explain_s3_error(exc: BaseException, bucket: str, what: str) -> ReportError:
    """Turn a boto3/botocore exception into one sentence a user can act on."""
    found = s3.problem(exc)
    if found.kind == "no_bucket" and (found.code == "NoSuchBucket" or "bucket" in what):
        message = f"bucket {bucket!r} does not exist (while {what})"
    elif found.kind == "access_denied":
        message = (
            f"access denied to s3://{bucket} while {what}: the credentials in use need "
            "s3:ListBucket on the bucket and s3:GetObject on the prefix "
            f"({found.code}: {found.message})"
        )
    elif found.kind == "invalid_bucket":
        message = f"invalid bucket name {bucket!r}"
    elif found.kind == "wrong_region":
        message = (
            f"bucket {bucket!r} is in another region than the client's: pass --region "
            f"(or set AWS_REGION) to the bucket's region ({found.code})"
        )
    elif found.kind in ("no_bucket", "refused"):
        message = f"S3 refused {what} in bucket {bucket!r}: {found.code}: {found.message or None}"
    elif found.kind == "no_credentials":
        message = (
            "no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        )
    elif found.kind == "invalid_request":
        message = f"invalid S3 request while {what}: {found.message}"
    elif found.kind == "unreachable" and type(exc).__name__ == "EndpointConnectionError":
        message = f"cannot reach S3 while {what}: {exc}"
    else:
        message = f"S3 error while {what}: {type(exc).__name__}: {exc}"
    return ReportError(message)
