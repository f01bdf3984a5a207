"""Code run under labels (`tests.exactness.labels`).  Module-level code runs at
init, under ``init``; each ``segment_*`` is what one invocation runs."""

import threading

TABLE = {name: len(name) for name in ("a", "bb", "ccc")}  # init only


class Account:
    def __init__(self, balance):
        self.balance = balance

    def withdraw(self, amount):
        if amount > self.balance:
            raise ValueError("insufficient")
        self.balance -= amount
        return self.balance


def classify(n):
    if n < 0:
        return "negative"
    elif n == 0:
        return "zero"
    for divisor in (2, 3, 5):
        if n % divisor == 0:
            return f"by {divisor}"
    return "other"


def squares(n):
    for i in range(n):
        yield i * i


def shared(x):
    total = 0
    while x > 0:
        total += x
        x -= 1
    return total


def guarded(amount):
    account = Account(10)
    try:
        left = account.withdraw(amount)
    except ValueError:
        return "refused"
    else:
        return left
    finally:
        account.balance = 0


def in_thread(results):
    results.append(classify(9))


def segment_a():
    return [classify(4), shared(3), sum(squares(3))]


def segment_b():
    return [classify(-1), guarded(20), shared(0)]


def segment_c():
    return [classify(0), guarded(5), classify(7)]


def segment_thread():
    results = []
    worker = threading.Thread(target=in_thread, args=(results,))
    worker.start()
    worker.join()
    return [shared(2), *results]


SEGMENTS = {
    "a": segment_a,
    "b": segment_b,
    "c": segment_c,
    "thread": segment_thread,
}

CLASSIFIED = classify(15)  # init only: runs classify's code under init as well
