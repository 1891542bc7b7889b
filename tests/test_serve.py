"""`clipworks serve` as a real uvicorn server on a loopback port: search and classify answers, thumbnails only by id,
hostile and fuzzed uploads answered with 4xx and a message (never 5xx), every error as {"error": ...} whatever
produced it, classifications bounded in work, cheap requests answered while a long one runs, 200 concurrent
requests."""

import asyncio
import io
import json
import random
import socket
import struct
import threading
import time
import zlib
from pathlib import Path

import httpx
import pytest
from conftest import MAX_PIXELS, MAX_PROMPTS, MAX_UPLOAD_BYTES
from PIL import Image

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]


def png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG header of any size whose pixel data is tiny: what a decompression bomb looks like."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def post_file(server, path: str, data: bytes, name: str = "x.png", **fields) -> httpx.Response:
    return httpx.post(server.url + path, files={"file": (name, data)}, data=fields, timeout=120)


def assert_error(r: httpx.Response, status: int, words: str) -> None:
    """The documented error shape: `status`, a JSON body whose only key is "error", a message containing `words`."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json", r.headers
    assert list(r.json()) == ["error"] and words in r.json()["error"], r.json()


def raw_request(server, head: bytes) -> tuple[int, str, dict]:
    """(status, content type, JSON body) of the answer to `head`, sent as is on a new connection: for requests
    httpx refuses to send. The server may close before reading all of `head`; its answer is read regardless."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        try:
            sock.sendall(head)
        except OSError:  # closed by the server after its answer, which is waiting to be read
            pass
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:  # the rest of `head` was left unread; the answer came before
            pass
    status_line, _, rest = answer.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    fields = dict(line.split(b": ", 1) for line in headers.split(b"\r\n"))
    return int(status_line.split()[1]), fields[b"content-type"].decode(), json.loads(body)


def test_info_and_page(search_server):
    info = httpx.get(search_server.url + "/api/info").json()
    assert (info["images"], info["kind"], info["embed_dim"]) == (42, "flat", 128)
    assert info["limits"]["max_upload_bytes"] == MAX_UPLOAD_BYTES and info["limits"]["max_pixels"] == MAX_PIXELS
    assert info["limits"]["max_prompts"] == MAX_PROMPTS
    assert (info["limits"]["max_label_chars"], info["limits"]["max_template_chars"]) == (100, 200)  # the defaults
    page = httpx.get(search_server.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="query"' in page.text and 'id="file"' in page.text


def test_text_search_ranks_the_expected_image_first(search_server, search_collection):
    for query, target in ((search_collection.red_query, search_collection.red),
                          (search_collection.blue_query, search_collection.blue)):
        r = httpx.get(search_server.url + "/api/search", params={"q": query, "k": 5})
        assert r.status_code == 200
        body = r.json()
        assert body["query"] == query and len(body["results"]) == 5
        first = body["results"][0]
        assert first["path"] == str(target.resolve())
        assert first["thumbnail"] == f"/api/thumbnail/{first['id']}"
        assert [x["score"] for x in body["results"]] == sorted((x["score"] for x in body["results"]), reverse=True)


def test_image_search_and_zero_shot_labels(search_server, search_collection):
    data = search_collection.blue.read_bytes()
    r = post_file(search_server, "/api/search/image?k=3", data)
    assert r.status_code == 200
    assert r.json()["results"][0]["path"] == str(search_collection.blue.resolve())
    assert r.json()["results"][0]["score"] == pytest.approx(1.0, abs=1e-5)

    r = post_file(search_server, "/api/classify", search_collection.red.read_bytes(), labels=", ".join(COLOURS))
    assert r.status_code == 200
    labels = r.json()["labels"]
    assert labels[0]["label"] == "red" and labels[0]["prob"] > 0.5
    assert sorted(x["label"] for x in labels) == sorted(COLOURS)
    assert sum(x["prob"] for x in labels) == pytest.approx(1.0, abs=1e-4)
    r = post_file(search_server, "/api/classify", data, labels="\n".join(COLOURS),
                  templates="a photo of a {} shape.\na drawing of a {} thing.")
    assert r.json()["labels"][0]["label"] == "blue"
    assert r.json()["templates"] == ["a photo of a {} shape.", "a drawing of a {} thing."]


def test_thumbnails_only_by_index_id(search_server, search_collection):
    r = httpx.get(search_server.url + "/api/search", params={"q": search_collection.red_query, "k": 1})
    thumb = httpx.get(search_server.url + r.json()["results"][0]["thumbnail"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size == (64, 64)
    missing = httpx.get(search_server.url + "/api/thumbnail/987654")
    assert (missing.status_code, missing.json()["error"]) == (404, "no indexed image has id 987654")
    target = str(search_collection.red.resolve())
    for attempt in ("../../../../etc/passwd", "..%2f..%2f..%2fetc%2fpasswd", "%2e%2e/%2e%2e/etc/passwd",
                    target, target.replace("/", "%2f"), "-1", "1.5", "0x10", "1;2", "%00", "1%20OR%201=1"):
        r = httpx.get(f"{search_server.url}/api/thumbnail/{attempt}")
        assert r.status_code in (404, 422), (attempt, r.status_code)
        assert b"root:" not in r.content and b"\x89PNG" not in r.content


@pytest.mark.parametrize(("item_id", "status", "message"), [
    (str(2**63), 404, "no indexed image has id 9223372036854775808"),  # one past SQLite's largest integer
    ("-1", 404, "no indexed image has id -1"),
    (str(10**30), 404, "no indexed image has id 1000000000000000000000000000000"),
    ("9" * 4000, 404, "no indexed image has id " + "9" * 40 + "..."),
    ("abc", 422, "item_id: Input should be a valid integer, unable to parse string as an integer"),
])
def test_thumbnail_ids_that_no_image_has(search_server, item_id, status, message):
    r = httpx.get(f"{search_server.url}/api/thumbnail/{item_id}")
    assert_error(r, status, message)
    assert r.json()["error"] == message


def _hostile(search_collection) -> list[tuple[str, str, dict, int, str]]:
    good = search_collection.red.read_bytes()
    return [
        # (method + path, upload bytes or None, form fields, status, words of the message)
        ("/api/search/image", good[:len(good) // 2], {}, 400, "not a readable image"),
        ("/api/search/image", png(40_000, 40_000), {}, 413, "decompression bomb"),  # 1.6e9 px: Pillow's own check
        ("/api/search/image", png(2_000, 2_000), {}, 413, "limit is 1,000,000 pixels"),  # our limit, from the header
        ("/api/search/image", b"just some text, not a JPEG\n", {}, 400, "not an image in a format Pillow reads"),
        ("/api/search/image", b"", {}, 400, "the upload is empty"),
        ("/api/search/image", b"\0" * (MAX_UPLOAD_BYTES + 1), {}, 413, "over the upload limit"),
        ("/api/search/image?k=-1", good, {}, 422, "k: Input should be greater than or equal to 1"),
        ("/api/search/image?k=1000000000", good, {}, 422, "k: Input should be less than or equal to 100"),
        ("/api/search/image?k=abc", good, {}, 422, "k: Input should be a valid integer"),
        ("/api/classify", good, {}, 422, "labels: Field required"),
        ("/api/classify", good, {"labels": " , ,"}, 400, "labels is empty"),
        ("/api/classify", good, {"labels": ",".join(map(str, range(201)))}, 422, "201 labels; at most 200 per"),
        ("/api/classify", good, {"labels": "a," + "b" * 101}, 422, "is 101 characters long; at most 100 per label"),
        ("/api/classify", good, {"labels": "a,b", "templates": "{}" + "c" * 199}, 422,
         "is 201 characters long; at most 200 per template"),
        ("/api/classify", good, {"labels": "a,b", "templates": "\n".join(["{}"] * 33)}, 422,
         "33 templates; at most 32 per"),
        ("/api/classify", good, {"labels": ",".join(map(str, range(200))),
                                 "templates": "\n".join(f"{i} {{}}" for i in range(31))}, 422,
         f"200 labels x 31 templates = 6,200 prompts to encode; at most {MAX_PROMPTS:,} per request"),
        ("/api/classify", good, {"labels": "a,b", "templates": "no slot"}, 400, "exactly one '{}'"),
        ("/api/classify", good, {"labels": "a,b", "templates": "{} and {}"}, 400, "exactly one '{}'"),
        ("/api/classify", good, {"labels": "a,b", "templates": "{0.__class__}{}"}, 400, "no other braces"),
        ("/api/classify", b"GIF89a\x01\x00\x01\x00", {"labels": "a,b"}, 400, "not an image in a format"),
    ]


@pytest.mark.parametrize("case", range(20))
def test_hostile_uploads_get_a_4xx_with_a_message(search_server, search_collection, case):
    path, data, fields, status, words = _hostile(search_collection)[case]
    assert_error(post_file(search_server, path, data, **fields), status, words)


def test_a_huge_label_is_refused_before_it_is_tokenized(search_server, search_collection):
    # One 20,000-letter word: what the tokenizer's BPE is slowest on. Refused from its length, so at once.
    start = time.perf_counter()
    r = post_file(search_server, "/api/classify", search_collection.red.read_bytes(), labels="cat, " + "x" * 20_000)
    assert_error(r, 422, "is 20,000 characters long; at most 100 per label")
    assert time.perf_counter() - start < 5


def test_bad_requests_without_uploads(search_server):
    url = search_server.url
    cases = [
        (httpx.post(url + "/api/classify", content=b'{"labels": ["a"', headers={"content-type": "application/json"}),
         422, "file: Field required"),
        (httpx.post(url + "/api/search/image", content=b"--x\r\nbroken", headers={
            "content-type": "multipart/form-data; boundary=x"}), 422, "file: Field required"),
        (httpx.get(url + "/api/search", params={"q": "a red circle", "k": -1}), 422, "k: Input should be greater"),
        (httpx.get(url + "/api/search", params={"q": "a red circle", "k": 10**9}), 422, "k: Input should be less"),
        (httpx.get(url + "/api/search", params={"q": "   "}), 400, "q is blank"),
        (httpx.get(url + "/api/search"), 422, "q: Field required"),
        (httpx.get(url + "/api/search", params={"q": "x" * 1001}), 422, "q: String should have at most 1000"),
    ]
    for r, status, words in cases:
        assert_error(r, status, words)


def test_framework_errors_have_the_documented_shape(search_server):
    """Errors FastAPI, Starlette and the multipart parser make themselves are {"error": ...} with a message too."""
    url = search_server.url
    multipart = {"content-type": "multipart/form-data"}
    assert_error(httpx.get(url + "/nope"), 404, "there is no GET /nope; the API is GET /, GET /api/info")
    assert_error(httpx.get(url + "/api/thumbnails/1"), 404, "there is no GET /api/thumbnails/1")
    r = httpx.post(url + "/api/info")
    assert_error(r, 405, "POST is not allowed on /api/info; use GET")
    assert r.headers["allow"] == "GET"
    assert_error(httpx.delete(url + "/api/classify"), 405, "DELETE is not allowed on /api/classify; use POST")
    assert_error(httpx.post(url + "/api/classify", content=b"--x\r\nbroken", headers=multipart), 400,
                 "the form body could not be read (Missing boundary in multipart.); send multipart/form-data")
    assert_error(httpx.post(url + "/api/classify", content=b"garbage",
                            headers={"content-type": "multipart/form-data; boundary=x"}), 400,
                 "the form body could not be read (Invalid multipart data.)")


def test_requests_the_http_parser_refuses_get_a_json_error(search_server):
    limit = 16 * 2**10 + 12 * 1000  # headers' room plus the longest query (1,000 characters) percent-encoded
    status, kind, body = raw_request(search_server, b"GET /api/search?q=" + b"x" * 2**20 + b" HTTP/1.1\r\n"
                                                    b"Host: x\r\n\r\n")
    assert (status, kind) == (414, "application/json")
    assert body == {"error": f"the request line (method and URL) is over the server's limit of {limit:,} bytes; "
                             "shorten the URL (a search query may have at most 1,000 characters)"}
    status, kind, body = raw_request(search_server, b"GET /api/info HTTP/1.1\r\nHost: x\r\nX-Big: "
                                                    + b"y" * 2**20 + b"\r\n\r\n")
    assert (status, kind, list(body)) == (431, "application/json", ["error"])
    assert f"request line and headers are over the server's limit of {limit:,} bytes" in body["error"]
    status, kind, body = raw_request(search_server, b"NOT HTTP AT ALL\r\n\r\n")
    assert (status, kind, list(body)) == (400, "application/json", ["error"])
    assert body["error"].startswith("not a valid HTTP/1.1 request; the API is GET /")


def test_declared_oversized_body_is_refused_before_it_is_read(search_server):
    host, port = search_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /api/search/image HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b"
                     b"\r\nContent-Length: 99999999999\r\n\r\n")  # and never sends the 100 GB
        answer = b""
        while chunk := sock.recv(65536):  # the server closes the connection after its answer
            answer += chunk
        answer = answer.decode()
    assert answer.startswith("HTTP/1.1 413 ")
    assert "over the upload limit of 1,048,576 bytes" in answer


def test_fuzzed_images_never_cause_a_server_error(search_server, search_collection):
    good = search_collection.blue.read_bytes()
    rng = random.Random(7)
    statuses = []
    for _ in range(40):
        data = bytearray(good)
        for _ in range(rng.randint(1, 12)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[:rng.randrange(len(data))]
        r = post_file(search_server, "/api/search/image?k=2", bytes(data))
        statuses.append(r.status_code)
        assert r.status_code in (200, 400, 413), r.text
        assert r.status_code == 200 or r.json()["error"]
    assert 400 in statuses  # the corruptions did reach the decoder


def test_a_long_classification_does_not_stall_other_requests(search_server, search_collection):
    """A classification at the prompt limit (200 labels x 30 templates, the longest label and template allowed)
    keeps the model busy for seconds. Thumbnails and info, sent meanwhile, are answered within a bound far below
    that (they never queue for the model worker); so is a text search sent early in it (the classification encodes
    in turns, and a waiting request goes next, instead of after the whole classification)."""
    labels = [f"stalling thing {i}" for i in range(199)] + ["l" * 100]
    templates = [f"a picture {j} of a {{}}." for j in range(29)] + ["{}" + "t" * 198]
    assert len(labels) * len(templates) == MAX_PROMPTS
    # Warm: the model's inference copy and the tokenizer are built by the first request that needs them, which
    # could otherwise make the search below wait (or the classification start late) for reasons of its own.
    assert post_file(search_server, "/api/classify", search_collection.red.read_bytes(),
                     labels="warm, up").status_code == 200
    finished = {}
    searched = {}

    def classify() -> None:
        finished["response"] = post_file(search_server, "/api/classify", search_collection.red.read_bytes(),
                                         labels="\n".join(labels), templates="\n".join(templates))
        finished["at"] = time.perf_counter()

    def search() -> None:
        time.sleep(0.3)  # the classification is under way
        sent = time.perf_counter()
        r = httpx.get(search_server.url + "/api/search", params={"q": "a stalled green square"}, timeout=120)
        searched["status"], searched["seconds"] = r.status_code, time.perf_counter() - sent

    worker, searcher = threading.Thread(target=classify), threading.Thread(target=search)
    started = time.perf_counter()
    worker.start()
    searcher.start()
    cheap: list[tuple[int, float, float]] = []  # (status, seconds to answer, time answered)
    while worker.is_alive():
        for path in ("/api/thumbnail/1", "/api/info"):
            sent = time.perf_counter()
            r = httpx.get(search_server.url + path, timeout=60)
            cheap.append((r.status_code, time.perf_counter() - sent, time.perf_counter()))
        time.sleep(0.05)
    worker.join()
    searcher.join()

    assert finished["response"].status_code == 200, finished["response"].text
    assert len(finished["response"].json()["labels"]) == 200
    took = finished["at"] - started
    during = [c for c in cheap if c[2] < finished["at"]]
    assert len(during) >= 4, f"the classification took {took:.1f} s: too short to test a stall"
    assert all(status == 200 for status, _, _ in cheap)
    assert max(seconds for _, seconds, _ in during) < 2.0, during
    assert searched["status"] == 200
    # Waiting for the rest of the classification would take most of its duration; one turn takes a fraction.
    assert searched["seconds"] < min(2.0, took / 3), f"the search took {searched['seconds']:.1f} s of {took:.1f}"


def test_model_calls_run_in_arrival_order():
    """A thread asking again as soon as its call is done goes after the calls already waiting (with threading.Lock
    it would most often get straight back in: a classification's turns would then run back to back)."""
    from clipworks.search.serve import _ModelWorker

    worker, order, running, busy = _ModelWorker(), [], threading.Event(), threading.Event()
    # A call that keeps the worker busy until `busy` is set; the others queue behind it.
    blocker = threading.Thread(target=worker.run, args=(lambda: running.set() or busy.wait(),))
    blocker.start()
    running.wait()
    waiters = [threading.Thread(target=worker.run, args=(order.append, name)) for name in ("first", "second")]
    for n, waiter in enumerate(waiters, 1):
        waiter.start()
        while worker._calls.qsize() < n:  # queued
            time.sleep(0.001)
    busy.set()
    blocker.join()
    worker.run(order.append, "the thread that was served")
    for waiter in waiters:
        waiter.join()
    assert order == ["first", "second", "the thread that was served"]
    with pytest.raises(ZeroDivisionError):  # a call's exception reaches its caller
        worker.run(lambda: 1 / 0)


def test_a_bug_is_a_json_500():
    """The server's own failure has the documented shape too (the traceback goes to the log, not the client)."""
    from fastapi.testclient import TestClient

    from clipworks.search.serve import Limits, create_app

    class BrokenIndex:
        def thumbnail(self, item_id: int) -> bytes:
            raise RuntimeError("a bug in the store")

    client = TestClient(create_app(BrokenIndex(), Limits()), raise_server_exceptions=False)
    assert_error(client.get("/api/thumbnail/1"), 500, "internal server error: a bug in clipworks")
    assert "a bug in the store" not in client.get("/api/thumbnail/1").text


def test_200_concurrent_requests_no_5xx(search_server, search_collection):
    """A bounded load test: 200 requests at once (searches, uploads, thumbnails); all answered 200, server alive."""
    upload = search_collection.red.read_bytes()

    async def one(client: httpx.AsyncClient, i: int) -> tuple[int, float]:
        start = time.perf_counter()
        if i % 4 == 0:
            r = await client.post("/api/search/image", files={"file": ("x.png", upload)}, params={"k": 5})
        elif i % 4 == 1:
            r = await client.get("/api/thumbnail/1")
        else:
            r = await client.get("/api/search", params={"q": f"a photo of {i % 50} {COLOURS[i % 8]} shapes", "k": 10})
        return r.status_code, time.perf_counter() - start

    async def burst() -> list[tuple[int, float]]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=search_server.url, limits=limits, timeout=120) as client:
            return await asyncio.gather(*(one(client, i) for i in range(200)))

    results = asyncio.run(burst())
    codes = [code for code, _ in results]
    assert codes == [200] * 200
    latencies = sorted(t for _, t in results)
    print(f"200 concurrent: p50 {latencies[99] * 1000:.0f} ms, p99 {latencies[197] * 1000:.0f} ms")
    assert search_server.process.poll() is None
    assert httpx.get(search_server.url + "/api/info").status_code == 200


def test_server_log_has_no_traceback(search_server):
    # Last in this file: every request above was answered without an unhandled exception in the server.
    assert "Traceback" not in search_server.log.read_text()


def test_model_threads_default_leaves_one_core_to_the_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    from clipworks.search.serve import default_model_threads

    for cores, expected in ((1, 1), (2, 1), (8, 7)):
        monkeypatch.setattr("os.sched_getaffinity", lambda pid, n=cores: set(range(n)))
        assert default_model_threads() == expected


def test_serve_refuses_zero_model_threads(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from clipworks import cli

    assert cli.main(["serve", str(tmp_path), "--model-threads", "0"]) == 2
    assert capsys.readouterr().err.strip().endswith("--model-threads 0: at least 1")


def test_templates_are_cut_at_line_ends_only():
    """The `templates` field is cut at \\r\\n, \\r and \\n, as the labels field and a templates file are: a U+2028 or
    form feed inside a template stays in it."""
    from clipworks.search.serve import Limits, parse_templates

    assert parse_templates("a {}\r\nan {}\u2028drawing\ra {}\x0cmark\n\n", Limits()) == [
        "a {}", "an {}\u2028drawing", "a {}\x0cmark"]
    assert parse_templates(" \n", Limits()) == ["a photo of a {}."]
