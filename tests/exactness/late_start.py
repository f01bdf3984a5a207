"""A module imported only by `recorder_cases.drain_during_exit_finish`: its first
start reaches coverage.py's ``should_trace`` (a file it has not seen)."""

LATE = 1
