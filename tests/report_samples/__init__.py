"""Sample code and a driver that produce real coverage.py data files for the report tests."""
