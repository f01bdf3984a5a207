from __future__ import annotations


class Unauthorized(Exception):
    pass


class Verifier:
    def __init__(self, jwt_module, key: str) -> None:
        self._jwt = jwt_module
        self._key = key

    def claims(self, header: str | None) -> dict:
        if not header or not header.startswith("Bearer "):
            raise Unauthorized("missing token")
        try:
            return self._jwt.decode(header[7:], self._key, algorithms=["HS256"])
        except self._jwt.PyJWTError as exc:
            raise Unauthorized(str(exc)) from exc
