"""One scan of a text file before any reader sees it (CSV and JSONL catalogs, events, feeds).

`scan_text` settles, in a few streaming passes over the bytes, what every reader would
otherwise guess on its own, and hands the readers a working copy they can take as it is:

- encoding: UTF-16 with a BOM (Excel's "Unicode text") is decoded to a UTF-8 copy, so
  characters beyond the BMP (emoji) load; a file that is all UTF-8 (a BOM is fine) is read
  as it is; a file with bytes that are not UTF-8 and no UTF-8 multi-byte sequence anywhere
  is a legacy 8-bit export, read as Windows-1252 as a whole (through a UTF-8 copy, so `Café`
  stays `Café`); a mostly-UTF-8 file is "mixed": its lines that are not UTF-8 are left for
  the reader to reject (or marked with U+FFFD in the copy, for readers that cannot);
- binary: a NUL byte near the start refuses the file (for readers that ask);
- line ends: CRLF becomes LF (DuckDB loses its way when a quoted cell of a CRLF file holds
  an LF); a file with CR and no LF uses CR as its line end (Excel's "CSV (Macintosh)"), so
  CR becomes LF; in an LF or CRLF file a lone CR is stray text (pasted from elsewhere) and
  becomes a space. The working copy then holds no CR at all, and its line numbers are the
  source's.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import PinshopError

#: Bytes per block of every streaming pass (tests make it tiny to straddle blocks).
CHUNK = 4 << 20
#: A NUL byte within this many bytes of the start makes a file binary.
BINARY_PROBE = 1 << 20
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
EIGHT_BIT = "windows-1252"  # a legacy export's encoding: Excel's 8-bit default
#: Where Windows-1252 differs from Latin-1 (0x80-0x9F), by byte; the five it leaves
#: undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D) are not here, and stay Latin-1's.
CP1252 = {b: bytes([b]).decode("cp1252") for b in range(0x80, 0xA0)
          if b not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)}


@dataclass(frozen=True)
class Text:
    """A text file ready for a reader."""

    path: Path  # the working copy (or the source, when it needed no change)
    scratch: Path  # where the copies are, and where a reader may write its own
    encoding: str  # what the source was read as: 'utf-8', 'utf-16' or 'windows-1252'
    mixed: bool = False  # mostly UTF-8, with some lines that are not
    cr_line_ends: bool = False  # CR alone was the line end
    notes: tuple[str, ...] = ()


def blocks(path: Path) -> Iterator[bytes]:
    """The file in blocks of CHUNK bytes."""
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            yield block


def line_blocks(path: Path) -> Iterator[bytes]:
    """The file in blocks of whole lines, about CHUNK bytes each (the last may lack its LF)."""
    parts: list[bytes] = []
    for chunk in blocks(path):
        cut = chunk.rfind(b"\n") + 1
        if cut:
            yield b"".join([*parts, chunk[:cut]])
            parts = []
        if cut < len(chunk):
            parts.append(chunk[cut:])
    if parts:
        yield b"".join(parts)


def scan_text(path: Path, scratch: Path, name: str, *, fix_line_ends: bool = True,
              mark_undecodable: bool = False, refuse_binary: bool = False) -> Text:
    """`path` as UTF-8 text in `scratch` (named `name` in errors and notes). Raises
    PinshopError for an empty, unreadable, binary or broken UTF-16 file."""
    try:
        return _scan(Path(path), Path(scratch), name, fix_line_ends, mark_undecodable,
                     refuse_binary)
    except OSError as exc:
        raise PinshopError(f"cannot read {name}: {exc.strerror or exc}") from None


def _scan(path: Path, scratch: Path, name: str, fix_line_ends: bool, mark_undecodable: bool,
          refuse_binary: bool) -> Text:
    if path.stat().st_size == 0:
        raise PinshopError(f"cannot read {name}: the file is empty")
    notes: list[str] = []
    mixed = False
    with open(path, "rb") as handle:
        utf16 = handle.read(2) in UTF16_BOMS
    if utf16:
        encoding = "utf-16"
        path = _recode(path, scratch / "utf16.txt", _decode_utf16(name))
    else:
        encoding = detect_encoding(path)
        if encoding == EIGHT_BIT:
            notes.append(f"{name} is not UTF-8: read as Windows-1252 (Latin-1 with €, "
                         "curly quotes and dashes)")
            path = _recode(path, scratch / "8bit.txt", _decode_8bit)
        elif encoding == "mixed":
            encoding, mixed = "utf-8", True
            notes.append(f"{name} mixes UTF-8 with another encoding: lines that are not "
                         "UTF-8 are rejected")
            if mark_undecodable:
                path = _recode(path, scratch / "marked.txt", _decoder("utf-8", "replace"))
    if refuse_binary:
        with open(path, "rb") as handle:
            if b"\x00" in handle.read(BINARY_PROBE):
                raise PinshopError(f"cannot read {name}: it is a binary file, not text")
    cr_only = False
    if fix_line_ends and (lone_cr := _lone_cr(path)) is not None:
        cr_only = lone_cr == b"\n"
        if cr_only:
            notes.append(f"{name}: carriage returns read as line ends")
        path = _rewrite_line_ends(path, scratch / "lines.txt", lone_cr)
    return Text(path, scratch, encoding, mixed, cr_only, tuple(notes))


def detect_encoding(path: Path) -> str:
    """'utf-8' when the whole file decodes as UTF-8; EIGHT_BIT when it holds no UTF-8
    multi-byte sequence at all (a legacy 8-bit export); else 'mixed'."""
    strict = codecs.getincrementaldecoder("utf-8")()
    try:
        for block in blocks(path):
            strict.decode(block)
        strict.decode(b"", final=True)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    lenient = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for block in blocks(path):
        if re.search(r"[^\x00-\x7f\ufffd]", lenient.decode(block)):
            return "mixed"
    return EIGHT_BIT


def _decode_8bit(block: bytes, final: bool) -> str:
    """Windows-1252, Excel's 8-bit default: Latin-1 but for 0x80-0x9F (€ ‚ „ … ' ' " " –),
    where the five bytes it leaves undefined stay Latin-1's. One byte per character, so a
    block cut anywhere decodes the same."""
    return block.decode("latin-1").translate(CP1252)


def _decoder(encoding: str, errors: str = "strict") -> Callable[[bytes, bool], str]:
    decoder = codecs.getincrementaldecoder(encoding)(errors=errors)
    return lambda block, final: decoder.decode(block, final=final)


def _decode_utf16(name: str) -> Callable[[bytes, bool], str]:
    decode = _decoder("utf-16")  # the BOM says which byte order, and is dropped

    def strict(block: bytes, final: bool) -> str:
        try:
            return decode(block, final)
        except UnicodeDecodeError as exc:
            raise PinshopError(f"cannot read {name}: not valid UTF-16 text ({exc.reason})"
                               ) from None
    return strict


def _recode(path: Path, target: Path, decode: Callable[[bytes, bool], str]) -> Path:
    """`target`: `path` decoded block by block, written as UTF-8."""
    with open(target, "wb") as out:
        for block in blocks(path):
            out.write(decode(block, False).encode())
        out.write(decode(b"", True).encode())
    return target


def _lone_cr(path: Path) -> bytes | None:
    """What a CR that is not part of CRLF becomes, or None when the file holds no CR: LF
    in a file without LF (CR is its line end), else a space."""
    has_cr = has_lf = False
    for block in blocks(path):
        has_cr = has_cr or b"\r" in block
        has_lf = has_lf or b"\n" in block
        if has_cr and has_lf:
            break
    if not has_cr:
        return None
    return b" " if has_lf else b"\n"


def _rewrite_line_ends(path: Path, target: Path, lone_cr: bytes) -> Path:
    """`target`: `path` with CRLF as LF and every other CR as `lone_cr` (a CR at the end of
    a block waits for the next, which may begin with its LF)."""
    carry = b""
    with open(target, "wb") as out:
        for block in blocks(path):
            data = carry + block
            carry = b"\r" if data.endswith(b"\r") else b""
            data = data[:len(data) - len(carry)].replace(b"\r\n", b"\n")
            out.write(data.replace(b"\r", lone_cr))
        out.write(carry.replace(b"\r", lone_cr))
    return target
