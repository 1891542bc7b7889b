"""`clipworks serve` as a real uvicorn server on a loopback port: search and classify answers, thumbnails only by id,
hostile and fuzzed uploads answered with 4xx and a message (never 5xx), 200 concurrent requests."""

import asyncio
import io
import random
import socket
import struct
import time
import zlib

import httpx
import pytest
from conftest import MAX_PIXELS, MAX_UPLOAD_BYTES
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
    return httpx.post(server.url + path, files={"file": (name, data)}, data=fields, timeout=30)


def test_info_and_page(search_server):
    info = httpx.get(search_server.url + "/api/info").json()
    assert (info["images"], info["kind"], info["embed_dim"]) == (42, "flat", 128)
    assert info["limits"]["max_upload_bytes"] == MAX_UPLOAD_BYTES and info["limits"]["max_pixels"] == MAX_PIXELS
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
        ("/api/classify", good, {"labels": ",".join(map(str, range(201)))}, 400, "at most 200"),
        ("/api/classify", good, {"labels": "a,b", "templates": "no slot"}, 400, "exactly one '{}'"),
        ("/api/classify", good, {"labels": "a,b", "templates": "{} and {}"}, 400, "exactly one '{}'"),
        ("/api/classify", good, {"labels": "a,b", "templates": "{0.__class__}{}"}, 400, "no other braces"),
        ("/api/classify", b"GIF89a\x01\x00\x01\x00", {"labels": "a,b"}, 400, "not an image in a format"),
    ]


@pytest.mark.parametrize("case", range(16))
def test_hostile_uploads_get_a_4xx_with_a_message(search_server, search_collection, case):
    path, data, fields, status, words = _hostile(search_collection)[case]
    r = post_file(search_server, path, data, **fields)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]


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
        assert r.status_code == status, r.text
        assert words in r.json()["error"]


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
