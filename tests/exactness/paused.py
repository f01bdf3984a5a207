"""Code run while paused and measured, for `recorder_cases.paused_code` (the tool
is muted in a paused window: `init_recorder.Muting`).

Each line the case looks at ends with a ``# tag`` comment; `tagged` maps the
tags to line numbers.
"""

import re
from pathlib import Path

from coverage_runtime import CoverageContext, pause, resume, without_coverage


def item(value):
    if isinstance(value, int):
        return value * 2  # number
    text = str(value)  # text
    return text.upper()  # text-return


def batch(items, measured_every):
    """The example's batch: a block per item, every ``measured_every``-th measured."""
    for index, value in enumerate(items):
        measured = index % measured_every == 0
        with CoverageContext() if measured else without_coverage():
            item(value)


def mid_frame():
    before = 1  # before
    with without_coverage():
        inside = 2  # inside
        inside += before  # inside-2
    after = inside + 1  # after
    return after  # after-return


def helper(flag):
    if flag:
        return "new"  # helper-new
    return "old"


def mid_frame_after_a_call(pause):
    """Run measured, then paused: the window's first event is ``helper``'s (muted
    at once, this frame's own new line in the block fires nothing), so the cut
    of this frame is the resume's."""
    before = 1
    if pause:
        before = 2  # before2
    with without_coverage() if pause else CoverageContext():
        helper(pause)
        if pause:
            before = 3  # inside3
    if pause:
        before = 4  # after2
    return before


def nested():
    with without_coverage():
        with without_coverage():
            deep = 1  # deep
        still = deep + 1  # still-paused
    return still  # nested-return


def threaded(flag):
    if flag:
        return "paused"  # thread-paused
    return "measured"  # thread-measured


def raced():
    first = 1  # race-first
    then = first + 1  # race-then
    return then  # race-return


def raced_again():
    first = 1  # race2-first
    then = first + 1  # race2-then
    return then  # race2-return


def stepped():
    yield 1  # step-1
    yield 2  # step-2
    yield 3  # step-3


def busy():
    total = 0  # busy
    for i in range(20):  # busy-loop
        total += i  # busy-add
    return total  # busy-return


def generator_across_a_window():
    """A frame that outlives a window without resuming it: a generator stepped
    before, inside (after enough paused events to mute) and after a block."""
    steps = stepped()  # gen-start
    next(steps)  # gen-first
    with without_coverage():
        busy()  # gen-busy
        next(steps)  # gen-second
    next(steps)  # gen-third


def pause_in_a_callee():
    pause()
    busy()  # callee-busy


def resume_in_a_helper():
    resume()


def split_window():
    """A window opened in one callee and closed in another: the frame between
    runs lines paused and carries on measured."""
    pause_in_a_callee()  # split-call
    a = 1  # split-a
    b = 2  # split-b
    resume_in_a_helper()  # split-resume
    if a:  # split-after
        a = 3  # split-after-2
    return a + b  # split-ret


def tagged():
    """Tag -> line number, from the comments of this file."""
    tags = {}
    for number, text in enumerate(Path(__file__).read_text().splitlines(), start=1):
        found = re.search(r"\S  # ([a-z0-9-]+)$", text)
        if found:
            tags[found.group(1)] = number
    return tags
