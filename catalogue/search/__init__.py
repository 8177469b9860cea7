"""Search over the catalogue: an in-memory inverted index of package dicts, kept current
from the database's change log, answering a documented subset of CKAN's Solr syntax.

The package is split by responsibility:

* :mod:`.analysis` — what a package dict is indexed under: Chinese character unigrams and
  bigrams, lightly stemmed English words, and the exact-match fields (fq, facets, sort);
* :mod:`.query` — the ``q``/``fq``/``sort`` syntax parsed into a small tree, and
  :class:`SearchQueryError`;
* :mod:`.index` — :class:`SearchIndex` (NumPy arrays, refreshed from the catalogue's
  revision counter) and the one index per database (:func:`index_for`).
"""

from .analysis import doc_fields, doc_text, index_tokens, query_tokens
from .index import (
    DEFAULT_FACET_LIMIT,
    DEFAULT_SORT,
    KEEP_CHANGES,
    MAX_ROWS,
    TEXT_FIELDS,
    SearchIndex,
    drop_indexes,
    index_for,
)
from .query import All, And, Not, Or, Range, SearchQueryError, Term, parse_query, parse_sort

__all__ = [
    "DEFAULT_FACET_LIMIT",
    "DEFAULT_SORT",
    "KEEP_CHANGES",
    "MAX_ROWS",
    "TEXT_FIELDS",
    "All",
    "And",
    "Not",
    "Or",
    "Range",
    "SearchIndex",
    "SearchQueryError",
    "Term",
    "doc_fields",
    "doc_text",
    "drop_indexes",
    "index_for",
    "index_tokens",
    "parse_query",
    "parse_sort",
    "query_tokens",
]
