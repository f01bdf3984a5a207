"""Example Lambda function measured by the coverage runtime."""

from __future__ import annotations

from typing import Any

from coverage_runtime import coverage_handler


@coverage_handler
def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    if isinstance(event, dict) and event.get("path") == "/health":
        return {"statusCode": 200, "body": '{"status": "healthy"}'}
    operation = event.get("operation") if isinstance(event, dict) else None
    if operation == "echo":
        return {"echo": event.get("data")}
    return {"error": "unknown operation", "operation": operation}
