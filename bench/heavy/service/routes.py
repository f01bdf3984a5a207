from __future__ import annotations

from service.auth import Unauthorized
from service.models import Item


def register(app, table, validator, verifier) -> None:
    @app.get("/items/<key>")
    def get_item(key: str):
        found = table.get(key)
        if found is None:
            return {"statusCode": 404, "body": "not found"}
        return found

    @app.post("/items/<key>")
    def put_item(key: str):
        try:
            verifier.claims(app.current_event.get_header_value("authorization"))
        except Unauthorized as exc:
            return {"statusCode": 401, "body": str(exc)}
        body = app.current_event.json_body
        errors = sorted(e.message for e in validator.iter_errors(body))
        if errors:
            return {"statusCode": 400, "body": "; ".join(errors)}
        item = Item(**body)
        table.put(key, item.model_dump())
        return item.model_dump()
