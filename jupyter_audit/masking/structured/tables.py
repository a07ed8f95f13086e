"""Tabular output: values under a sensitive column header are masked.

Three forms reach the trail in a cell's output summaries (``cell.finished`` ``outputs``):

- a dataframe's text repr (pandas, polars' ``to_pandas``...): a header line of right-aligned
  column names over rows whose values end where their header ends;
- an HTML table (``DataFrame.to_html``, ``_repr_html_``): ``<th>`` headers over ``<td>`` cells;
- printed rows of a query, Python tuples (``[(1, 'Ann Lee', ...)]``), when the cell's own code
  holds the ``SELECT`` whose column list gives their positions (a ``SELECT *`` says nothing);
- ``'key': value`` pairs of printed dicts and JSON, by key name.

Never raises on text it cannot read (the text recognizers still run on it afterwards).
"""

from __future__ import annotations

import ast
import html
import re
from collections.abc import Callable

from ..base import MASKED_RE
from .names import SensitiveNames

Pseudonym = Callable[[str, str], str]

_HEADER_WORD = re.compile(r"\S+")
_TABLE = re.compile(r"(?is)<table\b.*?</table>")
_ROW = re.compile(r"(?is)<tr\b[^>]*>(.*?)</tr>")
_CELL = re.compile(r"(?is)(<t([hd])\b[^>]*>)(.*?)(</t\2>)")
_TAGS = re.compile(r"<[^>]*>")
_INDEX_VALUE = re.compile(r"\S(?:.*?\S)?(?=\s{2,}|$)")
_SELECT = re.compile(r"(?is)\bselect\s+(?:distinct\s+)?(.*?)\s+from\b")
_ALIAS = re.compile(r"(?is)\bas\s+([\w\"`\[\]]+)\s*$")
_LAST_NAME = re.compile(r"([\w\"`\[\]]+)\s*$")
_CALL_ARGS = re.compile(r"\((?:[^()]|\([^()]*\))*\)")
_PY_VALUE = re.compile(
    r"""'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"|[^,()\[\]'"\n]+|\((?:[^()]|\([^()]*\))*\)"""
)
_DICT_PAIR = re.compile(
    r"""(["'])([A-Za-z_][\w .-]{0,63})\1\s*:\s*(?:(["'])((?:(?!\3)[^\\\n]|\\.)*)\3|(-?[\d.]+))"""
)


class TableMasker:
    """Masks values under sensitive column headers in output texts."""

    def __init__(self, columns: SensitiveNames) -> None:
        self.columns = columns

    def mask(self, text: str, pseudonym: Pseudonym, code: str | None = None) -> str:
        if len(text) < 3 or not self.columns.may_occur(text.lower()):
            if code is None or not self.columns.may_occur(code.lower()):
                return text
        if "<t" in text:
            text = _TABLE.sub(lambda m: self._html(m.group(), pseudonym), text)
        if "\n" in text:
            text = self._text_frame(text, pseudonym)
        if code and "(" in text:
            selects = self._select_lists(code)
            if selects:
                text = self._tuples(text, selects, pseudonym)
        if ":" in text:
            text = self._pairs(text, pseudonym)
        return text

    # dataframe text repr -------------------------------------------------------------------

    def _header(self, line: str) -> list[tuple[int, int, str | None]] | None:
        """A frame's header: (start, end, TYPE) of each column name, or None when the line
        is not one (it must start with the index's blank and name a sensitive column)."""
        if not line.startswith(" ") or not line.strip():
            return None
        type_of = self.columns.type_of
        cols = [(m.start(), m.end(), type_of(m.group())) for m in _HEADER_WORD.finditer(line)]
        if not any(t for _, _, t in cols):
            return None
        return cols

    def _text_frame(self, text: str, pseudonym: Pseudonym) -> str:
        lines = text.split("\n")
        changed = False
        i = 0
        while i < len(lines) - 1:
            cols = self._header(lines[i])
            if cols is None:
                i += 1
                continue
            j = i + 1
            index_type = None
            if j < len(lines) and lines[j][:1].strip() and len(lines[j].split()) == 1:
                index_type = self.columns.type_of(lines[j].split()[0])  # the index's name
                j += 1
            while j < len(lines) and lines[j].strip() and not lines[j].startswith("["):
                row = lines[j]
                if self._header(row) is not None and row[: cols[0][0]].strip() == "":
                    break  # the next block of a wide frame
                new = _mask_row(row, cols, pseudonym)
                if index_type is not None and (m := _INDEX_VALUE.match(new)) is not None:
                    if not MASKED_RE.search(m.group()):
                        new = pseudonym(index_type, m.group()) + new[m.end() :]
                if new is not row:
                    lines[j] = new
                    changed = True
                j += 1
            i = j
        return "\n".join(lines) if changed else text

    # HTML ------------------------------------------------------------------------------------

    def _html(self, table: str, pseudonym: Pseudonym) -> str:
        rows = list(_ROW.finditer(table))
        types: list[str | None] = []
        for row in rows:  # the last header row (all <th>) names the columns
            cells = list(_CELL.finditer(row.group(1)))
            if cells and all(c.group(2).lower() == "h" for c in cells):
                types = [self.columns.type_of(_cell_text(c.group(3))) for c in cells]
        if not any(types):
            return table

        def mask_row(row: re.Match) -> str:
            body = row.group(0)
            cells = list(_CELL.finditer(body))
            if not cells or all(c.group(2).lower() == "h" for c in cells):
                return body
            parts, pos = [], 0
            for k, c in enumerate(cells):
                t = types[k] if k < len(types) else None
                value = _cell_text(c.group(3))
                if t is None or not value or MASKED_RE.fullmatch(value):
                    continue
                parts.append(body[pos : c.start(3)])
                parts.append(html.escape(pseudonym(t, value)))
                pos = c.end(3)
            parts.append(body[pos:])
            return "".join(parts)

        return _ROW.sub(mask_row, table)

    # printed query rows ----------------------------------------------------------------------

    def _select_lists(self, code: str) -> list[list[str | None]]:
        out = []
        for m in _SELECT.finditer(code):
            items = _split_top(m.group(1))
            if any(item.strip() == "*" or item.strip().endswith(".*") for item in items):
                continue
            types = []
            for item in items:
                item = item.strip()
                name = _ALIAS.search(item) or _LAST_NAME.search(item)
                types.append(self.columns.type_of(name.group(1)) if name else None)
            if any(types):
                out.append(types)
        return out

    def _tuples(self, text: str, selects: list[list[str | None]], pseudonym: Pseudonym) -> str:
        by_arity: dict[int, list[str | None]] = {}
        for types in selects:  # two selects of one arity: a position sensitive in either
            old = by_arity.get(len(types))
            by_arity[len(types)] = (
                types if old is None else [a or b for a, b in zip(old, types, strict=True)]
            )
        parts, pos, i, n = [], 0, 0, len(text)
        while True:
            i = text.find("(", i)
            if i < 0:
                break
            items = tuple_at(text, i)
            if items is None:
                i += 1
                continue
            row_types = by_arity.get(len(items))
            if row_types is None:
                i += 1
                continue
            for (s, e), t in zip(items, row_types, strict=True):
                value = text[s:e]
                if t is None or value in ("None", "") or MASKED_RE.search(value):
                    continue
                parts.append(text[pos:s])
                inner = python_str(value)
                parts.append(repr(pseudonym(t, inner)))
                pos = e
            i = items[-1][1] + 1 if items else i + 1
            if i >= n:
                break
        if not parts:
            return text
        parts.append(text[pos:])
        return "".join(parts)

    # key: value pairs ------------------------------------------------------------------------

    def _pairs(self, text: str, pseudonym: Pseudonym) -> str:
        def sub(m: re.Match) -> str:
            t = self.columns.type_of(m.group(2))
            value = m.group(4) if m.group(3) else m.group(5)
            if t is None or not value or MASKED_RE.fullmatch(value):
                return m.group()
            s, e = m.span(4) if m.group(3) else m.span(5)
            start = m.start()
            whole = m.group()
            return whole[: s - start] + pseudonym(t, value) + whole[e - start :]

        return _DICT_PAIR.sub(sub, text)


def python_str(value: str) -> str:
    """The text a Python string repr stands for (``'O\\'Neil'`` -> ``O'Neil``), or the
    element itself when it is not one."""
    if len(value) > 1 and value[0] in "'\"" and value[-1] == value[0]:
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value[1:-1]
        return parsed if isinstance(parsed, str) else value
    return value


def _cell_text(inner: str) -> str:
    return html.unescape(_TAGS.sub("", inner)).strip()


def _mask_row(row: str, cols: list[tuple[int, int, str | None]], pseudonym: Pseudonym) -> str:
    """Mask the cells of one text-repr row under sensitive headers: a right-aligned cell
    ends where its header ends and starts after the previous column's end."""
    spans = []
    for k, (_, end, t) in enumerate(cols):
        if t is None:
            continue
        lo = cols[k - 1][1] if k > 0 else 0
        if k == 0:  # the first header sits over the index's right: start after the index
            first = row[:end].split()
            if len(first) < 2:
                continue
            lo = row.index(first[0]) + len(first[0])
        value = row[lo:end].strip()
        if not value or value in ("NaN", "None", "<NA>", "...") or MASKED_RE.search(value):
            continue
        s = row.index(value, lo)
        spans.append((s, s + len(value), t, value))
    if not spans:
        return row
    parts, pos = [], 0
    for s, e, t, value in spans:
        parts.append(row[pos:s])
        parts.append(pseudonym(t, value))
        pos = e
    parts.append(row[pos:])
    return "".join(parts)


def _split_top(text: str) -> list[str]:
    """``a, lower(b), c`` -> ``["a", " lower(b)", " c"]``: commas outside parentheses."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return items


def tuple_at(text: str, i: int, close: str = ")") -> list[tuple[int, int]] | None:
    """The element spans of a Python tuple (or, with ``close="]"``, list) repr opening at
    ``text[i]``, or None when there is none."""
    items: list[tuple[int, int]] = []
    pos = i + 1
    n = len(text)
    while pos < n:
        while pos < n and text[pos] == " ":
            pos += 1
        if pos < n and text[pos] == close and not items:
            return items  # () or []
        m = _PY_VALUE.match(text, pos)
        if m is None:
            return None
        s, e = m.span()
        if e < n and text[e] == "(":  # a call: Decimal('1.5'), datetime.date(...)
            call = _CALL_ARGS.match(text, e)
            if call is None:
                return None
            e = call.end()
        value = text[s:e].rstrip()
        items.append((s, s + len(value)))
        pos = e
        if pos < n and text[pos] == ",":
            pos += 1
            while pos < n and text[pos] in " \n":
                pos += 1
            if pos < n and text[pos] == close:  # (x,)
                return items
            continue
        if pos < n and text[pos] == close:
            return items
        return None
    return None
