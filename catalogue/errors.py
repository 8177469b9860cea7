"""Errors of the catalogue: each names the condition and says what to do next."""

from __future__ import annotations


class CatalogueError(Exception):
    transient = False
    status = 400  # HTTP status when surfaced through an API

    def __init__(self, message: str, *, hint: str | None = None, **fields: object) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.fields = fields

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"

    def to_dict(self) -> dict:
        return {
            "error": type(self).__name__,
            "message": self.message,
            "hint": self.hint,
            **{k: v for k, v in self.fields.items() if v is not None},
        }


class DatabaseError(CatalogueError):
    status = 500


class DatasetNotFound(CatalogueError):
    status = 404

    def __init__(self, name: str) -> None:
        super().__init__(
            f"dataset {name!r} not found in the catalogue",
            hint="run `nsdx datasets list` to see published datasets, or `nsdx ingest "
            f"{name}` if it is declared in datasets.yaml",
            name=name,
        )


class NotPublished(CatalogueError):
    status = 404


class QueryError(CatalogueError):
    pass
