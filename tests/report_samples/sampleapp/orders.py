"""Measured by the report tests: only some environments import this module."""


def total(items):
    result = 0
    for item in items:
        if item < 0:
            continue  # marker: skip-negative
        result += item  # marker: add
    return result  # marker: return
