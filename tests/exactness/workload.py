"""The scenarios.  A marker (``sel:`` then ``full:``, each ``in`` or ``out``)
says, per mode, whether a line must be recorded or must not; unmarked lines
are not checked.  Each scenario uses its own lines, so one cannot hide
another.  A line that suspends outside a block and resumes inside it (a
``yield`` or ``await``) ran partly measured: trace cores record it through
the arc of its resumption, sysmon does not, so it carries no marker."""

import concurrent.futures
import threading

from coverage_runtime import CoverageContext, reset, without_coverage
from tests.exactness import measured_only

# Alive before any block opens, and for the whole environment.
POOL = concurrent.futures.ThreadPoolExecutor(max_workers=1)
POOL.submit(int).result()


def pool_before():
    return 1  # sel:out full:in


def pool_inside():
    return 2  # sel:in full:in


def pool_after():
    return 3  # sel:out full:in


def pool_excluded():
    return 4  # sel:out full:out


def pool_after_exclusion():
    return 5  # sel:out full:in


def long_lived_pool_thread():
    POOL.submit(pool_before).result()
    with CoverageContext():
        POOL.submit(pool_inside).result()
        POOL.submit(measured_only.pooled, 2).result()
    POOL.submit(pool_after).result()
    with without_coverage():
        POOL.submit(pool_excluded).result()
    POOL.submit(pool_after_exclusion).result()


def short_thread():
    return "short"  # sel:out full:in


def pool_after_many_threads():
    return 6  # sel:in full:in


def many_short_threads(compact):
    for _ in range(40):
        worker = threading.Thread(target=short_thread)
        worker.start()
        worker.join()
    compact()
    with CoverageContext():
        POOL.submit(pool_after_many_threads).result()


def nested_blocks():
    with CoverageContext():
        outer = 1  # sel:in full:in
        with CoverageContext():
            inner = outer + 1  # sel:in full:in
        still = inner + 1  # sel:in full:in
        with without_coverage():
            hidden = still + 1  # sel:out full:out
            with CoverageContext():
                hidden += 1  # sel:out full:out
        back = hidden + 1  # sel:in full:in
    after = back + 1  # sel:out full:in
    return after


def worker_block(results):
    with CoverageContext():
        results.append(measured_only.classify(-5))  # sel:in full:in


def block_on_worker_thread():
    results = []
    worker = threading.Thread(target=worker_block, args=(results,))
    worker.start()
    worker.join()
    return results


def raising():
    raise ValueError("inside")  # sel:in full:in


def exception_inside_block():
    try:
        with CoverageContext():
            measured_only.classify(50)
            raising()
    except ValueError:
        caught = True  # sel:out full:in
    return caught


def shared(x):
    return x + 1  # sel:in full:in


def first_outside_then_inside():
    shared(1)
    with CoverageContext():
        shared(2)


def generator(n):
    yield 1  # sel:in full:in
    yield 2  # suspends outside, resumes inside
    yield 3  # sel:in full:in
    yield n  # sel:out full:in


def generator_across_blocks():
    with CoverageContext():
        gen = generator(4)
        next(gen)
        measured_only.classify(3)
    next(gen)
    with CoverageContext():
        next(gen)
        list(measured_only.gen_measured(4))
    next(gen)


async def coroutine(steps):
    first = await steps  # suspends outside, resumes inside
    return first + 1  # sel:in full:in


class Step:
    def __await__(self):
        value = yield "step"
        return value


def coroutine_across_blocks():
    coro = coroutine(Step())
    coro.send(None)  # runs up to the first await, outside
    with CoverageContext():
        try:
            coro.send(41)
        except StopIteration as stop:
            return stop.value
    return None


def before_reset():
    return "dropped"  # sel:out full:out


def after_reset():
    return "kept"  # sel:in full:in


def reset_between():
    with CoverageContext():
        before_reset()
    reset()
    with CoverageContext():
        after_reset()


def hot_line(last):
    if not last:
        return 0  # sel:in full:in
    return 1  # sel:in full:in


def hot_loop():
    """Code run in both states, window after window (the tool is muted while
    paused: `init_recorder.Muting`): a line run paused many times and then
    measured once is recorded, one only ever run paused is not."""
    for _ in range(12):
        hot_line(False)
        paused_only = 1  # sel:out full:in
        with CoverageContext():
            pass
    with CoverageContext():
        hot_line(False)
        hot_line(True)
    return paused_only


SCENARIOS = [
    "hot_loop",
    "long_lived_pool_thread",
    "many_short_threads",
    "nested_blocks",
    "block_on_worker_thread",
    "exception_inside_block",
    "first_outside_then_inside",
    "generator_across_blocks",
    "coroutine_across_blocks",
]


def run_all(compact, between=lambda: None, *, reset=True):
    """`reset_between` first (it drops what came before), then every scenario,
    twice, with ``between()`` after each, as the runtime does between
    invocations (e.g. code whose lines are all recorded loses its events).

    ``reset=False`` leaves the reset out (what it drops is never run), so
    that nothing makes the runtime build coverage.py before the end."""
    if reset:
        reset_between()
    else:
        with CoverageContext():
            after_reset()
    for _ in range(2):
        for name in SCENARIOS:
            scenario = globals()[name]
            if name == "many_short_threads":
                scenario(compact)
            else:
                scenario()
            between()
