"""The health request: is this function, and what it depends on, usable?

``overall_status`` follows three rules, in order:

1. ``unhealthy`` when the database check fails (the business operations
   cannot work without it); HTTP callers get 503.
2. ``degraded`` when anything else is wrong: the external API or the coverage
   bucket cannot be reached, a required environment variable is missing or
   invalid, or memory use is above ``HEALTH_MEMORY_DEGRADED_PERCENT``.
3. ``healthy`` otherwise.  Unconfigured checks (``not_configured``) count as fine.

``reasons`` lists what made it less than healthy.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from app import checks
from app.config import AppConfig
from app.observability import rss_mb
from coverage_runtime import env

REQUIRED_VARIABLES = (env.AWS_REGION, env.FUNCTION_NAME)
COVERAGE_VARIABLES = (env.S3_BUCKET,)


def memory_usage(environ: Mapping[str, str]) -> dict[str, Any]:
    """RSS of this process, as a share of the function's memory size when known."""
    import psutil

    rss = rss_mb()
    limit = environ.get(env.FUNCTION_MEMORY_SIZE, "")
    if limit.isdigit() and int(limit) > 0:
        limit_mb = float(limit)
        basis = env.FUNCTION_MEMORY_SIZE
    else:
        limit_mb = round(psutil.virtual_memory().total / (1024 * 1024), 1)
        basis = "host memory"
    return {
        "rss_mb": rss,
        "percent": round(rss / limit_mb * 100, 1),
        "limit_mb": limit_mb,
        "percent_of": basis,
    }


def environment_variables(environ: Mapping[str, str], config: AppConfig) -> dict[str, Any]:
    """Which required variables are missing, and which set ones were refused."""
    required = list(REQUIRED_VARIABLES)
    if env.coverage_enabled(environ):
        required += COVERAGE_VARIABLES
    missing = [name for name in required if not environ.get(name, "").strip()]
    invalid = [problem.as_dict() for problem in config.invalid]
    return {
        "status": "ok" if not missing and not invalid else "incomplete",
        "missing_variables": missing,
        "invalid_variables": invalid,
    }


def overall_status(
    results: Mapping[str, checks.CheckResult],
    memory: Mapping[str, Any],
    variables: Mapping[str, Any],
    config: AppConfig,
) -> tuple[str, list[str]]:
    """The rules of the module docstring: (status, reasons)."""
    reasons: list[str] = []
    database = results.get("database_connection")
    if database is not None and database.failed:
        reasons.append(f"database_connection: {database.status}")
        return "unhealthy", reasons
    for name in ("external_api", "s3_bucket"):
        result = results.get(name)
        if result is not None and result.failed:
            reasons.append(f"{name}: {result.status}")
    if variables["missing_variables"]:
        reasons.append("missing variables: " + ", ".join(variables["missing_variables"]))
    if variables["invalid_variables"]:
        names = [item["variable"] for item in variables["invalid_variables"]]
        reasons.append("invalid variables: " + ", ".join(names))
    if memory["percent"] >= config.memory_degraded_percent:
        reasons.append(
            f"memory at {memory['percent']}% (threshold {config.memory_degraded_percent}%)"
        )
    return ("degraded" if reasons else "healthy"), reasons


def document(config: AppConfig) -> dict[str, Any]:
    """Run every check (concurrently) and build the health document."""
    import coverage_runtime

    started = time.monotonic()
    environ = checks.environ_snapshot()
    timeout = config.health_timeout_seconds
    results = checks.run_concurrently(
        {
            "database_connection": lambda: checks.database(config.health_database_url, timeout),
            "external_api": lambda: checks.external_api(config.health_external_api_url, timeout),
            "s3_bucket": lambda: checks.s3_bucket(environ, timeout),
        },
        timeout,
    )
    coverage_status = coverage_runtime.status()
    memory = memory_usage(environ)
    variables = environment_variables(environ, config)
    overall, reasons = overall_status(results, memory, variables, config)
    if coverage_status["enabled"] and coverage_status["storage_problem"]:
        reasons.append(f"coverage: {coverage_status['storage_problem']}")
        overall = "degraded" if overall == "healthy" else overall
    return {
        "status": "ok",
        "overall_status": overall,
        "reasons": reasons,
        "coverage_enabled": coverage_status["enabled"],
        "layer_version": coverage_runtime.__version__,
        "database_connection": results["database_connection"].as_dict(),
        "external_api": results["external_api"].as_dict(),
        "s3_bucket": results["s3_bucket"].as_dict(),
        "memory_usage": memory,
        "environment_variables": variables,
        "coverage": coverage_status,
        "check_timeout_seconds": timeout,
        "checked_in_ms": round((time.monotonic() - started) * 1000, 1),
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


def http_status(document_: Mapping[str, Any]) -> int:
    """200 while the function can serve (healthy or degraded), 503 when unhealthy."""
    return 503 if document_["overall_status"] == "unhealthy" else 200
