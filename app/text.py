"""Untrusted text shown as text.

Class names, file names, card fields, gallery.json entries and error messages come from files a user
may have downloaded. Streamlit renders most strings as Markdown (st.markdown, captions, alerts, image
captions, tooltips), some with HTML enabled, and Plotly renders a subset of HTML (links included) in
labels. Every such string goes through one of these functions before it reaches an element:

* :func:`md` for Markdown bodies, with or without ``unsafe_allow_html``: HTML special characters
  become entities and every Markdown / LaTeX / directive character is backslash-escaped, so
  ``<img src=x onerror=...>``, ``[link](http://...)``, ``![](http://...)``, ``$x$`` and ``:red[x]``
  render as the literal characters;
* :func:`html_text` for text placed inside an HTML block (no Markdown is parsed there);
* :func:`plotly_text` for Plotly labels and titles.
"""

from __future__ import annotations

import html
import re

__all__ = ["html_text", "md", "plotly_text"]

# CommonMark's escapable ASCII punctuation that can start or change markup in Streamlit's Markdown
# (GFM tables and strikethrough, KaTeX math, directives such as :red[...], headings, lists, links).
_MARKDOWN_SPECIAL = "\\`*_{}[]()#+-.!|~$:^="


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


# GitHub-flavoured Markdown turns bare "http://...", "www...." and "name@host.tld" into links after
# parsing, whatever was escaped; an invisible word joiner (U+2060) inside the trigger stops that.
WORD_JOINER = "\u2060"
_AUTOLINK = re.compile(r"(?i)https?(?=:)|www(?=\.)|@")


def _no_autolink(text: str) -> str:
    return _AUTOLINK.sub(lambda m: m.group(0) + WORD_JOINER, text)


def md(text: object) -> str:
    """``text`` on one line, safe to embed in any Streamlit Markdown string (renders literally, with an
    invisible word joiner in bare URLs and e-mail addresses so that they are not linked)."""
    escaped = html.escape(_no_autolink(_one_line(text)), quote=False)  # & < > -> entities (literal in Markdown)
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in escaped)


def html_text(text: object) -> str:
    """``text`` on one line for the inside of an HTML element (quotes escaped for attributes too)."""
    return html.escape(_one_line(text), quote=True)


def plotly_text(text: object) -> str:
    """``text`` for a Plotly label: Plotly interprets <a>, <b>, <br>, ... so all tags become entities."""
    return html.escape(_one_line(text), quote=True)
