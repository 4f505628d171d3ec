"""Photo URLs (http, https) fetched into a content-addressed store in the workspace.

    photos/objects/ab/<sha256>      each photo once, named by its content
    photos/urls.parquet             url -> sha256, size, ETag, Last-Modified (compacted)
    photos/parts/*.parquet          the same rows of a run still going (or killed)

Fetching is concurrent (threads sharing one httpx client, a bound per host), with connect
and read timeouts, retries with backoff on 5xx and time-outs (and a body cut off) only,
redirects followed up to a limit, a byte cap, and content-type and decode checks. A URL the
store already holds is asked for again only with its validators (If-None-Match /
If-Modified-Since): a 304 keeps the stored photo, so an unchanged photo is never downloaded
twice; a URL whose server gave no validator is not asked again. Results are written in
small atomic parts as they come, so a killed run resumes where it stopped. A failed photo
is returned with its reason, never raised.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from ..errors import first_line
from ..progress import NullProgress
from ..workspace.storage import read_parquet, remove, write_parquet
from .images import DEFAULT_MAX_PIXELS, ImageRejected, check_image

if TYPE_CHECKING:
    import httpx
    import pyarrow as pa

    from ..progress import Progress


@dataclass(frozen=True)
class FetchPolicy:
    """How photos are fetched (times in seconds)."""

    workers: int = 16
    per_host: int = 8
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    #: One download, headers to last byte: a server dripping a byte every few seconds
    #: never trips the read time-out (a photo took 97 s a try, and could take hours).
    download_timeout: float = 60.0
    retries: int = 2  # after the first try; on 5xx and time-outs only
    backoff: float = 0.5  # seconds before the first retry, doubled after each
    max_redirects: int = 5
    max_bytes: int = 20 << 20
    max_pixels: int = DEFAULT_MAX_PIXELS
    #: Results per state part: a killed run re-fetches at most this many.
    part_rows: int = 16


#: Content types that say nothing of what the bytes are ("" for none).
UNTYPED = ("", "application/octet-stream", "binary/octet-stream")


class FetchFailed(Exception):
    """A photo that cannot be had; the message is the reason recorded."""

    def __init__(self, reason: str, retry: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.retry = reason, retry


#: "scheme://": a photo somewhere else. Only http(s) is fetched; another scheme (ftp://,
#: s3://) is a photo that cannot be had, and its product is kept text-only. file:// is a
#: local path.
REMOTE = re.compile(r"(?!file://)[A-Za-z][A-Za-z0-9+.\-]*://", re.IGNORECASE)


def is_url(ref: str) -> bool:
    """Whether an image reference names a remote photo rather than a local file."""
    return REMOTE.match(ref) is not None


def local_path(ref: str) -> Path:
    """A local image reference as a path: file:///x/y.jpg (percent-escapes decoded) or a
    plain path."""
    if ref[:7].lower() == "file://":
        rest = ref[7:]
        return Path(unquote(rest[9:] if rest[:10].lower() == "localhost/" else rest))
    return Path(ref).expanduser()


def _state_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([("url", pa.string()), ("sha256", pa.string()), ("width", pa.int32()),
                      ("height", pa.int32()), ("etag", pa.string()),
                      ("last_modified", pa.string()), ("problem", pa.string()),
                      ("downloaded", pa.bool_())])


class PhotoStore:
    """The store under `root` (the workspace's photos/)."""

    def __init__(self, root: Path, policy: FetchPolicy | None = None,
                 progress: Progress | None = None) -> None:
        self.root, self.policy = Path(root), policy or FetchPolicy()
        self.progress = progress or NullProgress()  # a bar with the rate, in the CLI
        self.state_path = self.root / "urls.parquet"
        self.parts_dir = self.root / "parts"
        self.notes: list[str] = []  # damaged state files, left out

    def object_path(self, sha256: str) -> Path:
        return self.root / "objects" / sha256[:2] / sha256

    def known(self) -> pa.Table:
        """The last good result per URL: the compacted state and any parts a killed run
        left, later rows first."""
        import pyarrow as pa

        from ..workspace.storage import query_arrow

        files = [self.state_path, *sorted(self.parts_dir.glob("*.parquet"))]
        tables = [t for t in map(self._read, files) if t is not None]
        if not tables:
            return _state_schema().empty_table()
        rows = pa.concat_tables(tables)
        return query_arrow(
            "SELECT * EXCLUDE (n) FROM (SELECT *, row_number() OVER () AS n FROM rows) "
            "WHERE problem IS NULL QUALIFY row_number() OVER (PARTITION BY url ORDER BY n DESC)"
            " = 1", tables={"rows": rows}).cast(_state_schema())

    def _read(self, path: Path) -> pa.Table | None:
        """One state file in the state schema; a damaged one (truncated, another table
        copied over it) is left out and said: its URLs are asked for again, and the next
        compaction writes the state anew."""
        import pyarrow as pa

        try:
            table = read_parquet(path)
            return None if table is None else table.cast(_state_schema())
        except (pa.ArrowInvalid, OSError, ValueError, KeyError) as exc:
            self.notes.append(f"{path} was damaged ({first_line(exc, 120)}): left out; "
                              "its photos are asked for again")
            return None

    def fetch(self, urls: list[str]) -> pa.Table:
        """Fetch `urls` (distinct); return the state schema, one row per URL: the stored
        photo's sha256 and size, or its `problem`. `downloaded` says a body came."""
        import pyarrow as pa
        import pyarrow.compute as pc

        known = self.known()  # only the requested URLs' rows become dicts, not the store's
        asked = known.filter(pc.is_in(known.column("url"), pa.array(urls, pa.string())))
        before = {row["url"]: row for row in asked.to_pylist()
                  if self.object_path(row["sha256"]).is_file()}
        hosts = {_host(u) for u in urls}
        gates = {host: threading.Semaphore(self.policy.per_host) for host in hosts}
        pending: list[dict] = []
        lock = threading.Lock()
        self.parts_dir.mkdir(parents=True, exist_ok=True)

        def one(url: str) -> dict:
            old = before.get(url)
            if old is not None and not (old["etag"] or old["last_modified"]):
                return {**old, "downloaded": False}  # no validator: never asked again
            with gates[_host(url)]:
                row = self._fetch_one(client, url, old)
            full: list[dict] = []
            with lock:
                self.progress.advance(1)
                if row["problem"] is None and row["downloaded"]:
                    pending.append(row)
                    if len(pending) >= self.policy.part_rows:
                        full = pending[:]
                        pending.clear()
            if full:  # written outside the lock: the other threads go on fetching
                self._save_part(full)
            return row

        rows: list[dict] = []
        if urls:  # no client (nor httpx import) for a catalog of local photos
            self.progress.start("photo URLs", len(urls))
            with _client(self.policy) as client, \
                    ThreadPoolExecutor(max_workers=self.policy.workers) as pool:
                rows = list(pool.map(one, urls))
        if pending:
            self._save_part(pending)
        self._compact()
        return pa.Table.from_pylist(rows, _state_schema())

    def _save_part(self, rows: list[dict]) -> None:
        import pyarrow as pa

        name = f"{time.time_ns():020d}-{os.getpid()}-{threading.get_ident()}.parquet"
        write_parquet(pa.Table.from_pylist(rows, _state_schema()), self.parts_dir / name)

    def _compact(self) -> None:
        """Fold the parts into urls.parquet, then drop them."""
        parts = sorted(self.parts_dir.glob("*.parquet"))
        if not parts:
            return
        write_parquet(self.known(), self.state_path)
        for part in parts:
            remove(part)

    # -- one URL -----------------------------------------------------------------------------
    def _fetch_one(self, client: httpx.Client, url: str, old: dict | None) -> dict:
        policy = self.policy
        headers: dict[str, str] = {}
        if old is not None and old["etag"]:
            headers["If-None-Match"] = old["etag"]
        if old is not None and old["last_modified"]:
            headers["If-Modified-Since"] = old["last_modified"]
        row = {"url": url, "sha256": None, "width": None, "height": None, "etag": None,
               "last_modified": None, "problem": None, "downloaded": False}
        for attempt in range(policy.retries + 1):
            try:
                return {**row, **self._get(client, url, headers, old)}
            except FetchFailed as exc:
                if not exc.retry or attempt == policy.retries:
                    return {**row, "problem": exc.reason}
                time.sleep(policy.backoff * 2 ** attempt)
        raise AssertionError("unreachable")

    def _get(self, client: httpx.Client, url: str, headers: dict[str, str], old: dict | None
             ) -> dict:
        """GET `url` (the client follows redirects); store the body; return the row's fields.
        A kept-alive connection the server closed as it was reused is tried once afresh."""
        import httpx

        deadline = time.monotonic() + self.policy.download_timeout
        for again in (False, True):
            try:
                with client.stream("GET", url, headers=headers) as response:
                    status = response.status_code
                    if status == 304 and old is not None:
                        return {**old, "downloaded": False}
                    if status >= 500:
                        raise FetchFailed(f"HTTP {status}", retry=True)
                    if status != 200:
                        raise FetchFailed(f"HTTP {status}")
                    return self._store(response, deadline)
            except httpx.RemoteProtocolError as exc:  # no answer: once more, on a new one
                if again:
                    raise self._failure(exc, url) from None
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise self._failure(exc, url) from None
        raise AssertionError("unreachable")

    def _store(self, response: httpx.Response, deadline: float) -> dict:
        import httpx

        policy = self.policy
        kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        # Storage buckets often serve photos as untyped bytes: those are decoded below, as
        # every photo is; a page or a JSON error is refused here.
        if not kind.startswith("image/") and kind not in UNTYPED:
            raise FetchFailed(f"not an image: {kind}")
        cap = f"larger than {policy.max_bytes / (1 << 20):g} MB"
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > policy.max_bytes:
            raise FetchFailed(cap)
        digest, size = hashlib.sha256(), 0
        incoming = self.root / "objects" / f".incoming-{secrets.token_hex(8)}"
        incoming.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(incoming, "wb") as out:
                try:
                    for block in response.iter_bytes():  # as read: the deadline holds
                        size += len(block)
                        if size > policy.max_bytes:
                            raise FetchFailed(cap)
                        if time.monotonic() > deadline:  # not tried again: it would drip
                            raise FetchFailed(f"download took over "
                                              f"{policy.download_timeout:g} s")
                        digest.update(block)
                        out.write(block)
                except httpx.HTTPError as exc:  # the body cut off or stalled: tried again
                    raise self._failure(exc, str(response.url), in_body=True) from None
                out.flush()
                os.fsync(out.fileno())
            if size == 0:
                raise FetchFailed("empty body")
            try:
                width, height = check_image(incoming, policy.max_pixels)
            except ImageRejected as exc:
                raise FetchFailed(str(exc)) from None
            sha = digest.hexdigest()
            target = self.object_path(sha)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(incoming, target)  # same content, same name: a race is harmless
        finally:
            incoming.unlink(missing_ok=True)
        return {"sha256": sha, "width": width, "height": height,
                "etag": response.headers.get("ETag"),
                "last_modified": response.headers.get("Last-Modified"), "downloaded": True}

    def _failure(self, exc: Exception, url: str, in_body: bool = False) -> FetchFailed:
        """The one-line reason for one of httpx's exceptions. Time-outs are tried again, and
        so is a body cut off; a refused or failed connection is not."""
        import httpx

        policy, cause = self.policy, _os_error(exc)
        if isinstance(exc, httpx.TooManyRedirects):
            return FetchFailed("too many redirects")
        if isinstance(exc, (httpx.InvalidURL, httpx.UnsupportedProtocol)):
            return FetchFailed(f"not an http(s) URL: {url[:120]}")
        if isinstance(exc, httpx.ConnectTimeout):
            return FetchFailed(f"connect timed out after {policy.connect_timeout:g} s",
                               retry=True)
        if isinstance(exc, httpx.TimeoutException):
            return FetchFailed(f"timed out after {policy.read_timeout:g} s", retry=True)
        if isinstance(exc, httpx.ConnectError):
            if isinstance(cause, ConnectionRefusedError):
                return FetchFailed("connection refused")
            return FetchFailed(f"cannot connect: {_reason(cause or exc)}")
        return FetchFailed(f"connection failed: {_reason(cause or exc)}", retry=in_body)


def _host(url: str) -> str:
    """The URL's host, for the per-host limit; "" for one too malformed to split (its
    fetch then fails with the row's reason, "not an http(s) URL")."""
    try:
        return urlsplit(url).netloc
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return ""


def _client(policy: FetchPolicy) -> httpx.Client:
    """One client for a run, shared by its threads: a connection each, kept alive."""
    import httpx

    return httpx.Client(
        headers={"User-Agent": "pinshop", "Accept": "image/*"},
        timeout=httpx.Timeout(policy.read_timeout, connect=policy.connect_timeout),
        limits=httpx.Limits(max_connections=policy.workers,
                            max_keepalive_connections=policy.workers),
        follow_redirects=True, max_redirects=policy.max_redirects)


def _os_error(exc: BaseException) -> OSError | None:
    """The socket error under httpx's and httpcore's wrappers, if there is one."""
    seen: BaseException | None = exc
    while seen is not None and not isinstance(seen, OSError):
        seen = seen.__cause__ or seen.__context__
    return seen


def _reason(exc: BaseException) -> str:
    return (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)[:120]
