"""A function that traces itself with the X-Ray SDK: ``patch_all()`` at init (as
Powertools' Tracer does), then a boto3 call and a sqlite3 query per invocation.

The RIE sends no trace header, so each invocation sets ``_X_AMZN_TRACE_ID`` (sampled)
as Lambda does with ``Tracing: Active``; it stays set after the response, when the
shim's checkpoints run.  Every entity the SDK sends is appended, summarised, to
``XRAY_SENT_FILE``.
"""

import json
import os
import sqlite3
import uuid

import boto3
from aws_xray_sdk.core import patch_all, xray_recorder


class FileEmitter:
    def send_entity(self, entity):
        summary = entity.to_dict()
        line = f"{summary.get('name')} {summary.get('aws', {}).get('operation', '')}".strip()
        with open(os.environ["XRAY_SENT_FILE"], "a") as sent:
            sent.write(json.dumps(line) + "\n")

    def set_daemon_address(self, address):
        pass


xray_recorder.configure(emitter=FileEmitter())
patch_all()
S3 = boto3.session.Session().client("s3", endpoint_url=os.environ["COVERAGE_S3_ENDPOINT_URL"])


def handler(event, context):
    root = f"1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}"
    os.environ["_X_AMZN_TRACE_ID"] = f"Root={root};Parent={uuid.uuid4().hex[:16]};Sampled=1"
    S3.list_objects_v2(Bucket=os.environ["COVERAGE_S3_BUCKET"])
    connection = sqlite3.connect(":memory:")
    connection.execute("SELECT 1").fetchall()
    connection.close()
    if event.get("late"):
        return {"late": True}  # marker: late
    return {"late": False}
