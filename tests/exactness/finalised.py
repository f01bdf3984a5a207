"""A finaliser in measured code, for `recorder_cases.finaliser_during_the_install`:
the cyclic GC runs it on whichever thread its collection runs, wherever that
thread is (inside the hand-over, say).  Each run reports a branch."""


class Held:
    """An object kept alive only by a reference cycle (``held.me = held``)."""

    def __del__(self):
        if self.first:
            self.log.append("first")
        else:
            self.log.append("again")


def later(value):
    """New code of this file, first run after the finaliser."""
    if value:
        return value + 1
    return value
