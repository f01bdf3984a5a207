from __future__ import annotations

from typing import Any


class Table:
    """A thin repository over a DynamoDB table resource."""

    def __init__(self, resource: Any) -> None:
        self._resource = resource
        self._cache: dict[str, dict] = {}

    def get(self, key: str) -> dict | None:
        if key in self._cache:
            return self._cache[key]
        return None

    def put(self, key: str, item: dict) -> None:
        self._cache[key] = item
