"""The sample function's files at each revision (see the package docstring)."""

from __future__ import annotations

HANDLER_R1 = '''"""The function's entry point."""
from shop import orders, pricing


def handler(event, context):
    op = event.get("op")
    if op == "order":
        return {"total": orders.place(event["items"])}
    if op == "refund":
        return {"refund": orders.refund(event["amount"])}
    if op == "quote":
        return {"quote": pricing.discount(event["amount"])}
    return {"ok": True}
'''

HANDLER_R2 = '''"""The function's entry point."""
from shop import orders, prices


def handler(event, context):
    op = event.get("op")
    if op == "order":
        return {"total": orders.place(event["items"])}
    if op == "refund":
        return {"refund": orders.refund(event["amount"])}
    if op == "quote":
        return {"quote": prices.discount(event["amount"])}
    if op == "cancel":
        return {"cancelled": orders.cancel(event["order"])}
    return {"ok": True}
'''

CART = """

class Cart:
    def __init__(self):
        self.items = []

    def add(self, price):
        self.items.append(price)

    def total(self):
        return sum(self.items)
"""

CLEAR = """
    def clear(self):
        self.items = []
"""

CLEAR_R4 = """
    def clear(self):
        self.items = list()
"""

COUNT = """
    def count(self):
        return len(self.items)
"""

PLACE = """

def place(items):
    cart = Cart()
    for price in items:
        cart.add(price)

    def receipt():
        return format_receipt(cart.total())

    return receipt()
"""

ORDERS_R1 = (
    '"""Orders."""\n'
    + CART
    + CLEAR
    + PLACE
    + """

def refund(amount):
    return -amount


def format_receipt(total):
    return f"total {total}"


def export_all():
    return "csv"
"""
)

ORDERS_R2_TAIL = """

def refund(amount):
    return -abs(amount)


def cancel(order):
    return order
"""

ORDERS_R2 = (
    '"""Orders."""\nfrom shop.receipts import format_receipt\n'
    + CART
    + CLEAR
    + PLACE
    + ORDERS_R2_TAIL
)
ORDERS_R3 = (
    '"""Orders."""\nfrom shop.receipts import format_receipt\n'
    + CART + CLEAR + COUNT + PLACE + ORDERS_R2_TAIL
)  # fmt: skip
ORDERS_R4 = (
    '"""Orders."""\nfrom shop.receipts import format_receipt\n'
    + CART + CLEAR_R4 + COUNT + PLACE + ORDERS_R2_TAIL
    + '''

def audit():
    return "audit"
'''
)  # fmt: skip

PRICES = '''"""Prices."""


def discount(amount):
    if amount > 100:
        return amount * 0.9
    return amount


def surcharge(amount):
    return amount + 1
'''

RECEIPTS = '''"""Receipts."""


def format_receipt(total):
    return f"total {total}"
'''

INIT = '"""A small shop."""\n'

REVISIONS: list[dict[str, str]] = [
    {
        "handler.py": HANDLER_R1,
        "shop/__init__.py": INIT,
        "shop/orders.py": ORDERS_R1,
        "shop/pricing.py": PRICES,
    },
    {
        "handler.py": HANDLER_R2,
        "shop/__init__.py": INIT,
        "shop/orders.py": ORDERS_R2,
        "shop/prices.py": PRICES,
        "shop/receipts.py": RECEIPTS,
    },
    {
        "handler.py": HANDLER_R2,
        "shop/__init__.py": INIT,
        "shop/orders.py": ORDERS_R3,
        "shop/prices.py": PRICES,
        "shop/receipts.py": RECEIPTS,
    },
    {
        "handler.py": HANDLER_R2,
        "shop/__init__.py": INIT,
        "shop/orders.py": ORDERS_R4,
        "shop/prices.py": PRICES,
        "shop/receipts.py": RECEIPTS,
    },
]
