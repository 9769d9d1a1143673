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

import numpy as np

from evosim.errors import EvosimError

__all__ = ["NewickError", "ParsedNewick", "parse_newick", "format_label", "format_length"]


class NewickError(EvosimError, ValueError):
    """A Newick string is malformed. ``position`` is the 0-based character offset (``None``
    for problems of the whole tree, such as duplicate leaf names)."""

    def __init__(self, message: str, position: int | None = None, text: str | None = None) -> None:
        self.position = position
        where = "" if position is None else f" at position {position}"
        if text is not None and position is not None:
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
    fast = _parse_plain(text)
    if fast is not None:
        return fast
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


_ROOTING = re.compile(r"\s*\[\s*&([UuRr])\s*\]")
_AROUND = re.compile(r"\s*([(),:;])\s*")
_SPACE = re.compile(r"\s")
_DELIMS = re.compile(r"([(),;])")
_OPEN, _CLOSE, _COMMA, _END = (ord(c) for c in "(),;")


def _parse_plain(text: str) -> ParsedNewick | None:
    """Vectorised parse of the common case (no quotes, no comments but a leading ``[&U]``).

    Returns ``None`` whenever the text is not plainly valid, so that the careful parser
    handles it and reports the first problem with its position.
    """
    rooted = True
    m = _ROOTING.match(text)
    if m is not None:
        rooted = m.group(1) in "Rr"
        text = text[m.end() :]
    if "'" in text or "[" in text or "]" in text:
        return None
    s = text.strip()
    if _SPACE.search(s) is not None:  # rare in written trees: drop it around delimiters
        s = _AROUND.sub(r"\1", s)
        if _SPACE.search(s) is not None:
            return None
    if not s.endswith(";"):
        return None
    pieces = _DELIMS.split(s)
    texts = pieces[0::2]  # texts[k] comes before delimiter k; the last one after ';'
    delims = np.frombuffer("".join(pieces[1::2]).encode("ascii"), dtype=np.uint8)
    k = delims.size
    if texts[-1] or delims[-1] != _END or np.count_nonzero(delims == _END) != 1:
        return None
    step = (delims == _OPEN).astype(np.int64) - (delims == _CLOSE)
    after = np.cumsum(step)  # open parentheses after each delimiter
    before = after - step
    if after.min(initial=0) < 0 or after[-1] != 0 or np.any(before[delims == _COMMA] < 1):
        return None
    prev = np.empty(k, dtype=np.uint8)
    prev[0] = _COMMA  # the tree starts like a subtree after ','
    prev[1:] = delims[:-1]
    nonempty = np.fromiter(map(len, texts[:k]), dtype=np.int64, count=k) > 0
    expect = (prev == _OPEN) | (prev == _COMMA)  # a subtree starts before delimiter k
    if np.any(nonempty & expect & (delims == _OPEN)):
        return None  # a label right before '('
    if np.any((prev == _CLOSE) & (delims == _OPEN)):
        return None  # ')(' without a comma
    if k > 1 and delims[0] != _OPEN:
        return None  # a single leaf must be the whole tree
    # nodes in preorder: an internal node at each '(' and a leaf at each subtree start
    # that is not '('; both keyed by the delimiter index, so sorted keys are preorder
    leaf_at = np.flatnonzero(expect & (delims != _OPEN))
    open_at = np.flatnonzero(delims == _OPEN)
    node_at = np.sort(np.concatenate([open_at, leaf_at]))
    n = node_at.size
    # parent: the last '(' before the node that leaves the node's depth open
    node_of = np.full(k, -1, dtype=np.int64)
    node_of[node_at] = np.arange(n)
    parent = np.full(n, -1, dtype=np.int64)
    if open_at.size:
        okey = after[open_at] * (k + 1) + open_at
        sort = np.argsort(okey)
        okey, opens = okey[sort], open_at[sort]
        qkey = before[node_at] * (k + 1) + node_at
        j = np.searchsorted(okey, qkey) - 1
        par_open = opens[np.maximum(j, 0)]
        valid = (j >= 0) & (after[par_open] == before[node_at])
        parent = np.where(valid, node_of[par_open], -1)
    if np.count_nonzero(parent < 0) != 1 or parent[0] != -1:
        return None
    # each node's text: a leaf's precedes its delimiter; an internal node's follows the
    # ')' that closes it, the ')' whose depth before equals the '(' depth after
    ckey_at = np.flatnonzero(delims == _CLOSE)
    if ckey_at.size != open_at.size:
        return None
    # matching ')' of each '(' in order: sort closes by (depth, position) like the opens
    o_order = np.lexsort((open_at, after[open_at]))
    c_order = np.lexsort((ckey_at, before[ckey_at]))
    close_of = np.empty(open_at.size, dtype=np.int64)
    close_of[o_order] = ckey_at[c_order]
    text_at = np.empty(n, dtype=np.int64)
    text_at[node_of[leaf_at]] = leaf_at
    text_at[node_of[open_at]] = close_of + 1
    label: list[str | None] = []
    length: list[float | None] = []
    try:
        for t in (texts[i] for i in text_at.tolist()):
            name, colon, x = t.partition(":")
            label.append(name or None)
            if colon:
                v = float(x)
                if v != v or v in (float("inf"), float("-inf")):
                    return None
                length.append(v)
            else:
                length.append(None)
    except ValueError:
        return None  # not a number, or a second ':'
    return ParsedNewick(parent=parent.tolist(), label=label, length=length, rooted=rooted)


_SAFE = re.compile(r"[^\s()\[\]',:;]+")


def format_label(label: str) -> str:
    """A label as Newick: unquoted when safe, else single-quoted with ``''`` escapes."""
    if label and _SAFE.fullmatch(label):
        return label
    return "'" + label.replace("'", "''") + "'"


def format_length(x: float) -> str:
    """Shortest text that reads back as exactly ``x``."""
    return repr(float(x))
