"""The example function: health, admin and business requests, measured by coverage_runtime.

Copy it as a starting point: `app.handler` routes, one module per request kind
(`app.health`, `app.admin`, `app.business`), and `app.observability` logs and
publishes metrics.
"""
