"""Fuzz every reader of hostile input and the CI client, and count tracebacks and hangs.

Targets (each a generator of hostile inputs and the one call that must take them):

- ``yaml``: model_config.yaml texts — real ones (../shared's Megatron cases, else cases/) mutated
  (bytes, digits, aliases, anchors, nesting, billion-laughs levels, tags) — through
  ``read_megatron_case`` and ``case.load_yaml``: a case or one ``FormatError``;
- ``golden``: golden JSON texts — real ones mutated (digits in step keys, nesting, duplicate keys,
  odd values, truncation, many metrics) — through ``formats.golden.read_any_golden``;
- ``api``: API answers' bytes through ``bounded.load_json_bytes``;
- ``zip``: artifact archives mutated (bytes, method and flag fields, truncation) through
  ``fetch.land.Archive``: names, members or one ``FetchError``;
- ``http``: a hostile loopback server (random statuses, lying lengths, trickles, redirects and
  ``Link`` pages to another loopback origin and to other schemes, huge and deep bodies) against
  ``fetch.http.Api`` (pages, json, download): items or one ``FetchError``, and the token never
  reaches the second origin;
- ``text``: random text through the sanitiser: no control character, no workflow command;
- ``--races N``: N rounds of four ``golden approve`` processes on a fresh git store, all exit 0.

A traceback is any other exception; a hang is an input that takes longer than ``--hang-seconds``
(SIGALRM). Prints inputs tried per target, tracebacks, hangs, token leaks and peak memory (RSS);
exit 1 on any.

    python bench/fuzz_inputs.py [--seconds 120] [--seed 0] [--hang-seconds 10] [--races 0]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import signal
import sys
import tempfile
import time
import traceback
import zipfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests.* below

from goldens.core.errors import GoldenError
from goldens.core.sanitize import line, markdown, text
from goldens.fetch.http import Api, Limits
from goldens.fetch.land import Archive
from goldens.files.bounded import load_json_bytes
from goldens.files.case import load_yaml
from goldens.files.formats.golden import read_any_golden
from goldens.megatron.case import read_megatron_case
from tests.builders import training_doc
from tests.fakes.hostile_server import HostileServer

REPO = Path(__file__).resolve().parents[1]
TOKEN = "fuzz-token-91c2"
SHARED = REPO.parent / "shared" / "fixtures" / "megatron" / "test_cases"


class Hang(Exception):
    pass


def _alarm(*_: object) -> None:
    raise Hang()


# ---------------------------------------------------------------- seeds

def seeds(pattern: str, fallback: list[str]) -> list[str]:
    found = sorted(SHARED.rglob(pattern))[:200] if SHARED.is_dir() else []
    found += sorted((REPO / "cases").rglob(pattern))[:50]
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in found if p.stat().st_size < 2 << 20]
    return texts or fallback


def bomb(levels: int, width: int) -> str:
    names = "abcdefghijklmnopqrstuvwxyz"
    lines = [f"a: &a [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"{names[i]}: &{names[i]} [" + ", ".join([f"*{names[i - 1]}"] * width) + "]")
    return "\n".join(lines) + f"\nMETRICS: *{names[levels - 1]}\n"


FRAGMENTS = ["&x ", "*x", "<<: *x\n", "!!python/object:os.system ", "!!binary ", "? ", "- ", "[", "]", "{", "}",
             ": ", "\n  ", "'", '"', "\\u0000", "\x1b[31m", "\ufeff", "9" * 5000, "²", "null", "~", "1e999",
             "0x" + "f" * 80, "1:2:3:4:5", "--train-iters: ", "METRICS: ", "TEST_TYPE: ckpt-resume\n", "\t",
             "%YAML 1.1\n"]


def mutate_text(rng: random.Random, source: str, fragments: list[str]) -> str:
    chars = list(source)
    for _ in range(rng.randint(1, 6)):
        how = rng.random()
        at = rng.randint(0, len(chars))
        if how < 0.4:
            chars[at:at] = rng.choice(fragments)
        elif how < 0.6 and chars:
            del chars[at:at + rng.randint(1, 40)]
        elif how < 0.8 and chars:
            chars[at:at] = chars[rng.randint(0, len(chars) - 1):][:rng.randint(1, 200)]
        else:
            chars[at:at] = chr(rng.choice([0, 7, 8, 0x1b, 0x85, 0x2028, 0xfffe, rng.randint(0, 0x10ffff)]))
    return "".join(c for c in chars if not 0xd800 <= ord(c) <= 0xdfff)


def yaml_inputs(rng: random.Random):
    real = seeds("model_config.yaml", ["MODE: pretraining\nTEST_TYPE: regular\nMETRICS: [lm loss]\n"])
    while True:
        roll = rng.random()
        if roll < 0.1:
            yield bomb(rng.randint(2, 12), rng.randint(2, 12))
        elif roll < 0.15:
            yield "METRICS: " + "[" * rng.randint(10, 100_000)
        elif roll < 0.2:
            yield "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 40)))
        else:
            yield mutate_text(rng, rng.choice(real), FRAGMENTS)


GOLDEN_FRAGMENTS = ['"' + "1" * 4400 + '"', "1" * 5000, "[" * 3000, '{"values": ', '"nan"', "NaN", "-Infinity",
                    '"lm loss"', '"start_step": ', '"step_interval": 0', '"²"', '"\\ud800"', "1e400", ",", ":", "{",
                    "}", "null", "true", '"01"', '"values": []', "\x00", '"' + "x" * 10000 + '"']


def golden_inputs(rng: random.Random):
    real = seeds("golden_values_*.json", [json.dumps(training_doc([1, 2, 3, 4]), indent=4)])
    real = [t for t in real if len(t) < 400_000] or real[:5]
    while True:
        roll = rng.random()
        if roll < 0.05:
            yield json.dumps({f"m{i}": 1.0 for i in range(rng.choice([999, 1001, 50_000]))})
        elif roll < 0.1:
            yield "{" + ",".join(f'"{rng.choice(GOLDEN_FRAGMENTS)}": {rng.choice(GOLDEN_FRAGMENTS)}'
                                 for _ in range(rng.randint(1, 8))) + "}"
        else:
            yield mutate_text(rng, rng.choice(real), GOLDEN_FRAGMENTS)


def api_inputs(rng: random.Random):
    while True:
        for doc in golden_inputs(rng):
            data = doc.encode("utf-8", "surrogatepass")
            if rng.random() < 0.2:
                data = bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 300)))
            yield data
            break


def zip_inputs(rng: random.Random):
    while True:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", rng.choice([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])) as archive:
            for i in range(rng.randint(1, 5)):
                archive.writestr(rng.choice([f"golden_values_dev_x{i}.json", f"results/iteration={i}/r/a.json",
                                             "../evil.json", f"d/{i}/"]), os.urandom(rng.randint(0, 3000)))
        raw = bytearray(buffer.getvalue())
        for _ in range(rng.randint(1, 8)):
            roll = rng.random()
            at = rng.randrange(len(raw))
            if roll < 0.5:
                raw[at] = rng.randint(0, 255)
            elif roll < 0.7:
                del raw[at:]
                if not raw:
                    break
            elif roll < 0.85:
                header = raw.find(rng.choice([b"PK\x03\x04", b"PK\x01\x02"]))
                if header >= 0:
                    offset = header + rng.choice([6, 8, 10])
                    raw[offset:offset + 2] = rng.choice([1, 9, 12, 14, 98, 99, 0xffff]).to_bytes(2, "little")
            else:
                raw[at:at] = os.urandom(rng.randint(1, 64))
        yield bytes(raw)


# ---------------------------------------------------------------- the hostile server

def hostile_answer(rng: random.Random, other: str):
    """One scripted answer: a function of the request handler."""
    status = rng.choice([200, 200, 200, 301, 302, 307, 308, 401, 403, 404, 410, 429, 500, 502])
    body = rng.choice([b"[]", b"[{}]", b'[{"id": 1}]', b"[null]", b"{}", b'{"jobs": [{"id": 1, "name": "a"}]}',
                       b"[" * rng.randint(10, 300_000), b"1" * 5000, b"not json", os.urandom(200),
                       b'{"message": "\x1b]0;x\x07\\n::error::y"}', b"[" + b"{}," * 20000 + b"{}]"])
    headers = {}
    target = rng.choice([f"{other}/steal", "file:///etc/passwd", "data:,[]", "ftp://127.0.0.1/x", "/next",
                         "//127.0.0.1:1/x", "https://example.invalid/x", "http://[::1]:1/x", "\r\nX: y",
                         "javascript:alert(1)", "http://127.0.0.1:0/x", "http://%zz/"])
    if 300 <= status < 400:
        headers["Location"] = target
    if rng.random() < 0.5:
        headers["Link"] = f'<{target}>; rel="next"'
    if status in (403, 429):
        headers[rng.choice(["Retry-After", "X-RateLimit-Reset"])] = rng.choice(["9" * 30, "-1", "x", "60"])
        headers["X-RateLimit-Remaining"] = "0"
    length = rng.choice([None, None, len(body) + rng.randint(1, 1000), 10**15, 0])
    trickle = rng.random() < 0.05

    def answer(h):
        if trickle:
            h.send_response(200)
            h.send_header("Content-Length", "1000")
            h.end_headers()
            for _ in range(100):
                h.wfile.write(b" ")
                h.wfile.flush()
                time.sleep(0.2)
            return
        h.send(status, body, {k: v.replace("\r", "").replace("\n", "") for k, v in headers.items()}, length=length)
    return answer


def http_round(rng: random.Random, api_server: HostileServer, other: HostileServer, scratch: Path) -> None:
    api_server.routes.clear()
    for path in ("/list", "/next", "/zip", "/x"):
        api_server.route(path, hostile_answer(rng, other.url))
    other.json("/steal", [{"id": 9}])
    client = Api("GitHub", api_server.url, {"Authorization": f"Bearer {TOKEN}"},
                 limits=Limits(request_s=1.5, fetch_s=4.0, page_bytes=1 << 20, download_bytes=1 << 20, pages=5))
    call = rng.choice(["pages", "json", "download", "send"])
    if call == "pages":
        list(client.pages("/list"))
    elif call == "json":
        client.json("/x")
    elif call == "send":
        client.send("PATCH", "/x", {"body": "x"})
    else:
        client.download("/zip", scratch / "a.zip")


# ---------------------------------------------------------------- the run

def race_round(scratch: Path, index: int) -> list[str]:
    """Four approve processes on a fresh git store; the stderr of any that failed."""
    from tests.builders import LOSS, commit_all, git_repo, make_store, write_run
    from tests.test_approve_concurrency import race

    repo = git_repo(scratch / f"race{index}" / "repo")
    store = make_store(repo / "cases", ("c0", "c1", "c2", "c3"))
    for case in ("c0", "c1", "c2", "c3"):
        (store.root / case / "golden_values_dev_cpu.json").write_text(json.dumps(training_doc([1, 2, 3])))
    commit_all(repo, "seed")
    runs = [write_run(scratch / f"race{index}" / "runs", c, f"{c}-r", {"lm loss": LOSS})
            for c in ("c0", "c1", "c2", "c3")]
    results = race(scratch / f"race{index}", [["approve", str(r), "--store", str(store.root), "--reason", "race",
                                               "--approver", f"p{i}", "--env", "dev", "--platform", "cpu"]
                                              for i, r in enumerate(runs)])
    return [r.stderr for r in results if r.returncode != 0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="time for the input targets in all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hang-seconds", type=float, default=10.0)
    parser.add_argument("--races", type=int, default=0, help="rounds of four parallel approves on a fresh git store")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    signal.signal(signal.SIGALRM, _alarm)
    scratch = Path(tempfile.mkdtemp(prefix="fuzz-inputs-"))
    api_server, other = HostileServer(), HostileServer()
    tried: Counter[str] = Counter()
    tracebacks: list[tuple[str, str]] = []
    hangs: list[str] = []
    slowest: Counter[str] = Counter()
    generators = {"yaml": yaml_inputs(rng), "golden": golden_inputs(rng), "api": api_inputs(rng),
                  "zip": zip_inputs(rng)}
    weights = {"yaml": 3, "golden": 3, "api": 2, "zip": 2, "http": 1, "text": 1}
    expected = (GoldenError,)
    started = time.monotonic()
    while time.monotonic() - started < args.seconds:
        target = rng.choices(list(weights), list(weights.values()))[0]
        item = next(generators[target]) if target in generators else None
        t0 = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, args.hang_seconds)
        try:
            if target == "yaml":
                path = scratch / "model_config.yaml"
                path.write_text(item, encoding="utf-8", errors="surrogatepass")
                read_megatron_case(path)
                load_yaml(path)
            elif target == "golden":
                path = scratch / "golden_values_dev_x.json"
                path.write_bytes(item.encode("utf-8", "surrogatepass"))
                read_any_golden(path)
            elif target == "api":
                load_json_bytes(item)
            elif target == "zip":
                path = scratch / "a.zip"
                path.write_bytes(item)
                with Archive(path, "artifact x", Limits(member_bytes=1 << 20)) as archive:
                    for name in archive.names:
                        archive.read(name)
            elif target == "http":
                http_round(rng, api_server, other, scratch)
            else:
                sample = "".join(chr(rng.choice([rng.randint(0, 0x7f), rng.randint(0, 0x10ffff), 0x1b, 0x9b, 0x3a]))
                                 for _ in range(rng.randint(0, 60)))
                sample = "".join(c for c in sample if not 0xd800 <= ord(c) <= 0xdfff)
                for shown in (line(sample), text(sample)):
                    if "::" in shown or any((ord(c) < 32 and c not in "\n\t") or 0x7f <= ord(c) <= 0x9f for c in shown):
                        raise AssertionError(f"sanitised text kept {shown!r}")
                if "\n" in line(sample) or "\n" in markdown(sample):
                    raise AssertionError("a line kept a line break")
        except expected:
            pass
        except Hang:
            hangs.append(f"{target}: {repr(item)[:200]}")
        except Exception:
            tracebacks.append((target, traceback.format_exc()[-1500:] + f"\ninput: {repr(item)[:300]}"))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        slowest[target] = max(slowest[target], round(time.perf_counter() - t0, 3))
        tried[target] += 1
    leaks = other.reached(TOKEN)
    api_server.stop()
    other.stop()
    race_failures: list[str] = []
    for index in range(args.races):
        race_failures += race_round(scratch, index)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"inputs tried: {sum(tried.values()):,} in {time.monotonic() - started:.0f} s "
          f"({', '.join(f'{k} {v:,}' for k, v in sorted(tried.items()))})")
    print(f"slowest input per target (s): {dict(sorted(slowest.items()))}")
    print(f"tracebacks: {len(tracebacks)}")
    for target, trace in tracebacks[:5]:
        print(f"--- {target}\n{trace}")
    print(f"hangs (over {args.hang_seconds:g} s): {len(hangs)}")
    for hang in hangs[:5]:
        print(f"--- {hang}")
    print(f"token requests reaching the second origin: {len(leaks)}")
    if args.races:
        print(f"approve races: {args.races} rounds of 4 processes, {len(race_failures)} failed approve(s)")
        for failure in race_failures[:3]:
            print(f"--- {failure[-500:]}")
    print(f"peak memory (RSS): {peak_mb:.0f} MB")
    return 1 if tracebacks or hangs or leaks or race_failures else 0


if __name__ == "__main__":
    sys.exit(main())
