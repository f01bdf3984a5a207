"""A tiny package measured by the report tests, as if it were a Lambda function's code."""
