"""Messages of the domain core that a surface may show in another language.

A :class:`Msg` *is* the English text (a ``str``: logs, the CLI, JSON answers and every
``==`` keep working), and it remembers the gettext message id it came from (``template``,
English, with ``%(name)s`` placeholders) and the values (``params``). The portal renders it
through its catalogue (``nsdx.web.i18n.core``); the domain packages never import the web.

``make messages`` extracts the ``Msg("...")`` calls of the domain packages into the portal's
catalogue, next to the portal's own messages.
"""

from __future__ import annotations

from typing import Any


class Msg(str):
    """English text with its message id and parameters (for translation by a surface)."""

    template: str
    params: dict[str, Any]

    def __new__(cls, template: str, **params: Any) -> Msg:
        self = super().__new__(cls, template % params if params else template)
        self.template = template
        self.params = params
        return self

    def __reduce__(self):  # pickled across processes (the validation worker) as itself
        return (_restore, (self.template, self.params))


def _restore(template: str, params: dict[str, Any]) -> Msg:
    return Msg(template, **params)


class Term(str):
    """A word of the core's vocabulary (an order's state, a cross-border route or rule, an
    evidence kind, a region) used as a parameter of a :class:`Msg`: it *is* the word, and a
    surface shows it through its catalogue as ``pgettext(context, word)`` (``context``
    ``None``: ``gettext(word)``). The words and their contexts are the ones the portal
    already names (``Np_("order", "paid")``...), so they are not extracted from here. ``msgid`` names the
    word when the English text writes it otherwise ("security assessment" for the route
    ``security_assessment``)."""

    context: str | None
    msgid: str  # the word as the catalogue knows it (``str(self)`` unless given)

    def __new__(cls, word: str, context: str | None = None, *, msgid: str | None = None) -> Term:
        self = super().__new__(cls, word)
        self.context = context
        self.msgid = word if msgid is None else msgid
        return self

    def __reduce__(self):
        return (_term, (str(self), self.context, self.msgid))


def _term(word: str, context: str | None, msgid: str) -> Term:
    return Term(word, context, msgid=msgid)


def to_json(text: object) -> Any:
    """A :class:`Msg` or :class:`Term` as JSON (its message id and parameters, recursively),
    for a record that keeps only JSON (a job's outcome); other text as it is."""
    if isinstance(text, Term):
        return {"term": str(text), "context": text.context, "msgid": text.msgid}
    if isinstance(text, Msg):
        return {"msg": text.template, "params": {k: to_json(v) for k, v in text.params.items()}}
    if text is None or isinstance(text, str | int | float | bool):
        return text
    return str(text)


def from_json(data: Any) -> Any:
    """What :func:`to_json` wrote, as the message again (unknown shapes: as they are)."""
    if isinstance(data, dict):
        if isinstance(data.get("term"), str):
            return Term(data["term"], data.get("context"), msgid=data.get("msgid"))
        if isinstance(data.get("msg"), str) and isinstance(data.get("params") or {}, dict):
            params = {str(k): from_json(v) for k, v in (data.get("params") or {}).items()}
            try:
                return Msg(data["msg"], **params)
            except (KeyError, ValueError, TypeError):
                return None
    return data


__all__ = ["Msg", "Term", "from_json", "to_json"]
