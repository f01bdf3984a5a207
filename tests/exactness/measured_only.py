"""Functions called only inside measured blocks.

Their lines and arcs must equal what plain coverage.py records for the same
calls: the comparison is on this whole file.
"""


def classify(value):
    if value > 10:
        kind = "big"
    elif value < 0:
        kind = "negative"
    else:
        kind = "small"
    for _ in range(2):
        if kind == "big":
            break
    return kind


def gen_measured(n):
    for i in range(n):
        if i % 2:
            yield i
        else:
            yield -i


def pooled(x):
    if x:
        return x * 3
    return 0


def nest(depth):
    if depth:
        nest(depth - 1)
        depth += 1
    return depth
