"""Errors of the catalogue: each names the condition and says what to do next."""

from __future__ import annotations

from validation.errors import NsdxError


class CatalogueError(NsdxError):
    """Base class of everything the catalogue package raises on purpose."""


class DatabaseError(CatalogueError):
    status = 500


class StateNotFound(DatabaseError):
    """A command that only reads found no deployment where it looked (it creates none)."""

    status = 404


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
