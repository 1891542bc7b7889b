"""A hostile user's probe of clipworks: training faults (kill -9, a full disk, corrupt data and checkpoints; in
bench/probe_training.py), broken CSV/TSV files, CLI misuse, hostile checkpoints, fuzzed and very long texts for the
tokenizer, hostile HTTP requests and 300 concurrent ones to a real server. Each case states what handling it means;
the summary (cases tried, handled per group) goes to bench/RESULTS.md and the README's reliability section.

Run with the test environment (it has the reference tokenizer, faiss, FastAPI): .venv/bin/python bench/hostile_probe.py
"""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from probe_training import training_cases  # noqa: E402
from timing import append_results, cpu_line  # noqa: E402

from clipworks import create_model, load, save_checkpoint  # noqa: E402
from clipworks.data.tables import read_table  # noqa: E402
from clipworks.data.world import World, WorldConfig  # noqa: E402
from clipworks.errors import ClipworksError  # noqa: E402
from clipworks.models.tokenizer import get_tokenizer  # noqa: E402
from clipworks.search.index import Index  # noqa: E402

Result = tuple[str, bool | None, str]  # (case, handled; None: could not be run here, what happened)


# ---------------------------------------------------------------- CSV / TSV
def csv_cases(tmp: Path) -> list[Result]:
    """(content, expected captions, or the substring of the expected one-line error)."""
    header = "filepath,caption\n"
    cases: list[tuple[str, bytes | str, str, list[str] | str]] = [
        ("newline in quotes", header + 'a.png,"two\nlines"\n', "csv", ["two\nlines"]),
        ("CRLF in quotes", header + 'a.png,"two\r\nlines"\r\n', "csv", ["two\r\nlines"]),
        ("U+2028 in quotes", header + 'a.png,"two\u2028lines"\n', "csv", ["two\u2028lines"]),
        ("U+2029 in quotes", header + 'a.png,"two\u2029lines"\n', "csv", ["two\u2029lines"]),
        ("U+0085 in quotes", header + 'a.png,"two\u0085lines"\n', "csv", ["two\u0085lines"]),
        ("form feed in quotes", header + 'a.png,"two\x0clines"\n', "csv", ["two\x0clines"]),
        ("U+2028 unquoted", header + "a.png,two\u2028lines\n", "csv", ["two\u2028lines"]),
        ("CR-only line ends", header.replace("\n", "\r") + "a.png,x\rb.png,y\r", "csv", ["x", "y"]),
        ("doubled quotes", header + 'a.png,"say ""hi"", then go"\n', "csv", ['say "hi", then go']),
        ("byte-order mark", "\ufeff" + header + "a.png,x\n", "csv", ["x"]),
        ("blank lines", header + "\na.png,x\n\n\nb.png,y\n", "csv", ["x", "y"]),
        ("TSV with commas", "filepath\tcaption\na.png\tx, y\n", "tsv", ["x, y"]),
        ("unclosed quote, 16 rows", header + 'a.png,"never closed\n' + "".join(f"{i}.png,r\n" for i in range(15)),
         "csv", "line 2: a quote opened in this row is never closed"),
        ("not UTF-8", (header + "a.png,caf").encode() + b"\xe9\n", "csv", "line 2: byte 0xe9 is not UTF-8"),
        ("empty file", "", "csv", "is empty"),
        ("header only", header, "csv", "line 1: a header but no rows"),
        ("missing column", "path,text\na.png,x\n", "csv", "line 1: the header has no column 'filepath'"),
        ("a directory", "", "dir", "is a directory"),
    ]
    results = []
    for name, content, kind, expected in cases:
        path = tmp / f"case.{kind}"
        if kind == "dir":
            path = tmp / "a-directory.csv"
            path.mkdir(exist_ok=True)
        else:
            path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        try:
            rows = read_table(path, columns=("filepath", "caption"), flags="--image-key/--caption-key")
            got: list[str] | str = [r["caption"] for r in rows]
        except (ClipworksError, FileNotFoundError) as e:
            got = str(e)
        except Exception as e:  # noqa: BLE001 - anything else is unhandled
            results.append((name, False, f"{type(e).__name__}: {e}"))
            continue
        ok = got == expected if isinstance(expected, list) else isinstance(got, str) and expected in got
        results.append((name, ok, repr(got)[:100]))
    return results


# ---------------------------------------------------------------- CLI misuse
def cli_cases(tmp: Path, checkpoint: Path) -> list[Result]:
    (tmp / "notes.png").write_text("not an image")
    (tmp / "empty").mkdir(exist_ok=True)
    ck, out = str(checkpoint), str(tmp / "out")
    cases = [
        ["train", "--model", "ViT-B-23"], ["train", "--no-such-flag", "1"], ["train", "--batch-size", "1"],
        ["train", "--steps", "0"], ["train", "--lr", "-1"], ["train", "--data", "missing.csv"],
        ["train", "--data", str(tmp / "empty")], ["train", "--config", str(tmp / "notes.png")],
        ["train", "--precision", "fp8"], ["train", "--patch-dropout", "1.5"], ["demo", "--steps", "-1"],
        ["convert", ck, out, "--to", "native", "--image-size", "50"],
        ["convert", ck, out, "--to", "native", "--context-length", "-3"],
        ["convert", str(tmp / "notes.png"), out, "--to", "native"], ["convert", "nowhere", out, "--to", "hf"],
        ["world", "--out", out, "--n", "-5"], ["world", "--out", out, "--task", "nonsense"],
        ["shards", "--from", "world", "--out", out, "--samples-per-shard", "0"],
        ["zeroshot", "--checkpoint", ck, "--classes", "a,b", str(tmp / "notes.png")],
        ["zeroshot", "--checkpoint", ck, "--data", str(tmp / "empty")], ["zeroshot", "--checkpoint", ck],
        ["eval", "zeroshot", "--checkpoint", ck, "--data", str(tmp / "notes.png"), "--out", out],
        ["eval", "linear-probe", "--checkpoint", ck, "--train", str(tmp / "empty"), "--test", str(tmp / "empty")],
        ["eval", "report", "--checkpoint", ck, "--n-test", "0", "--out", out],
        ["index", "build", str(tmp / "empty"), "--checkpoint", ck, "--out", out],
        ["index", "build", str(tmp / "empty"), "--checkpoint", ck, "--out", out, "--kind", "ivf", "--nlist", "0"],
        ["search", str(tmp / "nowhere"), "a cat"], ["search", str(tmp / "empty")],
    ]
    results = []
    for args in cases:
        run = subprocess.run([sys.executable, "-m", "clipworks.cli", *args], capture_output=True, text=True,
                             timeout=300)
        lines = run.stderr.strip().splitlines()
        errors = [line for line in lines if line.startswith("clipworks") and ": error: " in line]
        ok = run.returncode == 2 and len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in run.stderr
        results.append((" ".join(args[:3]).replace(str(tmp), "TMP"), ok, (lines[-1] if lines else "")[:110]))
    return results


# ---------------------------------------------------------------- hostile checkpoints
def checkpoint_cases(tmp: Path, checkpoint: Path) -> list[Result]:
    weights = (checkpoint / "model.safetensors").read_bytes()
    config = json.loads((checkpoint / "config.json").read_text())

    def variant(name: str, edit: Callable[[dict], None] | None = None, data: bytes | None = None) -> Path:
        path = tmp / "ckpt" / name
        path.mkdir(parents=True, exist_ok=True)
        cfg = json.loads(json.dumps(config))
        if edit is not None:
            edit(cfg["model"])
        (path / "config.json").write_text(json.dumps(cfg))
        (path / "model.safetensors").write_bytes(weights if data is None else data)
        return path

    def put(keys: str, value: object) -> Callable[[dict], None]:
        def edit(cfg: dict) -> None:
            *parents, last = keys.split(".")
            for key in parents:
                cfg = cfg[key]
            cfg[last] = value
        return edit

    class Evil:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {tmp / 'pwned'}",))

    torch.save({"state_dict": Evil()}, tmp / "evil.pt")
    state = load(checkpoint)[0].state_dict()
    wrong = dict(state)
    wrong["text_projection"] = torch.zeros(3, 3)
    save_file({k: v.contiguous() for k, v in wrong.items()}, tmp / "wrong.safetensors")
    cases = {
        "10^6 text layers": variant("deep", put("text.layers", 10**6)),
        "10^5 ResNet layers a stage": variant("resnet", put("vision.layers", [10**5] * 4)),
        "negative width": variant("negative", put("text.width", -128)),
        "zero heads (head width 0)": variant("heads", put("text.head_width", 0)),
        "width not divisible by heads": variant("divisible", put("text.head_width", 48)),
        "context length 0": variant("context", put("text.context_length", 0)),
        "huge vocabulary": variant("vocab", put("text.vocab_size", 10**12)),
        "string for an int": variant("string", put("embed_dim", "128")),
        "config not an object": variant("list", lambda cfg: cfg.clear()),
        "truncated weights": variant("truncated", data=weights[: len(weights) // 2]),
        "random bytes as weights": variant("random", data=random.Random(0).randbytes(4096)),
        "empty weights file": variant("empty", data=b""),
        "tensor shape off the config": tmp / "wrong.safetensors",
        "pickle that runs code": tmp / "evil.pt",
        "a text file": tmp / "notes.png",
    }
    results = []
    for name, path in cases.items():
        t0 = time.perf_counter()
        try:
            load(path)
            results.append((name, False, "loaded"))
            continue
        except ClipworksError as e:
            seconds = time.perf_counter() - t0
            ok = seconds < 5 and not (tmp / "pwned").exists()
            results.append((name, ok, f"{seconds:.2f} s: {str(e)[:90]}"))
        except Exception as e:  # noqa: BLE001
            results.append((name, False, f"{type(e).__name__}: {str(e)[:90]}"))
    return results


# ---------------------------------------------------------------- tokenizer
def tokenizer_cases(n_fuzz: int = 12_000) -> list[Result]:
    from reference import openai_simple_tokenizer

    ours, theirs = get_tokenizer(), openai_simple_tokenizer().SimpleTokenizer()
    rng = random.Random(0)
    alphabet = ("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ 0123456789 .,;:!?'\"-_/\\()[]{}<>@#&*%$ éèüñçß "
                "日本語中文한국어 العربية עברית ไทย ♥★☃ 😀👍🏽🇫🇷 \t\n\u200b\u00a0\u2028")
    mismatched = []
    for i in range(n_fuzz):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120)))
        if ours.encode(text) != theirs.encode(text):
            mismatched.append(text)
    results = [(f"{n_fuzz:,} fuzzed strings equal OpenAI's ids", not mismatched, f"{len(mismatched)} differ")]
    long_words = {"random letters": "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(3000)),
                  "one letter": "a" * 3000, "syllables": "ing" * 1000, "digits": "7" * 3000}
    for name, word in long_words.items():
        results.append((f"3k-character word ({name}) equals OpenAI's ids", ours.encode(word) == theirs.encode(word),
                        ""))
    from tokenizer_classes import inputs, per_char

    # Each hostile input class of bench/tokenizer_classes.py, on a fresh tokenizer each time (no cache helps).
    for name, text in inputs().items():
        for how, label in (("encode", "encode"), ("tokenize", "tokenize, truncate")):
            us = per_char(how, text)[0].wall
            results.append((f"100k-character text ({name}, {label}) at <= 1 us/char", us <= 1.0, f"{us:.2f} us/char"))
    return results


def _seconds(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ---------------------------------------------------------------- HTTP
def world_index(tmp: Path, checkpoint: Path) -> tuple[Index, Path]:
    """An index (in tmp/index) of 24 world images embedded by `checkpoint`, and the images' folder. Building it again
    finds every image indexed already and embeds nothing."""
    images = tmp / "images" / "images"
    if not images.is_dir():
        World(WorldConfig()).export("val", 24, tmp / "images")
    index, _ = Index.build(images, checkpoint=checkpoint, out=tmp / "index", progress=False)
    return index, images


def http_cases(tmp: Path, checkpoint: Path) -> list[Result]:
    from fastapi.testclient import TestClient

    from clipworks.search.serve import Limits, create_app

    index, images = world_index(tmp, checkpoint)
    client = TestClient(create_app(index, Limits()), raise_server_exceptions=False)
    png = next(images.glob("*.png")).read_bytes()
    upload = lambda data=png, **fields: {"files": {"file": ("a.png", data, "image/png")}, "data": fields}  # noqa: E731
    labels = ",".join(f"label{i}" for i in range(5000))
    # (method, url, request, the status that handles it, words its {"error": ...} must hold; None: any answer < 400)
    requests: list[tuple[str, str, dict, int, str | None]] = [
        ("GET", "/api/thumbnail/9223372036854775808", {}, 404, "no indexed image has id"),
        ("GET", "/api/thumbnail/-1", {}, 404, "no indexed image has id"),
        ("GET", "/api/thumbnail/" + "9" * 40, {}, 404, "no indexed image has id"),
        ("GET", "/api/thumbnail/abc", {}, 422, "item_id"),
        ("GET", "/api/nowhere", {}, 404, "there is no GET /api/nowhere"),
        ("DELETE", "/api/search", {}, 405, "use GET"),
        ("GET", "/api/search?q=" + "a" * 5000, {}, 422, "at most 1000 characters"),
        ("GET", "/api/search?q=cat&k=-1", {}, 422, "k:"),
        ("GET", "/api/search?q=cat&k=10000000000000000000000", {}, 422, "k:"),
        ("GET", "/api/search?k=3", {}, 422, "q: Field required"),
        ("GET", "/api/search?q=%00%ff", {}, 200, None),  # odd bytes in a query are still a query: answered
        ("POST", "/api/search/image", {"content": b"--x\r\nbroken", "headers": {"content-type":
                                                                                "multipart/form-data; boundary=x"}},
         422, "file"),
        ("POST", "/api/search/image", upload(b"not an image"), 400, "not a readable image"),
        ("POST", "/api/search/image", upload(png[: len(png) // 2]), 400, "not a readable image"),
        ("POST", "/api/search/image", upload(_png_header(30_000, 30_000)), 413, "pixels"),
        ("POST", "/api/search/image", upload(b"\0" * (11 * 2**20)), 413, "bytes"),
        ("POST", "/api/classify", upload(labels=""), 422, "labels"),
        ("POST", "/api/classify", upload(labels=labels), 422, "labels"),
        ("POST", "/api/classify", upload(labels="a" * 20_000 + ",b"), 422, "20,000 characters"),
        ("POST", "/api/classify", upload(labels=",".join(f"l{i}" for i in range(150)),
                                         templates="\n".join(f"a {{}} number {i}" for i in range(10))),
         422, "prompts"),
        ("POST", "/api/classify", upload(labels="a,b", templates="no placeholder"), 400, "'{}'"),
        ("POST", "/api/classify", upload(labels="a,b", templates="{} and {}"), 400, "'{}'"),
    ]
    results = []
    for method, url, kwargs, status, words in requests:
        t0 = time.perf_counter()
        response = client.request(method, url, **kwargs)
        seconds = time.perf_counter() - t0
        try:
            body = response.json()
        except ValueError:
            body = {}
        error = body.get("error", "") if isinstance(body, dict) else ""
        ok = (response.status_code == status and seconds < 5
              and (words is None or (isinstance(error, str) and words in error and list(body) == ["error"])))
        results.append((f"{method} {url[:48]} -> {status}", ok, f"{response.status_code} in {seconds:.2f} s: "
                                                                f"{str(error or body)[:70]}"))
    return results


# ---------------------------------------------------------------- concurrent HTTP
def concurrent_http_cases(tmp: Path, checkpoint: Path, n: int = 300, bound: float = 60.0) -> list[Result]:
    """`clipworks serve` in its own process, sent `n` requests at once from as many threads (text and image
    searches, classifications, thumbnails, info, malformed ones). A request is handled when it is answered within
    `bound` seconds of the burst's start with its right status and body: 200 and the endpoint's JSON keys (or a
    JPEG), or a malformed one's 4xx and {"error": ...}; the server must answer /api/info afterwards."""
    import httpx

    index, images = world_index(tmp, checkpoint)
    ids = [hit.id for hit in index.search("a photo", k=5)]
    png = next(images.glob("*.png")).read_bytes()
    upload = {"files": {"file": ("a.png", png, "image/png")}}
    label_sets = ["red,green,blue", "a circle,a square", "cat,dog,car,tree"]
    malformed = [("GET", "/api/thumbnail/abc", {}, 422), ("GET", "/api/search?k=3", {}, 422),
                 ("GET", "/api/thumbnail/9223372036854775808", {}, 404), ("GET", "/api/nowhere", {}, 404),
                 ("POST", "/api/classify", {**upload, "data": {"labels": ""}}, 422),
                 ("POST", "/api/search/image", {"files": {"file": ("a.png", b"not an image", "image/png")}}, 400)]
    search_keys, hit_keys = {"query", "k", "results"}, {"id", "score", "path", "caption", "thumbnail"}

    def request(i: int) -> tuple[str, str, str, dict, Callable[[httpx.Response], bool]]:
        """(kind, method, url, request, the check of its answer) of request i."""
        kind = ("text search", "text search", "text search", "image search", "classify", "thumbnail", "thumbnail",
                "info", "malformed", "malformed")[i % 10]
        if kind == "text search":
            return kind, "GET", f"/api/search?q=a photo of {i} shapes&k=5", {}, lambda r: (
                r.status_code == 200 and set(r.json()) == search_keys and len(r.json()["results"]) == 5
                and all(hit_keys <= set(hit) for hit in r.json()["results"]))
        if kind == "image search":
            return kind, "POST", "/api/search/image?k=3", upload, lambda r: (
                r.status_code == 200 and set(r.json()) == search_keys and len(r.json()["results"]) == 3)
        if kind == "classify":
            labels = label_sets[i % 3]
            return kind, "POST", "/api/classify", {**upload, "data": {"labels": labels}}, lambda r: (
                r.status_code == 200 and set(r.json()) == {"labels", "templates"}
                and sorted(x["label"] for x in r.json()["labels"]) == sorted(labels.split(","))
                and abs(sum(x["prob"] for x in r.json()["labels"]) - 1) < 1e-3)
        if kind == "thumbnail":
            return kind, "GET", f"/api/thumbnail/{ids[i % len(ids)]}", {}, lambda r: (
                r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8")
        if kind == "info":
            return kind, "GET", "/api/info", {}, lambda r: (
                r.status_code == 200 and set(r.json()) == {"images", "kind", "embed_dim", "limits"}
                and r.json()["images"] == 24)
        method, url, kwargs, status = malformed[i % len(malformed)]
        return f"malformed ({status})", method, url, kwargs, lambda r: (
            r.status_code == status and list(r.json()) == ["error"] and isinstance(r.json()["error"], str))

    log = tmp / "server.log"
    with open(log, "w") as err:
        server = subprocess.Popen([sys.executable, "-m", "clipworks.cli", "serve", str(tmp / "index"), "--port", "0"],
                                  stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        line = server.stdout.readline()  # "serving ... at http://127.0.0.1:PORT/ (Ctrl-C to stop)"
        if " at http://" not in line:
            return [("the server starts", False, f"{line!r}; {log.read_text()[-200:]}")]
        url = line.split(" at ")[1].split("/ ")[0]
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        with httpx.Client(base_url=url, limits=limits, timeout=bound) as client:
            for _ in range(600):  # the socket is bound before the server answers on it
                try:
                    if client.get("/api/info").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            together = threading.Barrier(n, timeout=60)

            def send(i: int) -> Result:
                kind, method, path, kwargs, check = request(i)
                together.wait()
                t0 = time.perf_counter()
                try:
                    r = client.request(method, path, **kwargs)
                    ok = check(r) and time.perf_counter() - start <= bound
                    what = f"{r.status_code} in {time.perf_counter() - t0:.2f} s"
                except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:  # dropped, or not the JSON expected
                    ok, what = False, f"{type(e).__name__}: {str(e)[:80]}"
                return f"{kind} #{i}", ok, what

            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=n) as pool:
                results = list(pool.map(send, range(n)))
            seconds = time.perf_counter() - start
            alive = client.get("/api/info").status_code == 200 and server.poll() is None
        kinds = sorted({case.split(" #")[0] for case, _, _ in results})
        summary = "; ".join(f"{kind} {sum(ok for c, ok, _ in results if c.startswith(kind + ' #'))}/"
                            f"{sum(c.startswith(kind + ' #') for c, _, _ in results)}" for kind in kinds)
        print(f"concurrent HTTP: {n} requests answered in {seconds:.1f} s; handled by kind: {summary}")
        traceback = "Traceback" in log.read_text()
        results.append((f"after {n} at once: /api/info answers, no traceback in the server's log", alive
                        and not traceback, f"the {n} took {seconds:.1f} s; {summary}"))
        return results
    finally:
        server.terminate()
        server.wait(timeout=30)


def _png_header(width: int, height: int) -> bytes:
    """A valid PNG header of any size with tiny pixel data: what a decompression bomb looks like."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def main() -> None:
    print(cpu_line())
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        checkpoint = save_checkpoint(tmp / "tiny", create_model("RN-Tiny", seed=0))
        groups = {"training faults": lambda: training_cases(tmp),
                  "CSV/TSV files": lambda: csv_cases(tmp),
                  "CLI misuse": lambda: cli_cases(tmp, checkpoint),
                  "hostile checkpoints": lambda: checkpoint_cases(tmp, checkpoint),
                  "tokenizer: fuzzed and very long texts": tokenizer_cases,
                  "HTTP requests": lambda: http_cases(tmp, checkpoint),
                  "concurrent HTTP requests": lambda: concurrent_http_cases(tmp, checkpoint)}
        table = ["| probe group | cases | handled | not handled | seconds |", "|---|---:|---:|---|---:|"]
        for group, run in groups.items():
            t0 = time.perf_counter()
            results = run()
            seconds = time.perf_counter() - t0
            for case, ok, what in results:
                if not ok or len(results) <= 50:  # a large group prints its own summary
                    print(f"{'ok ' if ok else '-- ' if ok is None else 'NOT'} {group}: {case}: {what}")
            tried = [(case, ok) for case, ok, _ in results if ok is not None]
            failed = [case for case, ok in tried if not ok]
            missing = "; ".join(failed[:6]) + (f"; and {len(failed) - 6} more" if len(failed) > 6 else "")
            not_run = [case for case, ok, _ in results if ok is None]
            missing += f"{'; ' if missing else ''}not run here: {'; '.join(not_run)}" if not_run else ""
            table.append(f"| {group} | {len(tried)} | {len(tried) - len(failed)} | {missing or '-'} | {seconds:.0f} |")
    total = f"Whole probe: {time.perf_counter() - began:.0f} s."
    print("\n".join(table), "\n" + total)
    append_results("Hostile-input probe (bench/hostile_probe.py)", f"torch {torch.__version__}",
                   "Each case as a hostile user would try it; handled = a resume after kill -9 whose final weights "
                   "equal an uninterrupted run's tensor for tensor (training faults: RN-Tiny through the CLI, fp32, "
                   "batch 16), the right rows or a one-line error naming the file/flag (training, CSV, CLI: exit code "
                   "2, no traceback), a CheckpointError in < 5 s with no code run, ids equal to OpenAI's and <= 1 us "
                   "per character, an HTTP answer in < 5 s with the status that names the fault and a JSON "
                   "{\"error\": ...} holding the words that explain it; concurrent: each of 300 requests sent at once "
                   "to `clipworks serve` answered within 60 s with its right status and JSON keys, and /api/info "
                   "answered after.", [*table, "", total])


if __name__ == "__main__":
    main()
