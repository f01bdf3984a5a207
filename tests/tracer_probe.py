"""A function's tracer around the shim's work, in a fresh interpreter.

``python -m tests.tracer_probe TRACER ORDER ENDPOINT BUCKET WORKDIR`` patches
the way a function does (``xray``: the X-Ray SDK's ``patch_all()``; ``xray-all``:
``patch_all(double_patch=True)``, which also patches ``http.client``; ``otel``:
OpenTelemetry's botocore, sqlite3 and urllib3 instrumentations; ``otel-http``:
its urllib3 one alone, under botocore), ``before`` the shim
starts or ``after`` its S3 client and data file exist, then runs the shim's
snapshots and uploads inside and outside a traced invocation, next to the
function's own calls (a boto3 call and a sqlite3 query), and a control: a
boto3 client of `s3.make_client`, which the tracer sees.  It prints, as JSON, what the tracer
recorded and logged.  Patches cannot be undone (X-Ray's), hence a process.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
from pathlib import Path
from typing import Any


class Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.messages.append(f"{record.name}: {record.getMessage()}")


class XRay:
    """The X-Ray SDK, sampling everything, with an emitter that keeps what it is sent."""

    def __init__(self, double_patch: bool = False) -> None:
        self.double_patch = double_patch
        from aws_xray_sdk.core import xray_recorder

        probe = self

        class Emitter:
            def send_entity(self, entity: Any) -> None:
                probe.sent.append(entity.to_dict())

            def set_daemon_address(self, address: str | None) -> None:
                pass

        self.sent: list[dict[str, Any]] = []
        self.recorder = xray_recorder
        xray_recorder.configure(
            emitter=Emitter(),
            sampling=False,
            context_missing="LOG_ERROR",
            streaming_threshold=10**6,
        )

    def patch(self) -> None:
        from aws_xray_sdk.core import patch_all

        patch_all(double_patch=self.double_patch)

    def begin(self) -> None:
        self.recorder.begin_segment("function")

    def end(self) -> None:
        self.recorder.end_segment()

    def recorded(self) -> list[str]:
        """``service operation`` of each AWS subsegment, ``sql`` of each SQL one."""
        found: list[str] = []

        def walk(entity: dict[str, Any]) -> None:
            for sub in entity.get("subsegments", ()):
                if sub.get("namespace") == "aws":
                    found.append(f"{sub['name']} {sub.get('aws', {}).get('operation')}")
                elif "sql" in sub:
                    found.append(f"sql {sub['name']}")
                else:
                    found.append(f"{sub.get('namespace')} {sub['name']}")
                walk(sub)

        for entity in self.sent:
            walk(entity)
        return found


class OpenTelemetry:
    """OpenTelemetry's botocore, sqlite3 and urllib3 instrumentations (as its Lambda
    layer's auto-instrumentation applies them), spans kept in memory."""

    def __init__(self, http_only: bool = False) -> None:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("function")
        self.span: Any = None
        self.http_only = http_only

    def patch(self) -> None:
        from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
        from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor
        from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor

        if not self.http_only:
            BotocoreInstrumentor().instrument(tracer_provider=self.provider)
            SQLite3Instrumentor().instrument(tracer_provider=self.provider)
        URLLib3Instrumentor().instrument(tracer_provider=self.provider)

    def begin(self) -> None:
        self.span = self.tracer.start_as_current_span("function")
        self.span.__enter__()

    def end(self) -> None:
        self.span.__exit__(None, None, None)

    def recorded(self) -> list[str]:
        found: list[str] = []
        for span in self.exporter.get_finished_spans():
            attributes = dict(span.attributes or {})
            if span.name == "function":
                continue
            if attributes.get("rpc.system") == "aws-api":
                found.append(f"{attributes.get('rpc.service')} {attributes.get('rpc.method')}")
            elif attributes.get("db.system") == "sqlite":
                found.append(f"sql {span.name}")
            elif "http.request.method" in attributes or "http.method" in attributes:
                found.append(f"http {span.name}")
            else:
                found.append(span.name)
        return found


def main(tracer_name: str, order: str, endpoint: str, bucket: str, workdir: str) -> None:
    collected = Collected()
    logging.getLogger().addHandler(collected)
    logging.getLogger().setLevel(logging.DEBUG)
    tracer: XRay | OpenTelemetry = (
        XRay(double_patch=tracer_name == "xray-all")
        if tracer_name.startswith("xray")
        else OpenTelemetry(http_only=tracer_name == "otel-http")
    )
    if order == "before":
        tracer.patch()

    import boto3

    from coverage_runtime.s3 import make_client
    from coverage_runtime.settings import load_settings
    from coverage_runtime.shim.identity import EnvironmentIdentity
    from coverage_runtime.shim.session import CoverageSession

    source = Path(workdir, "src")
    source.mkdir(parents=True)
    (source / "probe_handler.py").write_text(
        "def handler(n):\n    return n + 1\n\n\ndef late():\n    return 0\n"
    )
    sys.path.insert(0, str(source))
    settings = load_settings(
        {
            "COVERAGE_SOURCE": str(source),
            "COVERAGE_DATA_DIR": str(Path(workdir, "data")),
            "COVERAGE_S3_BUCKET": bucket,
            "COVERAGE_S3_ENDPOINT_URL": endpoint,
            "AWS_REGION": "us-east-1",
        }
    )
    session = CoverageSession.start(settings, EnvironmentIdentity.detect({}))
    import probe_handler

    probe_handler.handler(1)
    # The shim's work outside any invocation: the shipping thread after a response.
    first = session.flush(reason="checkpoint", force=True)
    core = session.measurement.core_name()  # (coverage.py is built by now, on every core)
    if order == "after":
        tracer.patch()

    tracer.begin()
    # The function's own calls, traced as before.
    function_client = boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1"
    )
    function_client.list_objects_v2(Bucket=bucket)
    # (not ``with``: a traced connection's ``__enter__`` returns the untraced one)
    connection = sqlite3.connect(":memory:")
    connection.cursor().execute("SELECT 1").fetchall()
    connection.close()
    # The shim's work inside a traced invocation (a flush from the handler).
    probe_handler.handler(2)
    second = session.flush(reason="flush", force=True)
    tracer.end()
    # New lines, so shutdown uploads and reads the stored generation back.
    probe_handler.late()
    session.shutdown("SIGTERM")
    last = session.last_upload
    shim_recorded = tracer.recorded()
    shim_messages = list(collected.messages)

    # The control: the same kind of work, not hidden, is seen by this tracer.
    tracer.begin()
    make_client(purpose="control", endpoint_url=endpoint).head_bucket(Bucket=bucket)
    control = sqlite3.connect(str(Path(workdir, "control.db")))
    control.cursor().execute("CREATE TABLE IF NOT EXISTS file (path TEXT)")
    control.close()
    tracer.end()
    print(
        json.dumps(
            {
                "uploads": [bool(first), bool(second), last.reason if last else None],
                "recorded": shim_recorded,
                "messages": shim_messages,
                "control": tracer.recorded()[len(shim_recorded) :],
                "python": "{}.{}".format(*sys.version_info[:2]),
                "core": core,
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
