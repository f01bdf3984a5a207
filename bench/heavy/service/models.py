from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

SCHEMA_YAML = """
type: object
required: [name, quantity]
properties:
  name: {type: string, minLength: 1}
  quantity: {type: integer, minimum: 0}
  tags: {type: array, items: {type: string}}
"""


class Item(BaseModel):
    name: str = Field(min_length=1)
    quantity: int = 0
    tags: list[str] = []

    @field_validator("tags")
    @classmethod
    def lower(cls, tags: list[str]) -> list[str]:
        return [tag.lower() for tag in tags]


class Page(BaseModel):
    items: list[Item]
    next_token: str | None = None


DEFAULT_PAGE_SIZE = 25
LIMITS = {name: size for name, size in (("small", 10), ("large", 100))}
