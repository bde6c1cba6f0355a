"""A griffe extension for the API reference: the docstrings' Sphinx roles as Markdown code.

The package's docstrings name other objects the Sphinx way (``:class:`~apinet.explain.PairExplanation```,
``:func:`explain_pair```, ``:mod:`.channels```). Rendered by mkdocstrings as Markdown, those roles would
show as literal text; this turns each into inline code with the name a reader types
(``PairExplanation``, ``explain_pair``, ``.channels``).
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


class SphinxRolesAsCode(griffe.Extension):
    def on_instance(self, *, obj, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain_roles(obj.docstring.value)
