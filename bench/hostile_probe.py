"""A hostile user's probe of clipworks: broken CSV/TSV files, CLI misuse, hostile checkpoints, fuzzed and very long
texts for the tokenizer, hostile HTTP requests. Each case states what handling it means; the summary (cases tried,
handled per group) goes to bench/RESULTS.md and the README's reliability section.

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
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from timing import append_results, cpu_line  # noqa: E402

from clipworks import create_model, load, save_checkpoint  # noqa: E402
from clipworks.data.tables import read_table  # noqa: E402
from clipworks.data.world import World, WorldConfig  # noqa: E402
from clipworks.errors import ClipworksError  # noqa: E402
from clipworks.models.tokenizer import get_tokenizer  # noqa: E402

Result = tuple[str, bool, str]  # (case, handled, what happened)


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
def http_cases(tmp: Path, checkpoint: Path) -> list[Result]:
    from fastapi.testclient import TestClient

    from clipworks.search.index import Index
    from clipworks.search.serve import Limits, create_app

    images = World(WorldConfig()).export("val", 24, tmp / "images")
    index, _ = Index.build(images / "images", checkpoint=checkpoint, out=tmp / "index", progress=False)
    client = TestClient(create_app(index, Limits()), raise_server_exceptions=False)
    png = (images / "images").glob("*.png").__next__().read_bytes()
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


def _png_header(width: int, height: int) -> bytes:
    """A valid PNG header of any size with tiny pixel data: what a decompression bomb looks like."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def main() -> None:
    print(cpu_line())
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        checkpoint = save_checkpoint(tmp / "tiny", create_model("RN-Tiny", seed=0))
        groups = {"CSV/TSV files": lambda: csv_cases(tmp),
                  "CLI misuse": lambda: cli_cases(tmp, checkpoint),
                  "hostile checkpoints": lambda: checkpoint_cases(tmp, checkpoint),
                  "tokenizer: fuzzed and very long texts": tokenizer_cases,
                  "HTTP requests": lambda: http_cases(tmp, checkpoint)}
        table = ["| probe group | cases | handled | not handled |", "|---|---:|---:|---|"]
        for group, run in groups.items():
            results = run()
            for case, ok, what in results:
                print(f"{'ok ' if ok else 'NOT'} {group}: {case}: {what}")
            failed = [case for case, ok, _ in results if not ok]
            table.append(f"| {group} | {len(results)} | {len(results) - len(failed)} | {'; '.join(failed) or '-'} |")
    print("\n".join(table))
    append_results("Hostile-input probe (bench/hostile_probe.py)", f"torch {torch.__version__}",
                   "Each case as a hostile user would try it; handled = the right rows or a one-line error naming "
                   "the file/flag (CSV, CLI: exit code 2, no traceback), a CheckpointError in < 5 s with no code run, "
                   "ids equal to OpenAI's and <= 1 us per character, an HTTP answer in < 5 s with the status that "
                   "names the fault and a JSON {\"error\": ...} holding the words that explain it.",
                   table)


if __name__ == "__main__":
    main()
