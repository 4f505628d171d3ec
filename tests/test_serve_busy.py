"""The served Shop under contention, over HTTP on loopback (uvicorn in this process, on a
real Shop over a copy of the demo workspace): a PATCH while another process holds the
workspace lock, and a chat turn while the chat model is busy, are refused at once with a
503 and Retry-After, with nothing half done; concurrent PATCHes to one product end the same
in memory as on disk."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import pinshop_cli
from pinshop_cli.testing import StuckChatModel

TOKEN = "busy-test-token"


class Served:
    def __init__(self, url: str, shop: pinshop_cli.Shop, model: StuckChatModel) -> None:
        self.url, self.shop, self.model = url, shop, model

    def request(self, method: str, path: str, data: Any = None,
                token: str | None = None) -> tuple[int, Any, str]:
        """(status, headers (names in any case), body text) of one request."""
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = None if data is None else json.dumps(data).encode()
        req = urllib.request.Request(self.url + path, body, headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=120) as response:
                return response.status, response.headers, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read().decode()

    def price(self, product_id: str) -> float:
        status, _, body = self.request("GET", f"/products/{product_id}")
        assert status == 200
        return float(json.loads(body)["price"])


@contextmanager
def serving(workspace: Path) -> Iterator[Served]:
    """The app on a Shop over `workspace`, in uvicorn on a free loopback port."""
    import uvicorn

    from pinshop_cli.serve import create_app

    shop = pinshop_cli.open(workspace)
    model = StuckChatModel()
    shop._chat_models[("stuck", 4096, None)] = model  # noqa: SLF001
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(create_app(shop, TOKEN, chat_model="stuck"),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield Served(f"http://127.0.0.1:{port}", shop, model)
    finally:
        model.release.set()
        server.should_exit = True
        thread.join(60)
        shop.close()


@pytest.fixture
def served(copy_workspace: Any) -> Iterator[Served]:
    with serving(copy_workspace()) as running:
        yield running


def on_disk(workspace: Path, product_id: str) -> float:
    """The price a new Shop reads: catalog.parquet with the change log on top."""
    with pinshop_cli.open(workspace) as shop:
        return float(shop.product(product_id).price or 0)


def test_a_patch_while_another_process_writes_is_a_503_and_changes_nothing(
        served: Served) -> None:
    from pinshop_cli.retrieval.updates import ChangeLog

    root = served.shop.ws.root
    before = served.price("P001")
    holder = subprocess.Popen(  # another process holding the writer lock, as an ingest does
        [sys.executable, "-c", "import sys\nfrom pinshop_cli.workspace import Workspace\n"
         "with Workspace.open(sys.argv[1]).lock():\n    print('locked', flush=True)\n"
         "    sys.stdin.read()", str(root)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        status, headers, body = served.request("PATCH", "/products/P001",
                                               {"price": before + 7}, TOKEN)
        assert status == 503 and headers["Retry-After"] == "1"
        error = json.loads(body)["error"]
        assert error == f"the workspace is busy: pinshop pid {holder.pid} is writing it; " \
                        "try again"
        assert served.price("P001") == before  # not in memory either
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(60)
    # The refused change is queued nowhere: the next save does not write it.
    status, _, _ = served.request("PATCH", "/products/P002", {"price": 3}, TOKEN)
    assert status == 200
    assert ChangeLog(served.shop.ws).pending().column("id").to_pylist() == ["P002"]
    assert served.price("P001") == before == on_disk(root, "P001")


def test_concurrent_patches_to_one_product_end_the_same_in_memory_and_on_disk(
        served: Served) -> None:
    from concurrent.futures import ThreadPoolExecutor

    prices = [100.0 + n for n in range(40)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda price: served.request(
            "PATCH", "/products/P003", {"price": price}, TOKEN)[0], prices))
    assert answers == [200] * len(prices)
    served_price = served.price("P003")
    assert served_price in prices
    assert on_disk(served.shop.ws.root, "P003") == served_price


def test_a_chat_turn_while_the_model_is_busy_is_a_503_and_other_requests_go_on(
        served: Served) -> None:
    events: list[str] = []
    first = threading.Thread(target=lambda: events.append(
        served.request("POST", "/chat", {"message": "a chair under 200"})[2]))
    first.start()
    assert served.model.generating.wait(120)
    status, headers, body = served.request("POST", "/chat", {"message": "a sofa"})
    assert status == 503 and headers["Retry-After"] == "1"
    assert json.loads(body) == {
        "error": "the chat model is busy with another conversation; try again"}
    assert served.price("P001") > 0  # the Shop answers meanwhile
    served.model.release.set()
    first.join(120)
    assert "event: reply" in events[0]
    served.model.generating.clear()
    status, _, body = served.request("POST", "/chat", {"message": "a chair under 200"})
    assert status == 200 and "event: reply" in body  # the gate was let go


def test_a_chat_client_that_leaves_mid_answer_frees_the_chat(served: Served) -> None:
    """A client gone mid-answer (a page reloaded while the model spoke) kept the one chat
    slot: Starlette stopped reading the turn and closed nothing, so every later chat was a
    503 until the server restarted."""
    from urllib.parse import urlsplit

    where = urlsplit(served.url)
    body = json.dumps({"message": "a chair under 200"}).encode()
    with socket.create_connection((where.hostname or "", where.port or 0), timeout=60) as sock:
        sock.sendall(b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        seen = b""
        while b"event: session" not in seen:  # the turn has begun
            piece = sock.recv(4096)
            assert piece, seen
            seen += piece
        assert served.model.generating.wait(120)  # and the model is answering
    time.sleep(0.5)  # the server sees the client gone before the model's next piece
    served.model.generating.clear()
    served.model.release.set()
    for _ in range(100):  # the abandoned turn ends as the model hands over its next piece
        status, _, text = served.request("POST", "/chat", {"message": "a chair under 200"})
        if status != 503:
            break
        time.sleep(0.1)
    assert status == 200 and "event: reply" in text, (status, text)


def test_a_product_id_with_a_slash_is_served_on_every_route(
        tmp_path: Path, write_catalog: Any, sample_dir: Path) -> None:
    """"SKU/1" (sent as SKU%2F1, which the server decodes) was a 404 on every product route,
    and its photo URL, which the API hands out, a dead link."""
    from urllib.parse import quote

    photos = sorted((sample_dir / "products").glob("*.jpg"))
    rows = [{"id": pid, "title": f"Oak Chair {n}", "category": "chair", "price": 10 + n,
             "image": str(photo)} for n, (pid, photo) in enumerate(zip(
                 ["SKU/1", "SKU/2", "plain"], photos, strict=False))]
    pinshop_cli.ingest(tmp_path / "ws", write_catalog(rows))
    pinshop_cli.build_indexes(tmp_path / "ws")
    with serving(tmp_path / "ws") as served:
        path = f"/products/{quote('SKU/1', safe='')}"
        status, _, body = served.request("GET", path)
        assert status == 200 and json.loads(body)["image"] == f"{path}/photo"
        with urllib.request.urlopen(served.url + f"{path}/photo", timeout=60) as photo:
            assert photo.read() == photos[0].read_bytes()
        status, _, body = served.request("PATCH", path, {"price": 5}, token=TOKEN)
        assert status == 200 and json.loads(body)["price"] == 5
        status, _, body = served.request("GET", f"/similar/{quote('SKU/1', safe='')}")
        assert status == 200 and {i["id"] for i in json.loads(body)["items"]} == {
            "SKU/2", "plain"}
