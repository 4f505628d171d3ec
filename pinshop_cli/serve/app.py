"""The FastAPI app: routes that each make one Shop call and return its `--json` shape."""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Body, FastAPI, File, Header, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException

from ..assistant.session import MAX_QUESTION_CHARS
from ..errors import PinshopError, UnknownProductError, WorkspaceLockedError
from ..retrieval.batch import TextQuery
from ..shop import Shop
from .batching import SearchBatcher
from .chat import ChatSessions, TurnResponse
from .guard import (
    MAX_K,
    MAX_SESSION_EVENTS,
    MAX_TEXT,
    MAX_UPLOAD_BYTES,
    MAX_UPLOAD_PIXELS,
    RETRY_AFTER,
    BodyLimit,
    ChatBusy,
    ServedShop,
    Unauthorized,
)

log = logging.getLogger("pinshop.serve")

K = Annotated[int, Query(ge=1, le=MAX_K, description=f"Results (1-{MAX_K}).")]


def _plain(result: Any) -> Any:
    """A library result as JSON-ready data (its to_dict(), the CLI's --json shape)."""
    if hasattr(result, "to_dict"):
        return result.to_dict()
    if isinstance(result, list):
        return [_plain(item) for item in result]
    return result.__dict__ if hasattr(result, "__dict__") else result


def _default(value: Any) -> Any:
    """What json.dumps cannot write itself, as FastAPI's encoder would write it."""
    if isinstance(value, Decimal):
        return float(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # a numpy scalar
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return value.__dict__ if hasattr(value, "__dict__") else str(value)


def _json(result: Any) -> Response:
    """`result` as a JSON response, written by json.dumps: FastAPI's encoder walks every
    value in Python first (~2.5 ms for ten matches, ~10x json.dumps), which at concurrency
    8 on two cores was a large share of a search's time."""
    body = json.dumps(_photo_urls(_plain(result)), default=_default, ensure_ascii=False,
                      allow_nan=False, separators=(",", ":"))
    return Response(body, media_type="application/json")


def _photo_urls(data: Any) -> Any:
    """`data` with each product's `image`, a path on the server's disk, as the URL that
    serves it (/products/ID/photo): a client gets nothing of the server's file layout."""
    if isinstance(data, list):
        return [_photo_urls(item) for item in data]
    if not isinstance(data, dict):
        return data
    found = {key: _photo_urls(value) for key, value in data.items()}
    if found.get("image") and isinstance(found.get("id"), str):
        found["image"] = f"/products/{quote(found['id'], safe='')}/photo"
    return found


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _busy(message: str) -> JSONResponse:
    """503 with Retry-After: nothing was done, the same request may succeed shortly."""
    return JSONResponse({"error": message}, status_code=503,
                        headers={"Retry-After": str(RETRY_AFTER)})


def _install_error_handlers(app: FastAPI, served: ServedShop) -> None:
    """Every error is a JSON body with one line; no stack trace, and no folder of this
    machine, leaves the process."""
    @app.exception_handler(UnknownProductError)
    async def unknown(_: Request, exc: UnknownProductError) -> JSONResponse:
        return _error(404, served.public(str(exc)))

    @app.exception_handler(PinshopError)
    async def refused(_: Request, exc: PinshopError) -> JSONResponse:
        return _error(400, served.public(str(exc)))

    @app.exception_handler(WorkspaceLockedError)
    async def locked(_: Request, exc: WorkspaceLockedError) -> JSONResponse:
        holder = exc.holder or "another process"
        return _busy(f"the workspace is busy: {holder} is writing it; try again")

    @app.exception_handler(ChatBusy)
    async def chat_busy(_: Request, exc: ChatBusy) -> JSONResponse:
        return _busy(str(exc))

    @app.exception_handler(Unauthorized)
    async def unauthorized(_: Request, exc: Unauthorized) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(HTTPException)
    async def http(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code,
                            headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        if first.get("type") == "json_invalid":  # its loc is a character offset
            reason = first.get("ctx", {}).get("error", "decode error")
            return _error(400, f"the body is not valid JSON ({reason})")
        sent = request.headers.get("content-type", "")
        if tuple(first.get("loc", ()))[:2] == ("body", "image"):  # /match: a file, not JSON
            return _error(422, f"no image part (the body was sent as {sent or 'nothing'}): "
                               "send the photo as a multipart/form-data part named image, "
                               "e.g. curl -F image=@photo.jpg")
        if tuple(first.get("loc", ()))[:1] == ("body",) and not any(
                kind in sent.lower() for kind in ("json", "multipart/form-data")):
            # FastAPI reads such a body as no fields at all: "message: Field required"
            return _error(422, f"the body was sent as {sent or 'no Content-Type'}: send a "
                               "JSON object with Content-Type: application/json")
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        if not where:  # the body as a whole: most often not sent as JSON
            return _error(422, f"the body: {first.get('msg', 'invalid')} (send a JSON "
                               "object with Content-Type: application/json)")
        return _error(422, f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(Exception)
    async def crashed(_: Request, exc: Exception) -> JSONResponse:
        log.error("request failed", exc_info=exc)
        return _error(500, "internal error (see the server's log)")


def create_app(shop: Shop, token: str, chat_model: str = "qwen2.5-coder-1.5b") -> FastAPI:
    """The API and the web page over `shop`; writes need `token`."""
    served = ServedShop(shop, token)
    sessions = ChatSessions(served, chat_model)
    searches = SearchBatcher(served)
    # FastAPI's own docs pages load their scripts from a CDN (blank offline): ours reads
    # /openapi.json with nothing from elsewhere.
    app = FastAPI(title="pinshop", summary="A shopping catalog that answers in real time.",
                  docs_url=None, redoc_url=None)
    _install_error_handlers(app, served)
    app.add_middleware(BodyLimit)
    page = files("pinshop_cli.serve").joinpath("static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page.joinpath("index.html").read_text(encoding="utf-8")

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs() -> str:
        return page.joinpath("docs.html").read_text(encoding="utf-8")

    @app.get("/static/app.js", include_in_schema=False)
    def script() -> Response:
        return Response(page.joinpath("app.js").read_text(encoding="utf-8"),
                        media_type="text/javascript")

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.head("/health", include_in_schema=False)  # load balancers probe with HEAD
    def health_head() -> Response:
        return Response()

    @app.get("/search", response_class=JSONResponse)
    async def search(q: Annotated[str, Query(min_length=1, max_length=MAX_TEXT)], k: K = 10,
                     category: str | None = None, max_price: float | None = None,
                     color: str | None = None) -> Response:
        if not q.strip():
            raise PinshopError("q is blank: pass the words to search for")
        result = await searches.search(TextQuery(q, k, category, max_price, color))
        return _json({"matches": result.to_dict()["text"]["matches"], "notes": result.notes})

    @app.post("/match", response_class=JSONResponse)
    def match(image: Annotated[list[UploadFile], File()], k: K = 5,
              category: str | None = None, max_price: float | None = None,
              color: str | None = None) -> Response:
        if len(image) > 1:  # (one UploadFile answered the last part, the others unread)
            raise PinshopError(f"send one photo a request: this one has {len(image)} image "
                               "parts")
        upload = image[0]
        data = upload.file.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"the photo is over {MAX_UPLOAD_BYTES // 2**20} MiB")
        with tempfile.TemporaryDirectory(prefix="pinshop-upload-") as scratch:
            path = Path(scratch) / "upload"
            path.write_bytes(data)
            _check_photo(path)
            with served.using() as current:
                result = current.match([path], top_k=k, category=category,
                                       max_price=max_price, color=color)
        pin = result.to_dict()["pins"][0]
        if pin["error"]:
            raise PinshopError(f"the photo could not be read: {pin['error']}")
        # As /search: an answer a filter left empty says which filter.
        pin.update(image=upload.filename or "upload", notes=result.notes)
        return _json(pin)

    # Ids are paths: an id with a slash ("SKU/1", sent as SKU%2F1, which the server decodes)
    # was a 404 on every product route. The photo's route comes first, so it wins.
    @app.get("/products/{product_id:path}/photo", response_class=FileResponse,
             responses={200: {"content": {"image/*": {}}, "description": "The photo."},
                        404: {"description": "No such product, or it has no photo."}})
    def photo(product_id: str) -> FileResponse:
        """The product's photo, as the catalog holds it (`image` in product answers)."""
        with served.using() as current:
            image = current.product(product_id).image
        if not image or not Path(image).is_file():
            raise HTTPException(404, f"product {product_id!r} has no photo")
        return FileResponse(image)

    @app.get("/products/{product_id:path}", response_class=JSONResponse)
    def product(product_id: str) -> Response:
        with served.using() as current:
            return _json(current.product(product_id))

    @app.patch("/products/{product_id:path}", response_class=JSONResponse)
    def update(product_id: str, changes: Annotated[dict[str, Any], Body()],
               authorization: Annotated[str | None, Header()] = None) -> Response:
        """Set `price`, `sale_price` (null ends a sale; not above the price) and/or
        `availability`; needs `Authorization: Bearer <token>`. 503 (Retry-After) when
        another process holds the workspace's lock: then the change is made nowhere."""
        served.check_token(authorization)
        with served.using() as current:
            change = current.prepare_update(product_id, **changes)
        # Outside the lock: searches go on, and concurrent saves share one append.
        served.shop.save_update(change)
        with served.using() as current:
            current.apply_saved()  # every change saved so far, in the log's order
            return _json(current.product(product_id))

    # The CLI's reference may also be a photo's path; a client's is a product id only (a
    # path would read the server's files): an unknown id is a 404 before any lookup.
    @app.get("/similar/{product_id:path}", response_class=JSONResponse)
    def similar(product_id: str, cheaper: bool = False, k: K = 10) -> Response:
        with served.using() as current:
            current.product(product_id)
            return _json(current.similar(product_id, cheaper=cheaper, top_k=k))

    @app.get("/complete/{product_id:path}", response_class=JSONResponse)
    def complete(product_id: str, k: K = 5) -> Response:
        with served.using() as current:
            current.product(product_id)
            return _json(current.complete(product_id, top_k=k))

    @app.get("/recommend/{user:path}", response_class=JSONResponse)
    def recommend(user: str, k: K = 10) -> Response:
        return recommend_in_session([], user, k)

    @app.post("/recommend", response_class=JSONResponse)
    def recommend_in_session(
            session: Annotated[list[dict[str, Any]], Body(max_length=MAX_SESSION_EVENTS)],
            user: Annotated[str | None, Body(min_length=1, max_length=200)] = None,
            k: Annotated[int, Body(ge=1, le=MAX_K, strict=True)] = 10) -> Response:
        """The browsing session's events (`item_id`, `event`; `ts`, `weight` optional, the
        last the newest without ts) pull in their neighbours, for `user` or, without one,
        an anonymous shopper: `recommend --session`. As /search, the answer carries its
        notes (session ids not in the catalog), which the CLI prints apart."""
        from ..recommendation.config import RecommendConfig, with_overrides

        if user is None and not session:  # else Shop.recommend would write everyone's
            raise PinshopError("the session has no events: give at least one (item_id, "
                               "event), or a user")
        notes: list[str] = []
        with served.using() as current:
            found = current.recommend(user, with_overrides(RecommendConfig(), k=k),
                                      session or None, notes)
        return _json({"recommendations": found, "notes": notes})

    @app.post("/chat")
    def chat(message: Annotated[str, Body(min_length=1, max_length=MAX_QUESTION_CHARS)],
             session: Annotated[str | None, Body(max_length=64)] = None) -> TurnResponse:
        """Server-Sent Events: `session`, then `token` pieces, then `reply` (or `error`);
        503 (Retry-After) while the chat model is busy with another conversation."""
        return TurnResponse(sessions.stream(message, session))

    return app


def _check_photo(path: Path) -> None:
    """Refuse what is not a photo, or one too large in pixels, before any model runs."""
    from ..io.images import ImageRejected, check_image

    try:
        check_image(path, MAX_UPLOAD_PIXELS)
    except ImageRejected as exc:
        if "pixels" in str(exc):
            raise HTTPException(413, f"the photo is too large: {exc}") from None
        raise PinshopError(f"not a photo pinshop can read: {exc}") from None
