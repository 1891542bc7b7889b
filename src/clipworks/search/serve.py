"""`clipworks serve`: an HTTP JSON API and a web page over a search index.

Endpoints (all answers JSON except the page and thumbnails; every error is `{"error": "..."}` with a 4xx status):
    GET  /                        the web page (static/search.html: a search box, a thumbnail grid, an upload box)
    GET  /api/info                number of images, index kind, embedding size
    GET  /api/search?q=TEXT&k=N   the N images most similar to TEXT
    POST /api/search/image?k=N    the same for an uploaded image (multipart field `file`)
    POST /api/classify            zero-shot label probabilities of an uploaded image (`file`) over `labels`
                                  (comma- or newline-separated) with optional `templates` (one per line, with {})
    GET  /api/thumbnail/ID        the stored JPEG thumbnail of indexed image ID

FastAPI on uvicorn: the ASGI stack Python ML services are usually built on; request validation and the multipart
parser come with it. The server never opens a file named by a request: thumbnails are rows of the index's store,
looked up by integer id. Uploads are bounded in bytes (checked against Content-Length before anything is read, and
counted while reading) and in pixels (checked from the image header before decoding; Pillow's decompression-bomb
check is an error too). Model and faiss calls are serialised by one lock: on a CPU, concurrent forward passes only
compete for the same cores.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint annotations (UploadFile, ...) at runtime.
import functools
import importlib.util
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data.images import TooManyPixels, UnreadableImage, open_image
from ..errors import SearchIndexError
from ..evaluation.prompts import DEFAULT_TEMPLATE
from ..evaluation.zeroshot import zero_shot_classifier, zero_shot_logits
from .index import SERVE_EXTRA, Index


@dataclass(frozen=True)
class Limits:
    """What one request may ask for."""

    max_upload_bytes: int = 10 * 2**20  # request body
    max_pixels: int = 40_000_000  # width x height of an uploaded image
    max_k: int = 100  # results per search
    max_query_chars: int = 1000
    max_labels: int = 200
    max_templates: int = 32


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


def create_app(index: Index, limits: Limits = Limits()) -> Any:
    fastapi, _ = import_web()
    from fastapi import File, Form, HTTPException, Query, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    app = fastapi.FastAPI(title="clipworks", docs_url=None, redoc_url=None, openapi_url=None)
    lock = threading.Lock()
    page = resources.files("clipworks.search").joinpath("static/search.html").read_text(encoding="utf-8")

    @app.exception_handler(HTTPException)
    async def http_error(request: Any, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Any, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(part) for part in err.get("loc", ()) if part not in ("query", "body", "path"))
            problems.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
        return JSONResponse({"error": "; ".join(problems)}, status_code=422)

    app.add_middleware(_BodyLimit, max_bytes=limits.max_upload_bytes)

    @functools.lru_cache(maxsize=1024)
    def text_vector(text: str) -> np.ndarray:
        with lock:
            return index.encode_text([text])

    @functools.lru_cache(maxsize=64)
    def classifier(labels: tuple[str, ...], templates: tuple[str, ...]) -> torch.Tensor:
        with lock:
            return zero_shot_classifier(index.query_model, labels, templates).float()

    def results(vector: np.ndarray, k: int) -> list[dict[str, Any]]:
        with lock:
            hits = index.search_vectors(vector, k)[0]
        return [{**hit.to_dict(), "thumbnail": f"/api/thumbnail/{hit.id}"} for hit in hits]

    def read_upload(file: UploadFile) -> Image.Image:
        data = file.file.read()
        if not data:
            raise HTTPException(400, "the upload is empty; send an image file in the multipart field 'file'")
        return decode_image(data, limits)

    k_param = Query(10, ge=1, le=limits.max_k, description="number of results")

    @app.get("/", response_class=HTMLResponse)
    def home() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; "
                                           "style-src 'unsafe-inline'; script-src 'unsafe-inline'"})

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return {"images": len(index), "kind": index.spec.kind, "embed_dim": index.embed_dim,
                "limits": limits.__dict__}

    @app.get("/api/search")
    def search_text(q: str = Query(..., min_length=1, max_length=limits.max_query_chars), k: int = k_param
                    ) -> dict[str, Any]:
        if not q.strip():
            raise HTTPException(400, "q is blank; give a text to search for")
        return {"query": q, "k": k, "results": results(text_vector(q), k)}

    @app.post("/api/search/image")
    def search_image(file: UploadFile = File(...), k: int = k_param) -> dict[str, Any]:
        image = read_upload(file)
        with lock:
            vector = index.encode_image(image)
        return {"query": file.filename, "k": k, "results": results(vector, k)}

    @app.post("/api/classify")
    def classify(file: UploadFile = File(...), labels: str = Form(..., max_length=20_000),
                 templates: str = Form("", max_length=20_000)) -> dict[str, Any]:
        names = parse_labels(labels, limits)
        prompts = parse_templates(templates, limits)
        image = read_upload(file)
        weights = classifier(tuple(names), tuple(prompts))
        with lock:
            features = index.encode_image(image)
        probs = zero_shot_logits(torch.from_numpy(features), weights).softmax(dim=-1)[0].tolist()
        ranked = sorted(zip(names, probs), key=lambda pair: -pair[1])
        return {"labels": [{"label": name, "prob": p} for name, p in ranked], "templates": prompts}

    @app.get("/api/thumbnail/{item_id}")
    def thumbnail(item_id: int) -> Response:
        data = index.thumbnail(item_id)
        if data is None:
            raise HTTPException(404, f"no indexed image has id {item_id}")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600",
                                                                "X-Content-Type-Options": "nosniff"})

    return app


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
    from fastapi import HTTPException

    separator = "\n" if "\n" in text else ","
    names = list(dict.fromkeys(name.strip() for name in text.split(separator) if name.strip()))
    if not names:
        raise HTTPException(400, "labels is empty; give class names separated by commas, e.g. 'cat, dog'")
    if len(names) > limits.max_labels:
        raise HTTPException(400, f"{len(names)} labels; at most {limits.max_labels} per request")
    return names


def parse_templates(text: str, limits: Limits) -> list[str]:
    from fastapi import HTTPException

    templates = [t.strip() for t in text.splitlines() if t.strip()] or [DEFAULT_TEMPLATE]
    if len(templates) > limits.max_templates:
        raise HTTPException(400, f"{len(templates)} templates; at most {limits.max_templates} per request")
    for t in templates:
        if t.count("{}") != 1 or t.replace("{}", "").count("{") or t.replace("{}", "").count("}"):
            raise HTTPException(400, f"template {t!r} must contain exactly one '{{}}' (where the label goes) and "
                                     "no other braces")
    return templates


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


def run(index: Index, *, host: str = "127.0.0.1", port: int = 8000, limits: Limits = Limits(),
        log_level: str = "warning") -> None:
    """Serve until interrupted. Prints the URL (with the real port when `port` is 0) once the socket is bound."""
    _, uvicorn = import_web()
    config = uvicorn.Config(create_app(index, limits), host=host, port=port, log_level=log_level)
    sock = config.bind_socket()
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {index.describe()} at http://{shown}:{bound}/ (Ctrl-C to stop)", flush=True)
    uvicorn.Server(config).run(sockets=[sock])
