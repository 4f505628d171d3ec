"""Where each CSV record starts: its first byte and its line, found with numpy so that
DuckDB's records (which carry no line numbers) can be given theirs.

Two scans: a fast one by quote parity, exact whenever every quote sits where a
well-formed field puts one; and an exact one by DuckDB's quoting rules, for damaged files.
The first whose record count equals DuckDB's is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import PinshopError
from . import text

BOM = b"\xef\xbb\xbf"


def record_starts(path: Path, delimiter: str, count: int, name: str) -> tuple[Any, Any]:
    """(start byte, line) of the `count` non-blank records of `path` (header included),
    as numpy arrays. Raises PinshopError when no scan finds `count` records."""
    exact = lambda p: _record_lines_exact(p, delimiter)  # noqa: E731
    scans = (_record_lines, exact) if _quotes_look_clean(path, delimiter) else (exact,)
    for scan in scans:
        starts, lines = scan(path)
        if len(starts) == count:
            return starts, lines
    raise PinshopError(f"cannot read {name} reliably: its quoting splits records in ways "
                       "no CSV reader agrees on; fix the quotes or export again")


def _bytes(path: Path) -> Any:
    import numpy as np

    return np.memmap(path, dtype=np.uint8, mode="r") if path.stat().st_size else \
        np.zeros(0, np.uint8)


def _quotes_look_clean(path: Path, delimiter: str) -> bool:
    """True when every quote sits where a well-formed field puts one (opening at a field
    start, closing before a delimiter or line end, or doubled) and they pair up: then the
    fast quote-parity scan finds the same records as DuckDB."""
    import numpy as np

    data = _bytes(path)
    quotes = np.flatnonzero(data == 34)
    if not len(quotes):
        return True
    if len(quotes) % 2:
        return False
    edges = np.array([ord(delimiter), 10, 13, 34])
    before = np.where(quotes > 0, np.asarray(data[np.maximum(quotes - 1, 0)]), 10)
    after = np.where(quotes + 1 < len(data),
                     np.asarray(data[np.minimum(quotes + 1, len(data) - 1)]), 10)
    return bool((np.isin(before, edges) | np.isin(after, edges)).all())


def _record_lines(path: Path) -> tuple[Any, Any]:
    """Records by quote parity: a newline ends a record only outside quotes; since an
    escaped quote is a pair of quotes, the parity of the quotes before a newline says
    whether it is inside a field."""
    import numpy as np

    data = _bytes(path)
    ends = []
    quotes_before = 0
    for offset in range(0, len(data), text.CHUNK):
        block = np.asarray(data[offset:offset + text.CHUNK])
        newlines = np.flatnonzero(block == 10)
        quotes = block == 34
        if quotes.any():
            parity = (np.cumsum(quotes)[newlines] + quotes_before) % 2
            ends.append(newlines[parity == 0] + offset)
            quotes_before += int(np.count_nonzero(quotes))
        elif quotes_before % 2 == 0:  # no quote open, none in the block: every newline
            ends.append(newlines + offset)
    end = np.concatenate([*ends, np.array([len(data)])]).astype(np.int64)
    return _non_blank(data, end)


def _non_blank(data: Any, end: Any) -> tuple[Any, Any]:
    """(start byte, line) of the records ending at the newlines `end` (plus end of file),
    without the empty ones, which DuckDB skips (blank lines, a lone \r)."""
    import numpy as np

    start = np.concatenate([[0], end[:-1] + 1]).astype(np.int64)
    newlines = np.flatnonzero(np.asarray(data) == 10)
    line = np.searchsorted(newlines, start) + 1
    length = end - start
    blank = length == 0
    if len(data):
        last = np.minimum(np.maximum(end - 1, 0), len(data) - 1)
        blank |= (length == 1) & (np.asarray(data[last]) == 13)
    return start[~blank], line[~blank]


def _record_lines_exact(path: Path, delimiter: str) -> tuple[Any, Any]:
    """Record starts by DuckDB's quoting rules, for files where the quote-parity scan
    disagrees with DuckDB (a literal quote inside an unquoted field, text after a closing
    quote). A quote opens a quoted field only where a field starts; inside one, a doubled
    quote is a quote and a single one closes it; text after a closing quote spoils the rest
    of the line (DuckDB rejects the record and picks up after the line end). The loop runs
    over quotes, delimiters and newlines only, and only for such damaged files."""
    import numpy as np

    data = np.asarray(_bytes(path))
    sep = ord(delimiter)
    special = np.flatnonzero((data == 34) | (data == 10) | (data == sep)).tolist()
    ends: list[int] = []
    field_start, in_quotes, spoiled, skip = 3 if data[:3].tobytes() == BOM else 0, \
        False, False, -1
    for position in special:
        if position == skip:
            continue
        byte = data[position]
        if in_quotes:
            if byte == 34:
                if position + 1 < len(data) and data[position + 1] == 34:
                    skip = position + 1  # an escaped quote
                else:
                    in_quotes = False
                    after = data[position + 1] if position + 1 < len(data) else 10
                    spoiled = after not in (sep, 10, 13)
        elif byte == 10:
            ends.append(position)
            field_start, spoiled = position + 1, False
        elif spoiled:
            continue
        elif byte == 34:
            in_quotes = position == field_start
        else:
            field_start = position + 1
    return _non_blank(data, np.array([*ends, len(data)], dtype=np.int64))
