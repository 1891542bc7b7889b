"""`clipworks serve`: an HTTP JSON API and a web page over a search index.

Endpoints (all answers JSON except the page and thumbnails):
    GET  /                        the web page (static/search.html: a search box, a thumbnail grid, an upload box)
    GET  /api/info                number of images, index kind, embedding size, the request limits
    GET  /api/search?q=TEXT&k=N   the N images most similar to TEXT
    POST /api/search/image?k=N    the same for an uploaded image (multipart field `file`)
    POST /api/classify            zero-shot label probabilities of an uploaded image (`file`) over `labels`
                                  (comma- or newline-separated) with optional `templates` (one per line, with {})
    GET  /api/thumbnail/ID        the stored JPEG thumbnail of indexed image ID

Every error, whatever produced it (an endpoint, request validation, routing, the multipart parser, the HTTP parser,
a bug), is a JSON body `{"error": "message"}`: 4xx for a request the server will not answer, 500 for a bug (whose
traceback goes to the server's log).

FastAPI on uvicorn: the ASGI stack Python ML services are usually built on; request validation and the multipart
parser come with it. The server never opens a file named by a request: thumbnails are rows of the index's store,
looked up by integer id. Uploads are bounded in bytes (checked against Content-Length before anything is read, and
counted while reading) and in pixels (checked from the image header before decoding; Pillow's decompression-bomb
check is an error too); text is bounded in characters and a classification in prompts (labels x templates), so no
request can ask for more model time than the limits allow.

Model and faiss calls run one at a time on one worker thread (on a CPU, concurrent forward passes only compete for
the same cores), in arrival order; a classification encodes its prompts a few labels per turn, so requests that
arrive meanwhile are served between its turns. Requests that do not run the model (the page, info, thumbnails) never
queue for the model worker, nor wait for the threads that model requests hold: they run on the event loop and read
the store on threads of their own.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint annotations (UploadFile, ...) at runtime.
import asyncio
import functools
import http
import importlib.util
import json
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields
from importlib import resources
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data.images import TooManyPixels, UnreadableImage, open_image
from ..data.tables import split_lines
from ..errors import ConfigError, SearchIndexError
from ..evaluation.prompts import DEFAULT_TEMPLATE
from ..evaluation.zeroshot import zero_shot_classifier, zero_shot_logits
from .index import SERVE_EXTRA, Index

# Prompts a classification encodes per turn on the model worker: what a request arriving meanwhile waits behind.
PROMPTS_PER_TURN = 64
API = ("GET /, GET /api/info, GET /api/search?q=TEXT&k=N, POST /api/search/image?k=N (field file), "
       "POST /api/classify (fields file, labels, templates), GET /api/thumbnail/ID")


@dataclass(frozen=True)
class Limits:
    """What one request may ask for. The character limits bound the tokenizer's work; `max_prompts` bounds the text
    encoder's (a classification encodes every label in every template)."""

    max_upload_bytes: int = 10 * 2**20  # request body
    max_pixels: int = 40_000_000  # width x height of an uploaded image
    max_k: int = 100  # results per search
    max_query_chars: int = 1000  # a text search query
    max_labels: int = 200  # labels of one classification
    max_templates: int = 32  # templates of one classification
    max_label_chars: int = 100  # one label
    max_template_chars: int = 200  # one template
    max_prompts: int = 512  # labels x templates of one classification

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 1:
                raise ConfigError(f"the serve limit {f.name} must be at least 1, got {getattr(self, f.name)}")


def max_head_bytes(limits: Limits) -> int:
    """Bytes of request line and headers the HTTP parser buffers: room for ordinary headers plus the longest query
    allowed, percent-encoded (a 4-byte UTF-8 character is 12 bytes of URL)."""
    return 16 * 2**10 + 12 * limits.max_query_chars


def import_web() -> tuple[Any, Any]:
    """(fastapi, uvicorn), or a one-line error naming the extra to install."""
    try:
        import fastapi
        import uvicorn
    except ImportError as e:
        raise SearchIndexError(f"clipworks serve needs {e.name}, which is not installed: {SERVE_EXTRA}") from None
    if not any(importlib.util.find_spec(name) for name in ("python_multipart", "multipart")):
        raise SearchIndexError(f"clipworks serve needs python-multipart (for uploads), which is not installed: "
                               f"{SERVE_EXTRA}")
    return fastapi, uvicorn


def default_model_threads() -> int:
    """Every core this process may use but one, which is left to parsing, answering and decoding requests (at least
    one): 1 on a 2-core machine, where that serves the most under load (bench/RESULTS.md, "serve under load")."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - 1)


class _ModelWorker:
    """One thread that runs every model and faiss call, in the order they were asked for (a FIFO queue), on one
    intra-op thread.

    A lock granted in arrival order did the same with a hand-over per turn, each turn running torch on another
    request thread with an OpenMP team of its own, whose threads spin-wait after their work. Here one thread runs
    the calls back to back while the threads that asked do their requests' other work. With one intra-op thread no
    OpenMP thread spins on the other cores, which parse, answer and decode requests: under load that serves more
    (bench/RESULTS.md, "serve under load"); a lone request on a large model takes longer than it would on every core.
    """

    def __init__(self, threads: int | None = None) -> None:
        threads = threads or default_model_threads()
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._serve, args=(threads,), name="clipworks-model", daemon=True).start()

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args) on the worker after every call asked for before it; its result, or its exception raised."""
        done: Future = Future()
        self._calls.put((done, fn, args))
        return done.result()

    def _serve(self, threads: int) -> None:
        torch.set_num_threads(threads)  # OpenMP's setting is per thread: this one's
        while True:
            done, fn, args = self._calls.get()
            try:
                done.set_result(fn(*args))
            except BaseException as e:  # noqa: BLE001 - raised again in the thread that asked
                done.set_exception(e)


def create_app(index: Index, limits: Limits = Limits(), *, model_threads: int | None = None) -> Any:
    """The FastAPI app; model calls run on `model_threads` intra-op threads (default: `default_model_threads()`;
    see `_ModelWorker`)."""
    fastapi, _ = import_web()
    from fastapi import File, Form, HTTPException, Query, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app = fastapi.FastAPI(title="clipworks", docs_url=None, redoc_url=None, openapi_url=None)
    model = _ModelWorker(model_threads)
    # Requests that do not run the model get worker threads of their own: the shared pool's threads may all be
    # taken by requests waiting for the model worker, and a thumbnail must not queue behind them.
    store_threads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="clipworks-store")
    page = resources.files("clipworks.search").joinpath("static/search.html").read_text(encoding="utf-8")

    async def read_store(fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(store_threads, fn, *args)

    # Starlette's HTTPException is the base of FastAPI's: this also answers the router's 404 and 405 and the
    # multipart parser's 400s, which FastAPI's default handler would answer as {"detail": ...}.
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Any, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": http_error_message(request.method, request.url.path, exc)},
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Any, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(part) for part in err.get("loc", ()) if part not in ("query", "body", "path"))
            problems.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
        return JSONResponse({"error": "; ".join(problems)}, status_code=422)

    @app.exception_handler(Exception)
    async def server_error(request: Any, exc: Exception) -> JSONResponse:
        # Starlette re-raises the exception once this answer is sent, so the log still gets its traceback.
        return JSONResponse({"error": "internal server error: a bug in clipworks (the server's log has the "
                                      "traceback)"}, status_code=500)

    app.add_middleware(_BodyLimit, max_bytes=limits.max_upload_bytes)

    @functools.lru_cache(maxsize=1024)
    def text_vector(text: str) -> np.ndarray:  # called on the model worker
        return index.encode_text([text])

    @functools.lru_cache(maxsize=64)
    def classifier(labels: tuple[str, ...], templates: tuple[str, ...]) -> torch.Tensor:
        # A label's weights depend on its own prompts only, so a few labels are encoded per turn on the model
        # worker and their columns joined: a request arriving meanwhile waits for one turn, not the whole classifier.
        step = max(1, PROMPTS_PER_TURN // len(templates))
        columns = [model.run(lambda part: zero_shot_classifier(index.query_model, part, templates),
                             labels[start:start + step]) for start in range(0, len(labels), step)]
        return torch.cat(columns, dim=1).float()  # (E, C)

    def results(vector: Callable[[], np.ndarray], k: int) -> list[dict[str, Any]]:
        # One turn embeds the query and searches, so a search queues once.
        hits = model.run(lambda: index.search_vectors(vector(), k)[0])
        return [{**hit.to_dict(), "thumbnail": f"/api/thumbnail/{hit.id}"} for hit in hits]

    def read_upload(file: UploadFile) -> Image.Image:
        data = file.file.read()
        if not data:
            raise HTTPException(400, "the upload is empty; send an image file in the multipart field 'file'")
        return decode_image(data, limits)

    k_param = Query(10, ge=1, le=limits.max_k, description="number of results")

    # The page, info and thumbnails are `async def`: FastAPI runs them on the event loop, not on the shared worker
    # threads; what they read from the store runs on `store_threads`.
    @app.get("/", response_class=HTMLResponse)
    async def home() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; "
                                           "style-src 'unsafe-inline'; script-src 'unsafe-inline'"})

    @app.get("/api/info")
    async def info() -> dict[str, Any]:
        images, embed_dim = await read_store(lambda: (len(index), index.embed_dim))
        return {"images": images, "kind": index.spec.kind, "embed_dim": embed_dim, "limits": limits.__dict__}

    @app.get("/api/search")
    def search_text(q: str = Query(..., min_length=1, max_length=limits.max_query_chars), k: int = k_param
                    ) -> dict[str, Any]:
        if not q.strip():
            raise HTTPException(400, "q is blank; give a text to search for")
        return {"query": q, "k": k, "results": results(lambda: text_vector(q), k)}

    @app.post("/api/search/image")
    def search_image(file: UploadFile = File(...), k: int = k_param) -> dict[str, Any]:
        image = read_upload(file)
        return {"query": file.filename, "k": k, "results": results(lambda: index.encode_image(image), k)}

    @app.post("/api/classify")
    def classify(file: UploadFile = File(...), labels: str = Form(...), templates: str = Form("")
                 ) -> dict[str, Any]:
        names = parse_labels(labels, limits)
        prompts = parse_templates(templates, limits)
        check_prompts(len(names), len(prompts), limits)
        image = read_upload(file)
        weights = classifier(tuple(names), tuple(prompts))
        features = model.run(index.encode_image, image)
        probs = zero_shot_logits(torch.from_numpy(features), weights).softmax(dim=-1)[0].tolist()
        ranked = sorted(zip(names, probs), key=lambda pair: -pair[1])
        return {"labels": [{"label": name, "prob": p} for name, p in ranked], "templates": prompts}

    @app.get("/api/thumbnail/{item_id}")
    async def thumbnail(item_id: int) -> Response:
        data = await read_store(index.thumbnail, item_id)
        if data is None:
            raise HTTPException(404, f"no indexed image has id {_cut(str(item_id))}")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600",
                                                                "X-Content-Type-Options": "nosniff"})

    return app


def http_error_message(method: str, path: str, exc: Any) -> str:
    """The message of an HTTPException: the endpoint's own, or, for the framework's bare ones, what to do."""
    from starlette.formparsers import MultiPartException

    if exc.status_code == 404 and exc.detail == http.HTTPStatus.NOT_FOUND.phrase:  # the router's: no such path
        return f"there is no {method} {_cut(path, 100)}; the API is {API}"
    if exc.status_code == 405:
        return f"{method} is not allowed on {_cut(path, 100)}; use {(exc.headers or {}).get('Allow', 'GET or POST')}"
    if isinstance(exc.__context__, MultiPartException):
        return (f"the form body could not be read ({exc.detail}); send multipart/form-data with the image in the "
                "field 'file', e.g. curl -F file=@photo.jpg")
    return str(exc.detail)


def decode_image(data: bytes, limits: Limits) -> Image.Image:
    """An uploaded image, decoded, or HTTPException 400 (not an image) / 413 (too many pixels)."""
    from fastapi import HTTPException

    try:
        return open_image(data, name="the upload", max_pixels=limits.max_pixels)
    except TooManyPixels as e:
        raise HTTPException(413, str(e)) from None
    except UnreadableImage as e:
        raise HTTPException(400, str(e)) from None


def parse_labels(text: str, limits: Limits) -> list[str]:
    """The distinct labels of the `labels` field, or HTTPException 400 (none) / 422 (over a limit)."""
    from fastapi import HTTPException

    separator = "\n" if "\n" in text else ","
    names = list(dict.fromkeys(name.strip() for name in text.split(separator) if name.strip()))
    if not names:
        raise HTTPException(400, "labels is empty; give class names separated by commas, e.g. 'cat, dog'")
    _check_bounds(names, "label", limits.max_labels, limits.max_label_chars)
    return names


def parse_templates(text: str, limits: Limits) -> list[str]:
    """The templates of the `templates` field (default: one), or HTTPException 400 (malformed) / 422 (too many)."""
    from fastapi import HTTPException

    templates = [t.strip() for t in split_lines(text) if t.strip()] or [DEFAULT_TEMPLATE]
    _check_bounds(templates, "template", limits.max_templates, limits.max_template_chars)
    for t in templates:
        if t.count("{}") != 1 or t.replace("{}", "").count("{") or t.replace("{}", "").count("}"):
            raise HTTPException(400, f"template {t!r} must contain exactly one '{{}}' (where the label goes) and "
                                     "no other braces")
    return templates


def _check_bounds(items: list[str], noun: str, max_items: int, max_chars: int) -> None:
    """HTTPException 422 when there are more than `max_items` items or one is longer than `max_chars`."""
    from fastapi import HTTPException

    if len(items) > max_items:
        raise HTTPException(422, f"{len(items):,} {noun}s; at most {max_items:,} per request")
    for item in items:
        if len(item) > max_chars:
            raise HTTPException(422, f"the {noun} {_cut(item)!r} is {len(item):,} characters long; at most "
                                     f"{max_chars:,} per {noun}")


def check_prompts(n_labels: int, n_templates: int, limits: Limits) -> None:
    """HTTPException 422 when a classification would encode more than `max_prompts` texts (labels x templates)."""
    from fastapi import HTTPException

    if n_labels * n_templates > limits.max_prompts:
        raise HTTPException(422, f"{n_labels:,} labels x {n_templates:,} templates = {n_labels * n_templates:,} "
                                 f"prompts to encode; at most {limits.max_prompts:,} per request: send fewer "
                                 "labels or templates")


def _cut(text: str, chars: int = 40) -> str:
    """`text`, or its first `chars` characters and "...": an error message repeats a bit of the input, not all."""
    return text if len(text) <= chars else text[:chars] + "..."


class _BodyLimit:
    """ASGI middleware: 413 for a request body over `max_bytes`, before reading it when Content-Length says so,
    and while reading it otherwise (chunked uploads)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from fastapi import HTTPException
        from fastapi.responses import JSONResponse

        message = f"the request body is over the upload limit of {self.max_bytes:,} bytes"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await JSONResponse({"error": message}, status_code=413, headers={"Connection": "close"})(
                scope, receive, send)
            return
        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            event = await receive()
            received += len(event.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, message)  # FastAPI re-raises it from body parsing; handled as a 413
            return event

        await self.app(scope, limited_receive, send)


def unparsable_request(received: bytes, max_head: int, limits: Limits) -> tuple[int, str]:
    """(status, message) for a request the HTTP parser refused, from the bytes it had buffered: 414 or 431 when
    the request line or the headers were over `max_head` bytes, else 400."""
    if len(received) > max_head:
        if b"\n" not in received[:max_head]:
            return 414, (f"the request line (method and URL) is over the server's limit of {max_head:,} bytes; "
                         f"shorten the URL (a search query may have at most {limits.max_query_chars:,} characters)")
        return 431, (f"the request line and headers are over the server's limit of {max_head:,} bytes; send fewer "
                     "or shorter headers")
    return 400, f"not a valid HTTP/1.1 request; the API is {API}"


def http_protocol(limits: Limits) -> type:
    """uvicorn's h11 protocol, answering a request it cannot parse with the API's JSON error rather than a bare
    plain-text 400."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class JSONErrorH11Protocol(H11Protocol):
        def send_400_response(self, msg: str) -> None:
            # uvicorn calls this for every request h11 refuses, before the app sees it.
            status, message = unparsable_request(self.conn.trailing_data[0],
                                                 self.config.h11_max_incomplete_event_size, limits)
            body = json.dumps({"error": message}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                       (b"connection", b"close")]
            reason = http.HTTPStatus(status).phrase.encode()
            for event in (h11.Response(status_code=status, headers=headers, reason=reason), h11.Data(data=body),
                          h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
            self.transport.close()

    return JSONErrorH11Protocol


def run(index: Index, *, host: str = "127.0.0.1", port: int = 8000, limits: Limits = Limits(),
        log_level: str = "warning", model_threads: int | None = None) -> None:
    """Serve until interrupted. Prints the URL (with the real port when `port` is 0) once the socket is bound."""
    _, uvicorn = import_web()
    # h11 (installed with uvicorn) even where httptools is installed too, which uvicorn would prefer: the same limit
    # on the request head, and JSON answers to requests the parser refuses, whatever else is installed.
    app = create_app(index, limits, model_threads=model_threads)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, http=http_protocol(limits),
                            h11_max_incomplete_event_size=max_head_bytes(limits))
    sock = config.bind_socket()
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {index.describe()} at http://{shown}:{bound}/ (Ctrl-C to stop)", flush=True)
    uvicorn.Server(config).run(sockets=[sock])
