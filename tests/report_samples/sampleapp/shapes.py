"""Measured by the report tests: markers name lines for asserts."""


def area(kind, size):
    if kind == "square":
        return size * size  # marker: square
    elif kind == "circle":
        return 3 * size * size  # marker: circle
    return None  # marker: unknown


def classify(number):
    if number < 0:
        return "negative"  # marker: negative
    if number == 0:
        return "zero"  # marker: zero
    return "positive"  # marker: positive
