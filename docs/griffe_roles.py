"""A griffe extension for the API reference: the package's own documentation conventions.

* The docstrings name other objects the Sphinx way (``:class:`~apinet.explain.PairExplanation```,
  ``:func:`explain_pair```, ``:mod:`.channels```). Rendered by mkdocstrings as Markdown, those roles
  would show as literal text; they become inline code with the name a reader types
  (``PairExplanation``, ``explain_pair``, ``.channels``).
* Constants and dataclass fields are documented by comments, as STYLE.md asks (array shapes in the
  field comments): ``#:`` lines above a name, comment lines directly above a field, or a comment at
  the end of its line. An attribute without a docstring gets that comment as its docstring.
"""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|obj|exc|ref):`~?([^`]+)`")


def plain_roles(text: str) -> str:
    """``:role:`~a.b.C``` -> ``C`` (the short name when ``~`` asks for it), ``:role:`a.b``` -> ``a.b``."""

    def repl(match: re.Match) -> str:
        target = match.group(1)
        if match.group(0).split("`")[1].startswith("~"):
            target = target.rsplit(".", 1)[-1]
        return f"`{target}`"

    return ROLE.sub(repl, text)


def _trailing_comment(line: str) -> str | None:
    """The ``# comment`` at the end of a line of code (not a ``#`` inside a string)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "#":
            return line[i + 1:].strip() or None
    return None


def attribute_comment(lines: list[str], lineno: int) -> str | None:
    """The comment that documents the attribute defined at 1-based ``lineno`` of ``lines``: the
    ``#:`` or plain comment lines right above it (nearest last), else the comment ending its line."""
    above = []
    i = lineno - 2
    while i >= 0 and lines[i].lstrip().startswith("#"):
        above.append(lines[i].lstrip()[1:].lstrip(":").strip())
        i -= 1
    if above:
        return " ".join(reversed(above))
    return _trailing_comment(lines[lineno - 1])


def comment_as_markdown(comment: str) -> str:
    """A comment is plain text: its brackets are shapes and indices (``W[c][k]``), not links, and its
    angle brackets are placeholders (``<model>/test``), not HTML."""
    return comment.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("[", "\\[")


class SphinxRolesAsCode(griffe.Extension):
    def on_instance(self, *, obj, **kwargs) -> None:
        if obj.is_attribute and obj.docstring is None and obj.lineno and obj.filepath:
            try:
                comment = attribute_comment(obj.lines_collection[obj.filepath], obj.lineno)
            except (KeyError, IndexError, TypeError):
                comment = None
            if comment and "noqa" not in comment and "type: ignore" not in comment:
                obj.docstring = griffe.Docstring(comment_as_markdown(comment), parent=obj)
        if obj.docstring is not None:
            obj.docstring.value = plain_roles(obj.docstring.value)
