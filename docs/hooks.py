"""MkDocs hooks: the pages that are generated from the code and from the measured results.

* ``reference/api/modules.md``: the marker ``<!-- apinet-other-modules -->`` is replaced by a
  mkdocstrings block for every module of ``apinet`` that has no page of its own (:func:`other_modules`).
* ``reference/cli.md``: the marker ``<!-- apinet-cli-reference -->`` is replaced by every command of
  ``python -m apinet``, rendered from the argparse parsers themselves (:func:`render_cli`), so a flag
  is written once, in its parser.
* ``results/``: the measured results that live beside the scripts that made them
  (``benchmarks/RESULTS.md``, ``benchmarks/explanations/*.md``) become pages of the site as they are,
  without copies in ``docs/``.

Nothing here reaches the network; ``tests/test_docs_site.py`` builds the site with sockets disabled.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI_MARKER = "<!-- apinet-cli-reference -->"
MODULES_MARKER = "<!-- apinet-other-modules -->"

#: Subpackages with an API page of their own (reference/api/<name>.md); ``cli`` is the CLI reference.
API_PAGES = ("explain", "render", "metrics", "data", "train")

#: Site path -> file of the repository shown there as it is.
RESULT_PAGES = {
    "results/benchmarks.md": "benchmarks/RESULTS.md",
    "results/protocol.md": "benchmarks/explanations/PROTOCOL.md",
}


def _result_pages() -> dict[str, Path]:
    pages = {uri: ROOT / path for uri, path in RESULT_PAGES.items()}
    for table in sorted((ROOT / "benchmarks" / "explanations").glob("*.md")):
        if table.name != "PROTOCOL.md":
            pages[f"results/explanations/{table.name}"] = table
    return pages


# --- the Python API ----------------------------------------------------------------------------


def _static_all(path: Path) -> set[str] | None:
    """A module's ``__all__`` read from its source (nothing imported), or None without one."""
    import ast

    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            try:
                return set(ast.literal_eval(node.value))
            except ValueError:
                return None
    return None


def other_modules() -> list[str]:
    """Every public module and subpackage of ``apinet`` without a page of its own, so a module added
    to the package appears in the reference without anyone listing it. Modules whose every public
    name ``apinet`` re-exports (``model``, ``losses``) are on the ``apinet`` page already."""
    package = _static_all(ROOT / "apinet" / "__init__.py") or set()
    names = []
    for path in sorted((ROOT / "apinet").iterdir()):
        if path.name.startswith(("_", ".")):
            continue
        if path.suffix == ".py":
            public = _static_all(path)
            if public is None or not public <= package:
                names.append(path.stem)
        elif (path / "__init__.py").is_file() and path.name not in (*API_PAGES, "cli"):
            names.append(path.name)
    return [f"apinet.{name}" for name in names]


# --- the command line -----------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\*_\[\]|])")


def _cell(text: str) -> str:
    """Plain text as one Markdown table cell: HTML escaped, Markdown's active characters escaped,
    except inside ``code`` spans, which are kept as code."""
    parts = re.split(r"(``?[^`]+``?)", " ".join(str(text).split()))
    out = []
    for i, part in enumerate(parts):
        if i % 2:  # a code span: `x` or ``x``
            out.append("`" + part.strip("`").replace("|", "&#124;") + "`")
        else:
            out.append(_MD_SPECIAL.sub(r"\\\1", html.escape(part, quote=False)))
    return "".join(out)


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of every sub-command, in the order ``--help`` lists them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return []


def _default(action: argparse.Action) -> str:
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._HelpAction,
                           argparse._VersionAction)):
        return ""
    default = action.default
    if default is None or default is argparse.SUPPRESS or default == [] or default is False:
        return ""
    return f"`{default}`"


def _name(action: argparse.Action, formatter: argparse.HelpFormatter) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    flags = ", ".join(action.option_strings)
    if action.nargs == 0:
        return f"`{flags}`"
    metavar = formatter._format_args(action, formatter._get_default_metavar_for_optional(action))
    return f"`{flags} {metavar}`"


def render_parser(name: str, summary: str, parser: argparse.ArgumentParser, level: int = 2) -> str:
    """One command as Markdown: its usage, description and a table of its arguments."""
    formatter = parser._get_formatter()
    lines = [f"{'#' * level} `{name}`", ""]
    if summary:
        lines += [_cell(summary[0].upper() + summary[1:]) + ".", ""]
    lines += ["```text", parser.format_usage().strip(), "```", ""]
    if parser.description:
        lines += [_cell(parser.description), ""]
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        help_text = formatter._expand_help(action) if action.help else ""
        if action.choices and not isinstance(action, argparse._SubParsersAction):
            help_text += f" (one of: {', '.join(str(c) for c in action.choices)})"
        if action.required:
            help_text = "required. " + help_text
        rows.append(f"| {_name(action, formatter)} | {_cell(help_text)} | {_default(action)} |")
    if rows:
        lines += ["| argument | meaning | default |", "| --- | --- | --- |", *rows, ""]
    if parser.epilog:
        lines += [_cell(parser.epilog), ""]
    return "\n".join(lines)


def render_cli(parser: argparse.ArgumentParser | None = None) -> str:
    """Every command of ``python -m apinet`` as Markdown, from the parsers ``apinet.cli`` builds."""
    if parser is None:
        sys.path.insert(0, str(ROOT))
        from apinet.cli import build_parser

        parser = build_parser()
    commands = _subcommands(parser)
    out = ["| command | what it does |", "| --- | --- |"]
    out += [f"| [`{name}`](#{name}) | {_cell(summary)} |" for name, summary, _ in commands]
    out.append("")
    for name, summary, sub in commands:
        out += [render_parser(name, summary, sub).replace(f"## `{name}`", f"## `{name}` {{#{name}}}", 1), ""]
    return "\n".join(out)


# --- MkDocs events --------------------------------------------------------------------------------


def on_files(files, config, **kwargs):
    from mkdocs.structure.files import File

    for uri, path in _result_pages().items():
        if files.get_file_from_path(uri) is None:
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def literal_brackets(markdown: str) -> str:
    """Square brackets outside code as text: the results files write formulas such as
    ``W[c_A,k](g_A[k] - g_B[k])``, which Markdown would otherwise read as links."""
    out, fenced = [], False
    for line in markdown.split("\n"):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        if not fenced:
            parts = re.split(r"(`[^`]*`)", line)
            line = "".join(p if i % 2 else p.replace("[", "\\[") for i, p in enumerate(parts))
        out.append(line)
    return "\n".join(out)


def on_page_markdown(markdown: str, page, config, files, **kwargs):
    if page.file.src_uri.startswith("results/"):
        return literal_brackets(markdown)
    if page.file.src_uri == "reference/api/modules.md":
        return _replace_marker(markdown, MODULES_MARKER, "\n\n".join(f"::: {m}" for m in other_modules()), page)
    if page.file.src_uri == "reference/cli.md":
        return _replace_marker(markdown, CLI_MARKER, render_cli(), page)
    return markdown


def _replace_marker(markdown: str, marker: str, text: str, page) -> str:
    if marker not in markdown:
        from mkdocs.exceptions import PluginError

        raise PluginError(f"{page.file.src_uri} lost its marker {marker}")
    return markdown.replace(marker, text)
