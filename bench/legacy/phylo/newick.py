"""Newick reading and writing.

The grammar handled (Felsenstein's Newick, as written by PHYLIP, RAxML, IQ-TREE, BEAST,
DendroPy and friends)::

    tree     := subtree [":" length] ";"
    subtree  := "(" subtree ("," subtree)* ")" [label] | [label]
    label    := unquoted | "'" (any char, with '' for a quote) "'"

* ``[...]`` comments may appear between any two tokens and may nest; they are skipped,
  except a leading ``[&U]`` / ``[&R]`` which sets the tree's rooted flag.
* Whitespace and newlines between tokens are ignored. Unquoted labels keep their
  underscores (as ETE, Biopython and ``preserve_underscores`` in DendroPy do; the strict
  standard's "underscore means blank" rule surprises more people than it helps).
* Branch lengths are any float Python accepts (``1``, ``-0.5``, ``1e-3``, ``2.5E+02``).
* A missing length means "unknown". It is stored as ``length = 0.0`` so that times and
  distances stay defined, with the edge attribute ``length_missing = True`` so that
  writing the tree back omits it again (a round trip does not invent lengths).

Malformed input raises :class:`NewickError` (a ``ValueError``) naming the character
position and what was expected there.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from evosim.errors import EvosimError

__all__ = ["NewickError", "ParsedNewick", "parse_newick", "format_label", "format_length"]


class NewickError(EvosimError, ValueError):
    """A Newick string is malformed. ``position`` is the 0-based character offset."""

    def __init__(self, message: str, position: int, text: str | None = None) -> None:
        self.position = position
        where = f" at position {position}"
        if text is not None:
            lo = max(0, position - 20)
            snippet = text[lo : position + 20].replace("\n", " ")
            where += f" (near {snippet!r})"
        super().__init__(f"invalid Newick{where}: {message}")


@dataclass
class ParsedNewick:
    """A parsed tree as flat arrays in preorder (parents before children).

    ``parent[i]`` is the index of node i's parent (-1 for the root); ``label[i]`` the
    Newick label or ``None``; ``length[i]`` the branch length above node i or ``None``
    when missing (the root's entry is the root-branch length, usually ``None``).
    """

    parent: list[int] = field(default_factory=list)
    label: list[str | None] = field(default_factory=list)
    length: list[float | None] = field(default_factory=list)
    rooted: bool = True


# Tokens: quoted label, punctuation, comment start, or an unquoted word (anything else up to
# a delimiter). Whitespace is skipped by the scanner.
_TOKEN = re.compile(r"\s*(?:('(?:[^']|'')*')|([(),:;])|(\[)|([^\s()\[\]',:;]+)|(')|(\]))")


_BRACKET = re.compile(r"[\[\]]")


def _skip_comment(text: str, start: int) -> int:
    """Index just past the (possibly nested) comment opening at ``start``."""
    depth = 0
    for m in _BRACKET.finditer(text, start):
        depth += 1 if m.group() == "[" else -1
        if depth == 0:
            return m.end()
    raise NewickError("unterminated '[' comment", start, text)


def _tokens(text: str):
    """Yield (kind, value, position); kinds: 'q' quoted, 'p' punctuation, 'w' word, 'c' comment."""
    pos = 0
    n = len(text)
    match = _TOKEN.match
    while pos < n:
        m = match(text, pos)
        if m is None:  # only trailing whitespace can fail to match
            return
        quoted, punct, comment, word, badquote, badclose = m.groups()
        start = m.start(m.lastindex) if m.lastindex else pos
        if quoted is not None:
            yield "q", quoted[1:-1].replace("''", "'"), start
        elif punct is not None:
            yield "p", punct, start
        elif comment is not None:
            end = _skip_comment(text, start)
            yield "c", text[start + 1 : end - 1], start
            pos = end
            continue
        elif word is not None:
            yield "w", word, start
        elif badquote is not None:
            raise NewickError("unterminated quoted label", start, text)
        elif badclose is not None:
            raise NewickError("']' without a matching '['", start, text)
        else:  # pragma: no cover - whitespace only
            return
        pos = m.end()


def parse_newick(text: str) -> ParsedNewick:
    """Parse one Newick tree into flat preorder arrays.

    Parameters
    ----------
    text : str
        A single tree terminated by ``;`` (comments and whitespace may follow).

    Returns
    -------
    ParsedNewick

    Raises
    ------
    NewickError
        With the character position of the first problem.
    """
    if not isinstance(text, str):
        raise TypeError(f"Newick input must be a str, got {type(text).__name__}")
    out = ParsedNewick()
    parent, label, length = out.parent, out.label, out.length
    toks = []
    for tok in _tokens(text):
        if tok[0] == "c":
            if not toks and tok[1].strip().upper() in ("&U", "&R"):
                out.rooted = tok[1].strip().upper() == "&R"
            continue
        toks.append(tok)
    stack: list[int] = []  # open internal nodes
    cur = -1  # the node just completed, waiting for its label / length
    expect_subtree = True  # at the start, after '(' or ','
    have_label = have_length = False
    ntok = len(toks)
    k = 0
    while k < ntok:
        kind, value, pos = toks[k]
        k += 1
        if expect_subtree:
            expect_subtree = False
            if kind == "p" and value == "(":
                parent.append(stack[-1] if stack else -1)
                label.append(None)
                length.append(None)
                stack.append(len(parent) - 1)
                expect_subtree = True
                continue
            # a leaf, possibly unnamed
            parent.append(stack[-1] if stack else -1)
            label.append(None)
            length.append(None)
            cur = len(parent) - 1
            have_label = have_length = False
            if kind != "p":
                label[cur] = value
                have_label = True
                continue
            # unnamed leaf: this token is what follows it
        if kind != "p":
            if have_label or have_length:
                raise NewickError(
                    f"unexpected label {value!r} (expected ',', ')', ':' or ';')", pos, text
                )
            label[cur] = value
            have_label = True
        elif value == ":":
            if have_length:
                raise NewickError("second ':' for one branch", pos, text)
            if k >= ntok:
                raise NewickError("expected a branch length after ':'", pos + 1, text)
            kind2, value2, pos2 = toks[k]
            k += 1
            if kind2 != "w":
                raise NewickError(f"expected a branch length after ':', got {value2!r}", pos2, text)
            try:
                x = float(value2)
            except ValueError:
                raise NewickError(f"branch length {value2!r} is not a number", pos2, text) from None
            if not math.isfinite(x):
                raise NewickError(f"branch length {value2!r} is not finite", pos2, text)
            length[cur] = x
            have_length = True
        elif value == ",":
            if not stack:
                raise NewickError("',' outside parentheses", pos, text)
            expect_subtree = True
        elif value == ")":
            if not stack:
                raise NewickError("unbalanced ')'", pos, text)
            cur = stack.pop()
            have_label = have_length = False
        elif value == "(":
            raise NewickError("unexpected '(' (missing ',' before it?)", pos, text)
        else:  # ';'
            if stack:
                raise NewickError(f"';' with {len(stack)} unclosed '('", pos, text)
            if k < ntok:
                raise NewickError(
                    f"unexpected {toks[k][1]!r} after the closing ';' (one tree per string)",
                    toks[k][2],
                    text,
                )
            return out
    if not parent:
        raise NewickError("empty tree", len(text), text)
    if stack:
        raise NewickError(f"{len(stack)} unclosed '(' at end of input", len(text), text)
    raise NewickError("missing ';' at the end of the tree", len(text), text)


_SAFE = re.compile(r"[^\s()\[\]',:;]+")


def format_label(label: str) -> str:
    """A label as Newick: unquoted when safe, else single-quoted with ``''`` escapes."""
    if label and _SAFE.fullmatch(label):
        return label
    return "'" + label.replace("'", "''") + "'"


def format_length(x: float) -> str:
    """Shortest text that reads back as exactly ``x``."""
    return repr(float(x))
