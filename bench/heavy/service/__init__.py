"""The function's own code: measured (everything else in the task root is vendored)."""
