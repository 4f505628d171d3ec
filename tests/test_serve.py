"""`pinshop serve`: a real server process on loopback, answering over HTTP."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
TOKEN = "test-token-" + uuid.uuid4().hex


class Server:
    def __init__(self, url: str, workspace: Path) -> None:
        self.url, self.workspace = url, workspace

    def request(self, method: str, path: str, body: bytes | Iterable[bytes] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """(status, parsed JSON body) for one request; an iterable body is sent chunked."""
        req = urllib.request.Request(self.url + path, data=body, method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=120) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        return status, json.loads(raw) if raw else None

    def get(self, path: str) -> tuple[int, Any]:
        return self.request("GET", path)

    def patch(self, path: str, data: dict[str, Any], token: str | None = TOKEN
              ) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.request("PATCH", path, json.dumps(data).encode(), headers)

    def post(self, path: str, data: Any) -> tuple[int, Any]:
        return self.request("POST", path, json.dumps(data).encode(),
                            {"Content-Type": "application/json"})

    def upload(self, data: bytes, name: str = "photo.jpg", query: str = ""
               ) -> tuple[int, Any]:
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
                f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
        return self.request("POST", "/match?k=3" + query, body,
                            {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def pieces(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """`data` as a chunked request body."""
    for start in range(0, len(data), size):
        yield data[start:start + size]


def bomb_png() -> bytes:
    """A PNG of 9000 x 5000 one-bit pixels: a few KB of file, 45 million pixels."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (9000, 5000)).save(buffer, "PNG")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(demo_workspace: Path, models_cache: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `pinshop serve` process for the module, on a private copy of the demo workspace
    (the tests write prices into it)."""
    import pinshop_cli
    from pinshop_cli.synth.events import SynthConfig, generate_for_workspace

    workspace = tmp_path_factory.mktemp("serve") / "ws"
    shutil.copytree(demo_workspace, workspace, ignore=shutil.ignore_patterns(".lock"))
    events = workspace.parent / "events.parquet"  # a few shoppers, for /recommend
    generate_for_workspace(events, SynthConfig(users=20, events=1000), workspace)
    with pinshop_cli.open(workspace) as shop:
        shop.ingest_events(events)
        # A change a killed server logged and never folded: this server folds it first.
        from pinshop_cli.retrieval.updates import log_changes

        log_changes(shop.ws, [shop.prepare_update("P020", price=77)])
    port = free_port()
    env = {**os.environ, "PINSHOP_OFFLINE": "1", "PINSHOP_MODELS": str(models_cache),
           "PINSHOP_TOKEN": TOKEN}
    log = (workspace.parent / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-c", "from pinshop_cli.commands.main import run; run()", "serve",
         "-w", str(workspace), "--port", str(port), "--model", "smollm2"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    served = Server(f"http://127.0.0.1:{port}", workspace)
    deadline = time.monotonic() + 180
    while True:
        try:
            if served.get("/health")[0] == 200:
                break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("pinshop serve did not start: "
                        + (workspace.parent / "server.log").read_text()[-2000:])
        time.sleep(0.3)
    yield served
    process.terminate()  # SIGTERM: uvicorn finishes, then re-raises the signal it caught
    assert process.wait(timeout=30) == 0
    log.close()
    assert "Traceback" not in (workspace.parent / "server.log").read_text()
    # The module's PATCHes were folded into catalog.parquet on the way out.
    from pinshop_cli.retrieval.updates import ChangeLog
    from pinshop_cli.workspace.layout import Workspace

    assert ChangeLog(Workspace.open(workspace)).rows() == 0


def test_health_and_docs(server: Server) -> None:
    assert server.get("/health") == (200, {"status": "ok"})
    assert server.request("HEAD", "/health")[0] == 200  # health checkers probe so (was 405)
    status, spec = server.get("/openapi.json")
    assert status == 200 and {"/search", "/match", "/products/{product_id}",
                              "/products/{product_id}/photo", "/chat"} <= set(spec["paths"])
    # The docs page loads nothing from elsewhere (FastAPI's took Swagger from a CDN: blank
    # offline); the web page test renders it.
    with urllib.request.urlopen(server.url + "/docs", timeout=30) as response:
        page = response.read().decode()
    assert "/openapi.json" in page and "http://" not in page and "https://" not in page


def test_a_port_in_use_or_no_workspace_is_an_error_before_serving_is_announced(
        server: Server, tmp_path: Path) -> None:
    port = server.url.rsplit(":", 1)[1]
    errors = []
    for args in (["-w", str(server.workspace), "--port", port],
                 ["-w", str(tmp_path / "none"), "--port", "0"]):
        done = subprocess.run([sys.executable, "-m", "pinshop_cli.commands.main", "serve",
                               *args], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PINSHOP_OFFLINE": "1"})
        assert done.returncode == 1, done.stderr
        errors.append(done.stderr.strip())
    assert errors[0] == f"Error: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert errors[1].startswith("Error: no workspace at") and "\n" not in errors[1]
    assert server.get("/health")[0] == 200


def test_search_has_the_text_block_shape_and_caps_k(server: Server) -> None:
    status, body = server.get("/search?q=plywood%20chair&k=3&category=chair")
    assert status == 200
    assert 0 < len(body["matches"]) <= 3
    assert {"id", "title", "price", "category", "score"} <= set(body["matches"][0])
    assert all(m["category"] == "chair" for m in body["matches"])
    status, body = server.get("/search?q=sofa&category=spaceship")  # says which filter
    assert status == 200 and body["matches"] == [] and any(
        n.startswith("no product is in category 'spaceship'") for n in body["notes"])
    status, body = server.get("/search?q=chair&k=1000")
    assert status == 422 and "k" in body["error"]
    status, body = server.get("/search?q=" + "a" * 5000)
    assert status == 422 and "\n" not in body["error"]


def test_concurrent_searches_answered_together_match_each_alone(server: Server) -> None:
    """Searches queued while the Shop is busy are answered in one call (serve/batching.py):
    each gets what it gets alone, its own filters included."""
    from concurrent.futures import ThreadPoolExecutor

    paths = [f"/search?q={q}&k=4" + ("&max_price=300" if n % 2 else "")
             for n, q in enumerate(["plywood+chair", "green+sofa", "oak+table", "floor+lamp",
                                    "linen+throw", "bar+stool", "vase", "rug"])]
    alone = [server.get(path) for path in paths]
    bad = "/search?q=chair&max_price=nan"  # refused in a batch, alone: the others answer
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(server.get, paths + [bad] + paths))
    status, body = together.pop(len(paths))
    assert status == 400 and body["error"] == "max price must be a finite number, not nan"
    ids = [[m["id"] for m in body["matches"]] for _, body in alone]
    assert [[m["id"] for m in body["matches"]] for _, body in together] == ids * 2


def test_match_answers_one_pin_and_bad_uploads_are_one_line_errors(server: Server) -> None:
    status, pin = server.upload((SAMPLE / "pins" / "7303782.jpg").read_bytes())
    assert status == 200 and pin["image"] == "photo.jpg" and pin["objects"]
    obj = pin["objects"][0]
    assert len(obj["box"]) == 4 and {"id", "title", "price", "score"} <= set(obj["matches"][0])
    # A filter that leaves nothing says so, as /search does.
    status, pin = server.upload((SAMPLE / "pins" / "7303782.jpg").read_bytes(),
                                query="&category=zzz")
    assert status == 200 and not any(o["matches"] for o in pin["objects"])
    assert any("zzz" in note for note in pin["notes"]), pin["notes"]
    status, body = server.upload(b"this is not a photo")
    assert status == 400 and body["error"].startswith("not a photo")
    status, body = server.upload(b"\xff\xd8" + b"\0" * (11 * 2**20))
    assert status == 413
    boundary = uuid.uuid4().hex  # a chunked upload: no Content-Length to refuse it by
    status, body = server.request("POST", "/match", pieces(
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg"
        f"\"\r\n\r\n".encode() + b"\xff\xd8" + b"\0" * (11 * 2**20)),
        {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 413 and body["error"] == "the body is over 10,304 KiB", body
    status, body = server.upload(bomb_png(), "bomb.png")
    assert status == 413 and "pixels" in body["error"]
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg"
            f"\"\r\n\r\n").encode() + (SAMPLE / "pins" / "7303782.jpg").read_bytes() + b"\r\n"
    status, body = server.request(  # two photos: only the last was matched, unsaid
        "POST", "/match", part + part + f"--{boundary}--\r\n".encode(),
        {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 400 and body["error"] == \
        "send one photo a request: this one has 2 image parts", body
    # A photo sent as the raw body, or nothing sent: the advice was to send JSON.
    for raw, kind in ((b"\xff\xd8", "image/jpeg"), (None, None)):
        status, body = server.request("POST", "/match", raw,
                                      {"Content-Type": kind} if kind else {})
        assert status == 422 and "multipart/form-data part named image" in body["error"]
        assert "JSON" not in body["error"], body
    assert server.get("/health")[0] == 200  # still up


def test_products_similar_complete_recommend(server: Server) -> None:
    status, product = server.get("/products/P001")
    assert status == 200 and product["id"] == "P001" and product["title"]
    assert product["score"] is None  # no search ranked it (it read 0.0, a search's worst)
    # A photo is the URL that serves it, never a path on the server's disk.
    assert product["image"] == "/products/P001/photo"
    with urllib.request.urlopen(server.url + product["image"], timeout=60) as response:
        assert response.headers["content-type"] == "image/jpeg" and response.read(2) == \
            b"\xff\xd8"
    status, similar = server.get("/similar/P001?k=2")
    assert all(item["image"].startswith("/products/") for item in similar["items"]
               if item["image"])
    assert str(server.workspace.parent) not in json.dumps(similar)
    status, body = server.get("/products/NOPE")
    assert status == 404 and "NOPE" in body["error"]
    status, body = server.get("/similar/P001?cheaper=true&k=3")
    assert status == 200 and body["reference"] == "P001"
    assert all(item["price"] < product["price"] for item in body["items"])
    assert server.get("/complete/P001")[0] == 200
    # A client names products only: a file beside the server (it runs in this process's
    # directory) is not read, nor told apart from a missing one.
    beside = next(path.name for path in sorted(Path.cwd().iterdir()) if path.is_file())
    for endpoint in ("similar", "complete"):
        for name in (beside, "no-such-file.jpg"):
            status, body = server.get(f"/{endpoint}/{name}")
            assert status == 404 and body["error"] == f"no product {name!r} in the catalog"
    status, body = server.get("/recommend/u1?k=2")  # the demo's users are u000001, ...
    assert status == 200 and body["notes"] == ["user 'u1' has no events: popular items"]
    assert len(body["recommendations"]) == 2 and body["recommendations"][0]["item_id"]
    # The browsing session a client holds, with or without a user (recommend --session).
    looked = [{"item_id": "P001", "event": "view"}, {"item_id": "P002", "event": "save"}]
    for who in ({"user": "u1"}, {}):
        status, body = server.post("/recommend", {"session": looked, "k": 3, **who})
        found = body["recommendations"]
        assert status == 200 and len(found) == 3, body
        assert not {"P001", "P002"} & {r["item_id"] for r in found}  # being looked at
        assert any(r["reason"].startswith("because you looked at ") for r in found)
    # An id the catalog does not hold is said, as the CLI says it (it was dropped unsaid).
    status, body = server.post("/recommend", {"session": [*looked, {"item_id": "GONE",
                                                                    "event": "view"}]})
    assert status == 200 and body["recommendations"]
    assert [note for note in body["notes"] if "not in the catalog" in note], body["notes"]
    status, body = server.post("/recommend", {"session": [{"item_id": "P001",
                                                            "event": "stare"}]})
    assert status == 400 and body["error"] == (
        "session event 1: unknown event type 'stare'")
    assert server.post("/recommend", {"session": []}) == (400, {
        "error": "the session has no events: give at least one (item_id, event), or a user"})
    for k in (True, "3", 2.5):  # true was read as k = 1
        status, body = server.post("/recommend", {"session": looked, "k": k})
        assert status == 422 and "k" in body["error"], (k, body)
    assert server.get("/recommend/%20")[0] == 400  # a blank user id


def on_disk(workspace: Path, ids: list[str]) -> list[tuple[Any, ...]]:
    """(price, sale_price, availability) of `ids` as a new Shop on `workspace` reads them
    (catalog.parquet and the change log not yet folded into it)."""
    import pinshop_cli

    with pinshop_cli.open(workspace) as shop:
        return [(float(p.price), p.sale_price and float(p.sale_price), p.availability)
                for p in map(shop.product, ids)]


def test_live_update_needs_the_token_and_shows_in_the_next_search(server: Server) -> None:
    query = "/search?q=plywood%20dining%20chair&k=5&max_price=200"
    ids = [m["id"] for m in server.get(query)[1]["matches"]]
    assert "P001" in ids
    assert server.patch("/products/P001", {"price": 999}, token=None)[0] == 401
    assert server.patch("/products/P001", {"price": 999}, token="wrong")[0] == 401
    status, body = server.patch("/products/P001", {"price": "lots"})
    assert status == 400 and "price" in body["error"]
    for tiny in (0.001, 1e-300):  # stored as 0.00: the product became free
        status, body = server.patch("/products/P001", {"price": tiny})
        assert status == 400 and "has more than 2 decimals" in body["error"], body
    assert server.patch("/products/NOPE", {"price": 1})[0] == 404
    for key in ("product_id", "self", "title"):  # only the documented fields
        status, body = server.patch("/products/P001", {key: "x"})
        assert status == 400 and body["error"].startswith(f"unknown field '{key}'"), body
    status, body = server.request("PATCH", "/products/P001", b"{price: 1", {
        "Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
    assert status == 400 and body["error"].startswith("the body is not valid JSON ("), body
    status, body = server.request("PATCH", "/products/P001", b'{"price": 1}', {
        "Content-Type": "text/plain", "Authorization": f"Bearer {TOKEN}"})
    sent_as = "the body was sent as {}: send a JSON object with Content-Type: application/json"
    assert (status, body["error"]) == (422, sent_as.format("text/plain")), body
    # Fields of a body not sent as JSON were "Field required" (`message`, `session`).
    for path, kind in (("/chat", "text/plain"),
                       ("/recommend", "application/x-www-form-urlencoded")):
        status, body = server.request("POST", path, b'{"message": "hi"}', {"Content-Type": kind})
        assert (status, body["error"]) == (422, sent_as.format(kind)), body
    big = json.dumps({"session": [], "user": "x" * (2 * 2**20)}).encode()
    status, body = server.request("POST", "/recommend", big,  # read whole before: 0.6 GB
                                  {"Content-Type": "application/json"})
    assert status == 413 and body["error"] == "the body is over 1,024 KiB", body
    status, body = server.request("POST", "/recommend", pieces(big),  # no Content-Length:
                                  {"Content-Type": "application/json"})  # read whole too
    assert status == 413 and body["error"] == "the body is over 1,024 KiB", body
    # The connection closes after a 413 (uvicorn kept it, reading any body to its end).
    import http.client
    from urllib.parse import urlsplit

    where = urlsplit(server.url)
    connection = http.client.HTTPConnection(where.hostname or "", where.port, timeout=60)
    connection.request("POST", "/recommend", pieces(big), {"Content-Type": "application/json"},
                       encode_chunked=True)
    refused = connection.getresponse()
    assert (refused.status, refused.getheader("Connection")) == (413, "close")
    connection.close()
    status, body = server.get("/search?q=%20%20%20")  # it answered arbitrary matches
    assert status == 400 and body["error"] == "q is blank: pass the words to search for"

    status, product = server.patch("/products/P001", {"price": 999, "sale_price": 899,
                                                      "availability": "out of stock"})
    assert status == 200
    assert (product["price"], product["sale_price"], product["availability"]) == (
        999, 899, "out_of_stock")
    assert "P001" not in [m["id"] for m in server.get(query)[1]["matches"]]
    assert server.get("/products/P001")[1]["availability"] == "out_of_stock"
    # Persisted through the writer path (the change log: a new Shop reads it on top of
    # catalog.parquet), and no index became stale.
    assert on_disk(server.workspace, ["P001"]) == [(999.0, 899.0, "out_of_stock")]
    # The price history gets it behind the response (a snapshot is batched, ~0.5 s).
    from pinshop_cli.sql import run_sql

    deadline = time.monotonic() + 60
    while True:
        history = run_sql("SELECT price::DOUBLE, availability, title FROM price_history "
                          "WHERE id = 'P001' ORDER BY seen_at DESC LIMIT 1",
                          server.workspace).rows
        if [tuple(r)[:2] for r in history] == [(999.0, "out_of_stock")] or \
                time.monotonic() > deadline:
            break
        time.sleep(0.2)
    # With its title, as an ingest's rows have it (live rows had none).
    assert [tuple(r) for r in history] == [(999.0, "out_of_stock",
                                            "Oslo Bent Plywood Dining Chair")]
    from pinshop_cli.index.status import index_status

    assert not [s.name for s in index_status(server.workspace) if s.stale]
    server.patch("/products/P001", {"price": 149, "sale_price": None})
    assert "P001" in [m["id"] for m in server.get(query)[1]["matches"]]


def test_a_burst_of_updates_all_reach_the_change_log(server: Server) -> None:
    """Concurrent PATCHes are saved outside the server's lock (they share appends): every
    one is on disk and served."""
    from concurrent.futures import ThreadPoolExecutor

    ids = [f"P0{n:02d}" for n in range(10, 18)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda pid: server.patch(f"/products/{pid}",
                                                         {"sale_price": 11.5}), ids))
    assert [status for status, _ in answers] == [200] * len(ids)
    assert [row[1] for row in on_disk(server.workspace, ids)] == [11.5] * len(ids)
    assert all(server.get(f"/products/{pid}")[1]["sale_price"] == 11.5 for pid in ids)


def test_live_changes_fold_into_the_catalog_file(copy_workspace: Any) -> None:
    """A Shop's changes go to the log (catalog.parquet untouched), each field's last value
    kept; closing the Shop folds them into catalog.parquet and empties the log. A log
    written for a catalog an ingest has since replaced is ignored."""
    import duckdb

    import pinshop_cli
    from pinshop_cli.retrieval.updates import ChangeLog

    root = copy_workspace()
    catalog = root / "catalog.parquet"
    before = catalog.read_bytes()
    with pinshop_cli.open(root) as shop:
        shop.update_product("P005", price=12)
        shop.update_product("P005", availability="preorder")
        assert catalog.read_bytes() == before
        assert on_disk(root, ["P005"])[0][::2] == (12.0, "preorder")
    assert duckdb.sql(f"SELECT price::DOUBLE, availability FROM '{catalog}' WHERE id = "
                      "'P005'").fetchall() == [(12.0, "preorder")]
    log = ChangeLog(pinshop_cli.open(root).ws)
    assert log.pending().num_rows == 0 and log.rows() == 0
    with pinshop_cli.open(root) as shop:  # logged the way a save does, with no fold after
        from pinshop_cli.retrieval.updates import log_changes

        log_changes(shop.ws, [shop.prepare_update("P006", price=1)])
    assert log.pending().column("id").to_pylist() == ["P006"]
    assert on_disk(root, ["P006"])[0][0] == 1.0
    from pinshop_cli.workspace.storage import copy_to_parquet

    with duckdb.connect() as con:  # a new catalog, as an ingest writes it
        con.execute(f"CREATE TABLE c AS SELECT * FROM '{catalog}'")
        con.execute("UPDATE c SET title = title || ' (new feed)' WHERE id = 'P001'")
        copy_to_parquet(con, "SELECT * FROM c", catalog, checked=True)
    assert log.pending().num_rows == 0 and on_disk(root, ["P006"])[0][0] != 1.0


def test_a_killed_servers_changes_reach_the_history_when_the_next_server_starts(
        server: Server, copy_workspace: Any) -> None:
    """`pinshop serve` folds a log left behind before serving (the module's server started
    on one); it was recorded at the next ingest only, or at a new server's stop if that
    server changed something itself."""
    import pinshop_cli
    from pinshop_cli.retrieval.updates import ChangeLog, fold_left_behind, log_changes
    from pinshop_cli.sql import run_sql

    assert run_sql("SELECT price::DOUBLE FROM price_history WHERE id = 'P020' ORDER BY "
                   "seen_at DESC LIMIT 1", server.workspace).rows == [(77.0,)]
    root = copy_workspace()
    newest = "SELECT price::DOUBLE FROM price_history WHERE id = 'P006' ORDER BY seen_at DESC"
    with pinshop_cli.open(root) as shop:  # logged, and the process killed before its fold
        log_changes(shop.ws, [shop.prepare_update("P006", price=1)])
        ws = shop.ws
    assert run_sql(newest, root).rows[0] != (1.0,)
    assert fold_left_behind(ws)
    assert run_sql(newest, root).rows[0] == (1.0,) and ChangeLog(ws).rows() == 0
    assert not fold_left_behind(ws)  # nothing left


def test_a_shops_own_saves_do_not_make_it_reload(copy_workspace: Any) -> None:
    """Shop.refresh lets go of the catalog for another process's write, not for its own
    saves, concurrent ones included (a reload costs a full catalog load)."""
    from concurrent.futures import ThreadPoolExecutor

    import pinshop_cli
    from pinshop_cli.retrieval.updates import ProductChange, write_changes

    with pinshop_cli.open(copy_workspace()) as shop:
        changes = [shop.prepare_update(f"P0{n:02d}", price=5 + n) for n in range(10, 16)]
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(shop.save_update, changes))
        assert len(shop.apply_saved()) == 6
        assert not shop.refresh() and shop.product("P012").price == 17
        write_changes(shop.ws, [ProductChange("P012", 18.0)])  # as another process would
        assert shop.refresh() and shop.product("P012").price == 18


def test_a_write_by_another_process_is_picked_up_without_a_restart(server: Server) -> None:
    """This test process writes the catalog through the library, as a re-ingest would; the
    server's next answer reads it (Shop.refresh sees the catalog's new stat)."""
    from pinshop_cli.retrieval.updates import ProductChange, write_changes
    from pinshop_cli.workspace import Workspace

    before = server.get("/products/P002")[1]["price"]
    write_changes(Workspace.open(server.workspace), [ProductChange("P002", before + 1)])
    assert server.get("/products/P002")[1]["price"] == before + 1


def test_chat_streams_server_sent_events_with_a_session(server: Server) -> None:
    def ask(message: str, session: str | None) -> list[tuple[str, Any]]:
        req = urllib.request.Request(
            server.url + "/chat", method="POST",
            data=json.dumps({"message": message, "session": session}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=300) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            blocks = response.read().decode().strip().split("\n\n")
        return [(b.split("\n")[0].removeprefix("event: "),
                 json.loads(b.split("\n")[1].removeprefix("data: "))) for b in blocks]

    events = ask("a chair under 200", None)
    assert events[0][0] == "session" and events[-1][0] == "reply"
    session = events[0][1]["session"]
    reply = events[-1][1]
    assert set(reply) >= {"answer", "intent", "products"}
    assert all(p["price"] is None or p["price"] <= 200 for p in reply["products"])
    # Another process rewrites the catalog: the server reloads it, and the session keeps
    # its dialogue ("cheaper" reads against the chair shown first).
    from pinshop_cli.retrieval.updates import ProductChange, write_changes
    from pinshop_cli.workspace import Workspace

    write_changes(Workspace.open(server.workspace), [ProductChange("P003", 1234)])
    followup = ask("cheaper", session)[-1]
    assert followup[0] == "reply" and followup[1]["intent"]["category"] == "chair"
    assert followup[1]["intent"]["max_price"] < reply["products"][0]["price"]
    # A question past the chat's cap is refused before a stream or a model starts.
    status, body = server.post("/chat", {"message": "x" * 3000, "session": session})
    assert status == 422 and "at most 2000 characters" in body["error"], body


def test_a_chat_turn_lets_other_requests_in_while_it_generates(copy_workspace: Any) -> None:
    """A turn holds the Shop only between the model's pieces: while the model is stuck
    mid-answer, another request gets the Shop; the turn then finishes with its reply."""
    import threading

    import pinshop_cli
    from pinshop_cli.serve.chat import ChatSessions
    from pinshop_cli.serve.guard import ServedShop
    from pinshop_cli.testing import StuckChatModel

    stuck = StuckChatModel()
    with pinshop_cli.open(copy_workspace()) as shop:
        shop._chat_models[("stuck", 4096, None)] = stuck  # noqa: SLF001
        served = ServedShop(shop, "token")
        events: list[str] = []
        chat = threading.Thread(target=lambda: events.extend(
            ChatSessions(served, "stuck").stream("a chair under 200", None)))
        chat.start()
        assert stuck.generating.wait(120)
        found: list[str] = []

        def other_request() -> None:
            with served.using() as current:
                found.append(current.product("P001").id)

        other = threading.Thread(target=other_request)
        other.start()
        other.join(120)
        assert found == ["P001"] and chat.is_alive()
        stuck.release.set()
        chat.join(120)
    assert events[0].startswith("event: session") and events[-1].startswith("event: reply")


def onto_3_and_4(reading: int, writing: int) -> None:
    """In the child: `reading` as fd 3, `writing` as fd 4 (by way of fds above 9, so neither
    overwrites the other)."""
    import fcntl

    high_reading, high_writing = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (reading, writing))
    os.dup2(high_reading, 3)
    os.dup2(high_writing, 4)


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (fd 3 in, fd 4 out;
    NUL-terminated JSON): no driver, no websocket library, nothing on the network."""

    FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--remote-debugging-pipe", "--window-size=1280,900"]

    def __init__(self, profile: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # The browser reads commands on its fd 3 and writes answers on its fd 4: dup2 makes
        # those two inheritable, every other pipe end closes on exec.
        self.process = subprocess.Popen(
            [CHROMIUM, *self.FLAGS, f"--user-data-dir={profile}", "about:blank"],
            close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=lambda: onto_3_and_4(to_browser_r, from_browser_w))
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer, self._next_id, self.session = b"", 0, None

    def send(self, method: str, **params: Any) -> Any:
        """One command; its result (events that come first are dropped)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._from_browser, 1 << 20)
                assert chunk, "chromium closed the pipe"
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            answer = json.loads(raw)
            if answer.get("id") == self._next_id:
                assert "error" not in answer, answer["error"]
                return answer["result"]

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", url=url)["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]

    def evaluate(self, expression: str) -> Any:
        return self.send("Runtime.evaluate", expression=expression,
                         returnByValue=True)["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 120) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(expression)):
            assert time.monotonic() < deadline, f"timed out waiting for {expression}"
            time.sleep(0.2)
        return value

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        os.close(self._to_browser)
        os.close(self._from_browser)


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(not Path(CHROMIUM).exists(),
                    reason="Debian's chromium is not installed (apt-get install chromium)")
def test_web_page_in_headless_chromium(server: Server, tmp_path: Path) -> None:
    """Upload a photo: regions are boxed and product cards shown; ask the chat: it streams an
    answer. A screenshot is kept beside the test's files."""
    import base64

    browser = Browser(tmp_path / "profile")
    try:
        browser.open(server.url + "/")
        browser.wait_for("document.readyState === 'complete' && !!document.getElementById('file')")
        browser.send("DOM.enable")
        root = browser.send("DOM.getDocument")["root"]["nodeId"]
        file_input = browser.send("DOM.querySelector", nodeId=root, selector="#file")["nodeId"]
        browser.send("DOM.setFileInputFiles", nodeId=file_input,
                     files=[str(SAMPLE / "pins" / "7303782.jpg")])
        boxes = browser.wait_for("document.querySelectorAll('#photo .box').length")
        cards = browser.evaluate("document.querySelectorAll('#cards .card').length")
        assert boxes >= 1 and cards >= 1
        assert "% similar" in browser.evaluate("document.querySelector('#cards .meta').textContent")
        # A product without a photo asks for none (every card requested one: 404s, broken
        # images), and a sale price above the price is not what the shopper pays.
        shown = browser.evaluate(
            "(() => { const c = card({id: 'X', title: 'Tee', price: 7, sale_price: 9, "
            "currency: 'EUR', image: null, score: 0.5}); "
            "return [c.querySelectorAll('img').length, c.textContent]; })()")
        assert shown[0] == 0 and "no photo" in shown[1] and "7.00 EUR" in shown[1], shown

        browser.evaluate("document.getElementById('message').value = 'a chair under 200';"
                         "document.getElementById('ask').requestSubmit()")
        answer = browser.wait_for("document.querySelector('.answer[data-done]')?.textContent")
        assert answer.strip()
        browser.open(server.url + "/docs")  # every endpoint, from /openapi.json
        sections = browser.wait_for("document.querySelectorAll('#paths h2').length > 8 && "
                                    "document.querySelector('#paths').textContent")
        assert "/search" in sections and "/recommend" in sections
        browser.open(server.url + "/")
        shot = browser.send("Page.captureScreenshot", format="png")["data"]
        screenshot = tmp_path / "serve-page.png"
        screenshot.write_bytes(base64.b64decode(shot))
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        browser.close()


@pytest.mark.parametrize("argv", [["serve", "--help"], ["serve", "--port", "nope"]])
def test_serve_help_and_argument_errors_import_no_web_stack_or_torch(argv: list[str]) -> None:
    code = ("import sys\nfrom pinshop_cli.commands.main import app\n"
            f"try:\n    app({argv!r})\nexcept SystemExit as exc:\n    code = exc.code\n"
            "heavy = [m for m in ('torch', 'fastapi', 'uvicorn') if m in sys.modules]\n"
            "print('HEAVY', heavy, 'EXIT', code)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY [] EXIT" in done.stdout, done.stdout + done.stderr
    assert done.stdout.strip().endswith("EXIT 0" if "--help" in argv else "EXIT 2")


def test_errors_for_a_client_name_this_machines_folders_by_what_they_are(tmp_path: Path):
    """A user without events got "no events in /srv/shop/data: ...": the server's layout,
    to any client. The workspace, the models folder and the home folder are named."""
    from pinshop_cli.serve.guard import ServedShop
    from pinshop_cli.shop import Shop
    from pinshop_cli.workspace import Workspace

    Workspace.open(tmp_path / "ws", create=True)
    served = ServedShop(Shop(tmp_path / "ws", models_dir=str(tmp_path / "models")), "token")
    assert served.public(f"no events in {tmp_path / 'ws'}: run `pinshop ingest-events FILE`"
                         ) == "no events in the workspace: run `pinshop ingest-events FILE`"
    assert served.public(f"no chat model at {tmp_path / 'models'}/qwen.gguf") == \
        "no chat model at the models folder/qwen.gguf"
    assert served.public(f"{Path.home()}/notes.txt is missing") == "~/notes.txt is missing"
    # Whole path parts only, and a relative --models-dir by its absolute path alone.
    for text in (f"{Path.home()}x/photo.jpg", "run `pinshop models list`", "a .gguf file"):
        assert served.public(text) == text
    relative = ServedShop(Shop(tmp_path / "ws", models_dir="models"), "token")
    assert relative.public("run `pinshop models list`") == "run `pinshop models list`"
    assert relative.public(f"{Path.cwd() / 'models'}/x.gguf is missing") == \
        "the models folder/x.gguf is missing"


def test_a_chat_model_that_is_not_here_is_said_when_the_server_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`serve` started quietly without its chat model: a client's first POST /chat was the
    first sign."""
    from pinshop_cli.serve.server import chat_model_note

    monkeypatch.setenv("PINSHOP_OFFLINE", "1")
    empty = str(tmp_path / "models")
    assert chat_model_note("qwen2.5-coder-1.5b", empty) == (
        "chat model qwen2.5-coder-1.5b is not in the models folder and models are not "
        "fetched offline: POST /chat will answer with an error (`pinshop models pull "
        "qwen2.5-coder-1.5b` where the hub is reachable)")
    assert "neither registered nor a .gguf file" in chat_model_note("nope", empty)
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF")
    assert chat_model_note(str(gguf), empty) is None
    # Chunk packages installed: joined on first use, offline too (plumbing: two tiny
    # packages standing in for the 22 of a real model).
    from pinshop_cli.models.chunks import ChunkedMirror
    from pinshop_cli.models.registry import register, unregister
    from pinshop_cli.models.resolve import ModelFile
    from pinshop_cli.models.spec import ModelSpec

    for n in (1, 2):
        (tmp_path / f"tiny_chat_model_part{n}.py").write_text(
            f"def get_part_path():\n    return {str(tmp_path / f'part{n}')!r}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = ModelSpec("tiny-chat", "chat", "test", "MIT", (ModelFile(
        "tiny.gguf", chunks=ChunkedMirror("tiny-chat-model", 2, "1.0")),))
    register(spec)
    try:
        assert chat_model_note("tiny-chat", empty) == (
            "chat model tiny-chat is not joined yet: the first POST /chat joins it from its "
            "installed packages")
    finally:
        unregister("tiny-chat")
