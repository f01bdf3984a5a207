"""A module body and a class body, which run once, beside functions that run
often: the maintenance pass retires the functions only (`recorder_cases.py`,
``retire_in_small_steps``)."""

import sys

BODY = sys._getframe().f_code


class Square:
    body = sys._getframe().f_code
    sides = 4

    def area(self, side):
        return side * side


def double(value):
    return value * 2
