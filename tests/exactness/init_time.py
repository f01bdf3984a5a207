"""Module-level code that runs while the environment initialises.

Under the shim it runs before coverage.py is built (the init recorder on the
sysmon core); its lines and arcs must equal what plain coverage.py records
when it imports this module: the comparison is on this whole file.
"""

import threading

TABLE = {}
for index in range(5):
    if index % 2:
        TABLE[index] = "odd"
    elif index == 4:
        TABLE[index] = "last"
    else:
        TABLE[index] = "even"


def helper(value):
    if value is None:
        return 0
    total = 0
    while value > 0:
        total += value
        value -= 2
    return total


class Config:
    debug = False
    names = tuple(name.upper() for name in ("a", "b") if name)

    def __init__(self, level):
        self.level = level if level > 0 else 1

    def describe(self):
        return f"level {self.level}"  # run only after the hand-over, by `after_init`

    class Inner:
        value = helper(3)


def decorated(function):
    def wrapper(*args):
        return function(*args)

    return wrapper


@decorated
def doubled(x):
    return x * 2


def generate(n):
    for i in range(n):
        yield i if i else -1


try:
    SETTINGS = Config(int("x"))
except ValueError:
    SETTINGS = Config(0)
else:
    SETTINGS = None
finally:
    LOADED = True

GENERATED = list(generate(3))
DOUBLED = doubled(helper(5))
_background = threading.Thread(target=helper, args=(4,))
_background.start()
_background.join()
NEVER = helper(None) if DOUBLED < 0 else None


def after_init():
    """Called after the hand-over: new lines and arcs of code that ran at init."""
    return SETTINGS.describe(), helper(None), doubled(1)
