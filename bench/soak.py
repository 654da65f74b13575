#!/usr/bin/env python3
"""Soak test of `gpt serve` on loopback (bounded: about --seconds of load, then the shutdown).

Starts `GPT serve --port PORT --parallel 4` on a free loopback port and, for --seconds, runs at once:
32 streaming clients (chat and completions, each checked for `data: [DONE]`), slow readers (a small
receive buffer, a few bytes at a time), clients that vanish after one event (RST or FIN), 300 idle
connections (silent, half a request line, half the headers; reopened when the server closes them),
oversized bodies (a Content-Length beyond --max-body, a real body beyond it, a chunked one, and one
exactly at the limit that must pass), stalled bodies (headers sent, body never finished), one client
for embeddings and non-streamed completions, and a /health poller every 50 ms (its own process, a
fresh connection per poll). Then it reads the RSS and /metrics, and sends SIGTERM while streams run,
requests are half sent and connections are idle, and times the exit.

Fails (exit 1) if /health ever took over 100 ms or failed, if the server crashed, or if it did not
exit within the shutdown grace (30 s) + 10 s of SIGTERM. Standard library only.

Usage: python3 bench/soak.py target/release/gpt [--seconds 60] [--clients 32] [--idle 300]
"""
import argparse
import collections
import errno
import http.client
import json
import multiprocessing
import os
import random
import re
import signal
import socket
import selectors
import struct
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"
GRACE = 30.0          # the server's shutdown grace period (Options::shutdown_grace; no flag sets it)
HEALTH_BAR = 0.100    # every /health answer within 100 ms
PROMPTS = [
    "Once upon a time, in a small village by the sea,",
    "The most important thing to know about volcanoes is",
    "Here is a short poem about the autumn rain:\n",
    "def quicksort(items):",
    "The history of the printing press begins",
    "My favourite recipe for a rainy day is",
    "In 1969, the first humans to walk on the Moon",
    "A good way to learn a new language is",
    "Explain in one paragraph why the sky is blue.",
    "List three uses of a paperclip.",
]


class Malformed(Exception):
    """The response did not have the shape it should (SSE lines, JSON, [DONE])."""


class StreamErrorEvent(Exception):
    """The stream carried an error event."""


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = collections.Counter()

    def add(self, key, n=1):
        with self.lock:
            self.c[key] += n


def classify(e):
    """The kind of a failed request, from its exception."""
    if isinstance(e, Malformed):
        return "malformed"
    if isinstance(e, StreamErrorEvent):
        return "error_event"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(e, http.client.RemoteDisconnected):
        return "closed_without_response"
    if isinstance(e, http.client.IncompleteRead):
        return "incomplete_body"
    if isinstance(e, http.client.HTTPException):
        return "malformed"
    if isinstance(e, ConnectionRefusedError):
        return "conn_refused"
    if isinstance(e, ConnectionResetError):
        return "conn_reset"
    if isinstance(e, BrokenPipeError):
        return "broken_pipe"
    if isinstance(e, OSError):
        return "conn_error_" + errno.errorcode.get(e.errno or 0, str(e.errno))
    return "other_" + type(e).__name__


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def proc_status(pid, field):
    """A /proc/PID/status field in MiB (VmRSS, VmHWM), None if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Conn(http.client.HTTPConnection):
    """An HTTPConnection with an optional small receive buffer (set before connect, so the TCP
    window stays small and the server really has to wait for the reader)."""

    def __init__(self, port, timeout, rcvbuf=None):
        super().__init__(HOST, port, timeout=timeout)
        self.rcvbuf = rcvbuf

    def connect(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        if self.rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        s.connect((self.host, self.port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = s


def get(port, path, timeout=5):
    c = Conn(port, timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def check_sse(raw, chat):
    """Validates a streamed body: `data: {json}` events, no error event, a finish_reason, and
    `data: [DONE]` last. Returns the number of content events."""
    lines = [l.rstrip("\r") for l in raw.decode("utf-8", "replace").split("\n")]
    events = [l for l in lines if l.strip()]
    if not events:
        raise Malformed("empty stream")
    if events[-1] != "data: [DONE]":
        for l in events:
            if l.startswith("data: {") and '"error"' in l:
                raise StreamErrorEvent(l[:200])
        raise Malformed(f"no [DONE] at the end: {events[-1][:80]!r}")
    content, finished = 0, False
    for l in events[:-1]:
        if l.startswith(":"):
            continue  # an SSE comment (keep-alive)
        if not l.startswith("data: "):
            raise Malformed(f"not an SSE data line: {l[:80]!r}")
        try:
            obj = json.loads(l[6:])
        except ValueError:
            raise Malformed(f"not JSON: {l[:80]!r}")
        if "error" in obj:
            raise StreamErrorEvent(str(obj["error"])[:200])
        for ch in obj.get("choices") or []:
            if ch.get("finish_reason"):
                finished = True
            if chat:
                if (ch.get("delta") or {}).get("content"):
                    content += 1
            elif ch.get("text"):
                content += 1
    if not finished:
        raise Malformed("no finish_reason before [DONE]")
    return content


class Soak:
    def __init__(self, args, port, model_id):
        self.args = args
        self.port = port
        self.model_id = model_id
        self.stop = threading.Event()
        self.sent = Tally()       # requests by kind
        self.out = Tally()        # (kind, outcome)
        self.notes = []           # anomalies seen by clients
        self.notes_lock = threading.Lock()
        self.tokens = Tally()
        self.idle_lifetimes = collections.defaultdict(list)  # variant -> seconds until closed
        self.idle_replies = Tally()                           # (variant, first bytes of a reply)
        self.idle_open_peak = 0
        self.stalled = []         # (seconds held, how it ended)

    def note(self, text):
        with self.notes_lock:
            if len(self.notes) < 40:
                self.notes.append(text)

    def body(self, rng, chat, stream=True):
        p = rng.choice(PROMPTS)
        b = {"model": self.model_id, "max_tokens": rng.randint(32, 64), "temperature": 0.8,
             "seed": rng.randint(0, 1 << 30), "stream": stream}
        if stream:
            b["stream_options"] = {"include_usage": True}
        if chat:
            b["messages"] = [{"role": "user", "content": p}]
        else:
            b["prompt"] = p
        return b

    def non200(self, kind, r):
        """Counts a non-200 answer; returns the seconds to wait before retrying."""
        data = r.read()
        if r.status == 503:
            why = "503_conn_cap" if b"connection limit" in data else (
                "503_shutting_down" if b"shutting" in data.lower() else "503_queue")
            self.out.add((kind, why))
            try:
                return min(float(r.getheader("Retry-After") or 1), 2.0)
            except ValueError:
                return 1.0
        self.out.add((kind, f"status_{r.status}"))
        self.note(f"{kind}: HTTP {r.status}: {data[:160]!r}")
        return 0.5

    # -- the clients ---------------------------------------------------------------------------

    def streamer(self, i):
        rng = random.Random(i)
        while not self.stop.is_set():
            chat = rng.random() < 0.5
            kind = "stream_chat" if chat else "stream_completions"
            self.sent.add(kind)
            c = Conn(self.port, self.args.timeout)
            wait = 0
            try:
                c.request("POST", "/v1/chat/completions" if chat else "/v1/completions",
                          json.dumps(self.body(rng, chat)), {"Content-Type": "application/json"})
                r = c.getresponse()
                if r.status != 200:
                    wait = self.non200(kind, r)
                else:
                    ctype = r.getheader("Content-Type") or ""
                    if not ctype.startswith("text/event-stream"):
                        raise Malformed(f"Content-Type {ctype!r}")
                    n = check_sse(r.read(), chat)
                    self.tokens.add(kind, n)
                    self.out.add((kind, "ok"))
            except Exception as e:
                k = classify(e)
                self.out.add((kind, k))
                if k not in ("timeout",):
                    self.note(f"{kind}: {k}: {e!r}"[:240])
                wait = 0.5
            finally:
                c.close()
            if wait:
                time.sleep(wait)

    def slow_reader(self, i):
        rng = random.Random(1000 + i)
        while not self.stop.is_set():
            kind = "slow_reader"
            self.sent.add(kind)
            chat = i % 2 == 0
            c = Conn(self.port, self.args.timeout, rcvbuf=2048)
            try:
                c.request("POST", "/v1/chat/completions" if chat else "/v1/completions",
                          json.dumps(self.body(rng, chat)), {"Content-Type": "application/json"})
                r = c.getresponse()
                if r.status != 200:
                    time.sleep(self.non200(kind, r))
                    continue
                buf = bytearray()
                t0 = time.monotonic()
                while True:
                    chunk = r.read(48)
                    if not chunk:
                        break
                    buf += chunk
                    time.sleep(0.03)
                    if time.monotonic() - t0 > self.args.timeout:
                        raise TimeoutError("slow read over the client timeout")
                check_sse(bytes(buf), chat)
                self.out.add((kind, "ok"))
            except Exception as e:
                k = classify(e)
                self.out.add((kind, k))
                self.note(f"{kind}: {k}: {e!r}"[:240])
                time.sleep(0.5)
            finally:
                c.close()

    def vanisher(self, i):
        rng = random.Random(2000 + i)
        n = 0
        while not self.stop.is_set():
            kind = "vanish"
            self.sent.add(kind)
            chat = rng.random() < 0.5
            c = Conn(self.port, self.args.timeout)
            rst = n % 2 == 0
            n += 1
            try:
                b = self.body(rng, chat)
                b["max_tokens"] = 256  # long enough that it is still running when we leave
                c.request("POST", "/v1/chat/completions" if chat else "/v1/completions",
                          json.dumps(b), {"Content-Type": "application/json"})
                r = c.getresponse()
                if r.status != 200:
                    time.sleep(self.non200(kind, r))
                    continue
                while True:
                    line = r.readline()
                    if not line:
                        raise Malformed("stream ended before its first event")
                    if line.startswith(b"data: "):
                        break
                s = c.sock
                if rst:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    s.shutdown(socket.SHUT_RDWR)
                r.close()
                self.out.add((kind, "ok_rst" if rst else "ok_fin"))
            except Exception as e:
                k = classify(e)
                self.out.add((kind, k))
                self.note(f"{kind}: {k}: {e!r}"[:240])
            finally:
                c.close()
            time.sleep(rng.uniform(0.1, 0.6))

    def misc(self, i):
        """Embeddings and non-streamed completions."""
        rng = random.Random(3000 + i)
        while not self.stop.is_set():
            emb = rng.random() < 0.5
            kind = "embeddings" if emb else "completions_json"
            self.sent.add(kind)
            c = Conn(self.port, self.args.timeout)
            try:
                if emb:
                    body = {"model": self.model_id, "input": [rng.choice(PROMPTS), rng.choice(PROMPTS)]}
                    path = "/v1/embeddings"
                else:
                    body = self.body(rng, False, stream=False)
                    path = "/v1/completions"
                c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
                r = c.getresponse()
                if r.status != 200:
                    time.sleep(self.non200(kind, r))
                    continue
                try:
                    obj = json.loads(r.read())
                except ValueError:
                    raise Malformed("not JSON")
                if emb:
                    d = obj.get("data") or []
                    if len(d) != 2 or not all(isinstance(x.get("embedding"), list) and x["embedding"] for x in d):
                        raise Malformed(f"embeddings: {str(obj)[:120]}")
                elif not (obj.get("choices") and isinstance(obj["choices"][0].get("text"), str)):
                    raise Malformed(f"completion: {str(obj)[:120]}")
                self.out.add((kind, "ok"))
            except Exception as e:
                k = classify(e)
                self.out.add((kind, k))
                self.note(f"{kind}: {k}: {e!r}"[:240])
                time.sleep(0.5)
            finally:
                c.close()
            time.sleep(0.2)

    def oversize(self, i):
        """Bodies beyond the limit expect 413 (or the connection closed while the body is still
        being sent: counted apart); one exactly at the limit must be served."""
        rng = random.Random(4000 + i)
        limit = self.args.max_body
        n = i
        while not self.stop.is_set():
            variant = ("cl_only", "full_body", "chunked", "at_limit")[n % 4]
            n += 1
            kind = "oversize_" + variant
            self.sent.add(kind)
            s = None
            try:
                s = socket.create_connection((HOST, self.port), timeout=15)
                if variant == "cl_only":
                    # The headers claim 64 MiB; nothing follows. The answer must come anyway.
                    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              b"Content-Length: 67108864\r\n\r\n")
                elif variant == "full_body":
                    body = b'{"prompt": "' + b"a" * (limit + 4096) + b'"}'
                    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              b"Content-Length: %d\r\n\r\n" % len(body))
                    s.sendall(body)
                elif variant == "chunked":
                    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n")
                    chunk = b"a" * 65536
                    s.sendall(b"%x\r\n" % 12 + b'{"prompt": "' + b"\r\n")
                    for _ in range(limit // len(chunk) + 2):
                        s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                    s.sendall(b"2\r\n\"}\r\n0\r\n\r\n")
                else:  # at_limit: valid JSON padded with spaces to exactly the limit
                    core = json.dumps({"model": self.model_id, "prompt": rng.choice(PROMPTS), "max_tokens": 1}).encode()
                    body = core + b" " * (limit - len(core))
                    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
                    s.sendall(body)
                s.settimeout(self.args.timeout if variant == "at_limit" else 15)
                head = b""
                while b"\r\n" not in head:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
                if not m:
                    raise Malformed(f"no status line: {head[:60]!r}") if head else http.client.RemoteDisconnected("closed")
                status = int(m.group(1))
                want = 200 if variant == "at_limit" else 413
                if status == want:
                    self.out.add((kind, "ok_%d" % status))
                elif status == 503:
                    self.out.add((kind, "503"))
                else:
                    self.out.add((kind, f"status_{status}"))
                    self.note(f"{kind}: HTTP {status} (wanted {want}): {head[:160]!r}")
            except Exception as e:
                k = classify(e)
                if variant in ("full_body", "chunked") and k in ("conn_reset", "broken_pipe", "closed_without_response"):
                    # The server answered and closed while we were still sending: allowed.
                    k = "closed_while_sending"
                self.out.add((kind, k))
                if k != "closed_while_sending":
                    self.note(f"{kind}: {k}: {e!r}"[:240])
            finally:
                if s:
                    s.close()
            time.sleep(0.2)

    def stalled_body(self, i):
        """Headers complete, a third of the body, then nothing: how long does the server keep it?"""
        while not self.stop.is_set():
            self.sent.add("stalled_body")
            s = socket.create_connection((HOST, self.port), timeout=2)
            t0 = time.monotonic()
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 300\r\n\r\n" + b'{"prompt": "' + b"b" * 88)
            s.settimeout(0.5)
            how = "held_to_end"
            while not self.stop.is_set():
                try:
                    d = s.recv(4096)
                    how = ("answered_" + d[9:12].decode("latin1")) if d else "closed_by_server"
                    break
                except (socket.timeout, TimeoutError):
                    continue
                except OSError as e:
                    how = classify(e)
                    break
            held = time.monotonic() - t0
            self.stalled.append((held, how))
            self.out.add(("stalled_body", how))
            s.close()

    def idle_holder(self):
        """Keeps `--idle` idle connections open (three variants), reopening the ones the server
        closes; records how long each lived and what (if anything) the server wrote."""
        variants = [("silent", b""), ("half_request_line", b"GET /hea"),
                    ("half_headers", b"GET /health HTTP/1.1\r\nHost: x\r\n")]
        sel = selectors.DefaultSelector()
        opened = 0
        live = 0

        def open_one(k):
            nonlocal opened, live
            name, data = variants[k % len(variants)]
            try:
                s = socket.create_connection((HOST, self.port), timeout=2)
                if data:
                    s.sendall(data)
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ, (name, time.monotonic(), k))
                opened += 1
                live += 1
                self.sent.add("idle_" + name)
            except OSError as e:
                self.out.add(("idle_" + name, "open_" + classify(e)))

        for k in range(self.args.idle):
            open_one(k)
        self.idle_open_peak = live
        while not self.stop.is_set():
            for key, _ in sel.select(timeout=0.2):
                name, t0, k = key.data
                s = key.fileobj
                try:
                    d = s.recv(4096)
                except OSError as e:
                    d = None
                    how = classify(e)
                if d:
                    first = d.split(b"\r\n", 1)[0][:40].decode("latin1")
                    self.idle_replies.add((name, first))
                    how = "answered"
                elif d == b"":
                    how = "closed"
                sel.unregister(s)
                s.close()
                live -= 1
                self.idle_lifetimes[name].append(time.monotonic() - t0)
                self.out.add(("idle_" + name, "closed_by_server_" + how))
                open_one(k)
                self.idle_open_peak = max(self.idle_open_peak, live)
        self.idle_open_at_end = live
        for key in list(sel.get_map().values()):
            key.fileobj.close()
        sel.close()


def health_poller(port, conn, stop, interval=0.05, timeout=1.0):
    """Runs in its own process (no GIL shared with the clients): GET /health on a fresh
    connection every `interval`; sends back (wall time, latency, HTTP status or error, status)."""
    rows = []
    req = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    while not stop.is_set():
        wall = time.time()
        t0 = time.perf_counter()
        try:
            s = socket.create_connection((HOST, port), timeout=timeout)
            try:
                s.sendall(req)
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            finally:
                s.close()
            dt = time.perf_counter() - t0
            head, _, body = data.partition(b"\r\n\r\n")
            m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
            status = int(m.group(1)) if m else "malformed"
            try:
                st = json.loads(body).get("status")
            except ValueError:
                st = "malformed_json"
            rows.append((wall, dt, status, st))
        except Exception as e:
            rows.append((wall, time.perf_counter() - t0, classify(e), None))
        time.sleep(interval)
    conn.send(rows)
    conn.close()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")


def parse_metrics(text):
    reqs = collections.Counter()
    other = {}
    for line in text.splitlines():
        m = re.match(r'gpt_requests_total\{endpoint="([^"]*)",status="(\d+)"\} (\d+)', line)
        if m:
            reqs[(m.group(1), int(m.group(2)))] += int(m.group(3))
            continue
        m = re.match(r"(gpt_[a-z_]+) ([0-9.e+-]+)$", line)
        if m:
            other[m.group(1)] = float(m.group(2))
    return reqs, other


def shutdown_phase(srv, port, model_id, args, log):
    """SIGTERM with streams running, requests half sent and connections idle; returns a dict."""
    res = {"streams": collections.Counter(), "half": [], "idle": [], "after": None}
    idle = []
    for k in range(20):
        s = socket.create_connection((HOST, port), timeout=2)
        if k % 2:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        idle.append(("silent" if k % 2 == 0 else "half_headers", s))
    t_idle = time.monotonic()
    started = threading.Barrier(5)
    t_sig = [None]
    stream_end = []

    def streamer(i):
        rng = random.Random(9000 + i)
        c = Conn(port, args.timeout)
        try:
            body = {"model": model_id, "prompt": rng.choice(PROMPTS), "max_tokens": 64,
                    "temperature": 0.8, "seed": i, "stream": True}
            c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
            r = c.getresponse()
            if r.status != 200:
                r.read()
                res["streams"][f"status_{r.status}"] += 1
                started.wait(60)
                return
            first = r.readline()
            while not first.startswith(b"data: "):
                first = r.readline()
            started.wait(60)
            rest = r.read()
            check_sse(first + rest, False)
            res["streams"]["ok_done"] += 1
        except threading.BrokenBarrierError:
            res["streams"]["never_started"] += 1
        except Exception as e:
            started.abort()
            res["streams"][classify(e)] += 1
            log(f"shutdown stream: {e!r}")
        finally:
            if t_sig[0]:
                stream_end.append(time.monotonic() - t_sig[0])
            c.close()

    def half_sent(i):
        s = socket.create_connection((HOST, port), timeout=2)
        if i % 2 == 0:  # headers done, body incomplete
            what = "half_body"
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 300\r\n\r\n" + b'{"prompt": "' + b"c" * 50)
        else:           # headers incomplete
            what = "half_headers_post"
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Len")
        return what, s

    ts = [threading.Thread(target=streamer, args=(i,), daemon=True) for i in range(4)]
    for t in ts:
        t.start()
    half = [half_sent(i) for i in range(4)]
    try:
        started.wait(120)
    except threading.BrokenBarrierError:
        pass
    time.sleep(0.3)
    t0 = time.monotonic()
    t_sig[0] = t0
    srv.send_signal(signal.SIGTERM)

    # What a new client sees during the grace period.
    def late():
        time.sleep(0.5)
        t1 = time.monotonic()
        try:
            st, body = get(port, "/health", timeout=GRACE + 15)
            res["after"] = f"HTTP {st} in {(time.monotonic() - t1) * 1000:.0f} ms"
        except Exception as e:
            res["after"] = f"{classify(e)} after {(time.monotonic() - t1) * 1000:.0f} ms"
    lt = threading.Thread(target=late, daemon=True)
    lt.start()

    # Watch the idle and half-sent sockets until the process exits.
    sel = selectors.DefaultSelector()
    for name, s in idle:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, ("idle", name))
    for name, s in half:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, ("half", name))
    limit = GRACE + 10
    code = None
    while True:
        code = srv.poll()
        if code is not None:
            break
        if time.monotonic() - t0 > limit + 5:
            srv.kill()
            code = srv.wait()
            res["killed"] = True
            break
        for key, _ in sel.select(timeout=0.05):
            grp, name = key.data
            try:
                d = key.fileobj.recv(4096)
                how = ("answered " + d.split(b"\r\n", 1)[0][9:12].decode("latin1")) if d else "closed"
            except OSError as e:
                how = classify(e)
            res[grp].append((name, time.monotonic() - t0, how))
            sel.unregister(key.fileobj)
    exit_s = time.monotonic() - t0
    for key in list(sel.get_map().values()):
        grp, name = key.data
        res[grp].append((name, None, "open_at_exit"))
        key.fileobj.close()
    for _, s in idle + half:
        s.close()
    for t in ts:
        t.join(5)
    lt.join(5)
    res["exit_s"] = exit_s
    res["idle_age"] = t0 - t_idle
    res["code"] = code
    res["stream_end"] = sorted(stream_end)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("gpt", help="the gpt binary")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--clients", type=int, default=32, help="streaming clients")
    ap.add_argument("--slow", type=int, default=3, help="slow readers")
    ap.add_argument("--vanish", type=int, default=4, help="clients that vanish")
    ap.add_argument("--idle", type=int, default=300, help="idle connections held")
    ap.add_argument("--oversize", type=int, default=2, help="clients sending oversized bodies")
    ap.add_argument("--stalled", type=int, default=2, help="clients that never finish a body")
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--max-body", type=int, default=2097152, help="the server's --max-body (its default)")
    ap.add_argument("--timeout", type=float, default=120, help="client socket timeout, seconds")
    ap.add_argument("--settle", type=float, default=5)
    ap.add_argument("--cache-ram", help="passed to the server's --cache-ram (MiB; 0 turns the prompt cache off)")
    args = ap.parse_args()

    t_start = time.monotonic()
    port = free_port()
    logf = tempfile.NamedTemporaryFile(prefix="soak-serve-", suffix=".log", delete=False)
    cmd = [args.gpt, "serve", "--port", str(port), "--parallel", str(args.parallel)]
    if args.cache_ram is not None:
        cmd += ["--cache-ram", args.cache_ram]
    srv = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT)
    fails, warns = [], []

    def log(msg):
        print(f"[{time.monotonic() - t_start:6.1f}s] {msg}", flush=True)

    log(f"{' '.join(cmd)} (log {logf.name})")
    for _ in range(1200):
        if srv.poll() is not None:
            sys.exit(f"the server exited at startup with {srv.returncode}; see {logf.name}")
        try:
            if get(port, "/health", 1)[0] == 200:
                break
        except OSError:
            pass
        time.sleep(0.1)
    else:
        srv.kill()
        sys.exit("the server did not answer /health within 120 s")
    model_id = json.loads(get(port, "/v1/models")[1])["data"][0]["id"]
    # One request to page the weights in before the baseline.
    c = Conn(port, 120)
    c.request("POST", "/v1/completions", json.dumps({"model": model_id, "prompt": "Hello", "max_tokens": 4}),
              {"Content-Type": "application/json"})
    c.getresponse().read()
    c.close()
    rss_before = proc_status(srv.pid, "VmRSS")
    log(f"up: model {model_id}, RSS {rss_before:.1f} MiB")

    # The poller process starts before any client thread (fork).
    mp = multiprocessing.get_context("fork")
    stop_poll = mp.Event()
    parent_conn, child_conn = mp.Pipe(duplex=False)
    poller = mp.Process(target=health_poller, args=(port, child_conn, stop_poll), daemon=True)
    poller.start()

    soak = Soak(args, port, model_id)
    threads = []
    threads.append(threading.Thread(target=soak.idle_holder, daemon=True))
    threads += [threading.Thread(target=soak.streamer, args=(i,), daemon=True) for i in range(args.clients)]
    threads += [threading.Thread(target=soak.slow_reader, args=(i,), daemon=True) for i in range(args.slow)]
    threads += [threading.Thread(target=soak.vanisher, args=(i,), daemon=True) for i in range(args.vanish)]
    threads += [threading.Thread(target=soak.oversize, args=(i,), daemon=True) for i in range(args.oversize)]
    threads += [threading.Thread(target=soak.stalled_body, args=(i,), daemon=True) for i in range(args.stalled)]
    threads.append(threading.Thread(target=soak.misc, args=(0,), daemon=True))
    t_load = time.monotonic()
    for t in threads:
        t.start()
    crashed = None
    rss_peak_load = rss_before
    while time.monotonic() - t_load < args.seconds:
        time.sleep(1)
        if srv.poll() is not None:
            crashed = srv.returncode
            break
        r = proc_status(srv.pid, "VmRSS")
        rss_peak_load = max(rss_peak_load, r or 0)
        el = time.monotonic() - t_load
        if int(el) % 15 == 0:
            ok = sum(v for (k, o), v in soak.out.c.items() if k.startswith("stream_") and o == "ok")
            log(f"load {el:4.0f}s: {ok} streams ok, RSS {r:.1f} MiB")
    soak.stop.set()
    load_s = time.monotonic() - t_load
    log(f"load over after {load_s:.0f} s; draining in-flight requests")
    drain_deadline = time.monotonic() + args.timeout + 10
    for t in threads:
        t.join(max(0.1, drain_deadline - time.monotonic()))
    hung = sum(t.is_alive() for t in threads)
    drain_s = time.monotonic() - t_load - load_s
    if srv.poll() is not None and crashed is None:
        crashed = srv.returncode
    rss_after = proc_status(srv.pid, "VmRSS")
    health_after = metrics_text = None
    if crashed is None:
        log(f"drained in {drain_s:.1f} s; RSS {rss_after:.1f} MiB; settling {args.settle:.0f} s")
        time.sleep(args.settle)
        rss_settled = proc_status(srv.pid, "VmRSS")
        try:
            health_after = json.loads(get(port, "/health")[1])
            metrics_text = get(port, "/metrics")[1].decode()
        except Exception as e:
            fails.append(f"/health or /metrics after the load failed: {e!r}")
    else:
        rss_settled = None
    stop_poll.set()
    polls = parent_conn.recv() if parent_conn.poll(10) else []
    poller.join(5)
    rss_hwm = proc_status(srv.pid, "VmHWM")

    shut = None
    if crashed is None and srv.poll() is None:
        log("SIGTERM with 4 streams running, 4 half-sent requests and 20 idle connections")
        shut = shutdown_phase(srv, port, model_id, args, log)
    elif crashed is None:
        crashed = srv.returncode
    logf.close()
    with open(logf.name, errors="replace") as f:
        server_log = f.read()

    # -- the summary ---------------------------------------------------------------------------
    L = []
    L.append("=" * 78)
    L.append(f"soak: {' '.join(cmd)}")
    L.append(f"duration: load {load_s:.1f} s + drain {drain_s:.1f} s; total {time.monotonic() - t_start:.1f} s; "
             f"clients: {args.clients} streaming, {args.slow} slow, {args.vanish} vanishing, {args.idle} idle, "
             f"{args.oversize} oversize, {args.stalled} stalled-body, 1 embeddings/json")
    kinds = sorted(soak.sent.c)
    L.append("requests by kind (sent: outcomes):")
    for k in kinds:
        outs = sorted(((o, v) for (kk, o), v in soak.out.c.items() if kk == k), key=lambda x: -x[1])
        L.append(f"  {k:28s} {soak.sent.c[k]:5d}: " + ", ".join(f"{o} {v}" for o, v in outs))
    errs = collections.Counter()
    expected = ("ok", "ok_rst", "ok_fin", "ok_413", "ok_200", "closed_while_sending")
    for (k, o), v in soak.out.c.items():
        if k.startswith("idle_") or k == "stalled_body":
            continue
        if o not in expected:
            errs[o] += v
    L.append("errors by kind (streams, slow, vanish, oversize, misc): " +
             (", ".join(f"{o} {v}" for o, v in sorted(errs.items(), key=lambda x: -x[1])) or "none"))
    toks = sum(soak.tokens.c.values())
    L.append(f"streamed content events: {toks} ({toks / max(load_s + drain_s, 1e-9):.1f}/s)")
    for name, lts in sorted(soak.idle_lifetimes.items()):
        L.append(f"idle {name}: {len(lts)} closed by the server, after min {min(lts):.1f} / median "
                 f"{pct(lts, 0.5):.1f} / max {max(lts):.1f} s")
    L.append(f"idle: peak {soak.idle_open_peak} open, {getattr(soak, 'idle_open_at_end', 0)} still open at the end; replies: "
             + (", ".join(f"{n}: {r!r} x{v}" for (n, r), v in soak.idle_replies.c.items()) or "none"))
    if soak.stalled:
        L.append("stalled bodies: " + ", ".join(f"{h:.0f} s {how}" for h, how in soak.stalled))

    lat = [dt for _, dt, st, _ in polls if st == 200]
    bad = [(w, dt, st, s) for w, dt, st, s in polls if st != 200 or s != "ok"]
    slow = [(w, dt) for w, dt, st, _ in polls if dt > HEALTH_BAR]
    health_ok = bool(polls) and not bad and not slow
    if lat:
        L.append(f"/health: {len(polls)} polls, median {pct(lat, 0.5) * 1000:.1f} ms, p99 {pct(lat, 0.99) * 1000:.1f} ms, "
                 f"max {max(dt for _, dt, _, _ in polls) * 1000:.1f} ms; over 100 ms: {len(slow)}; failed: {len(bad)}"
                 f" -> {'PASS' if health_ok else 'FAIL'}")
    else:
        L.append("/health: no successful polls -> FAIL")
    if slow:
        L.append("  slow polls (s into load: ms): " + ", ".join(
            f"{w - (time.time() - (time.monotonic() - t_load)):.1f}: {dt * 1000:.0f}" for w, dt in slow[:12]))
    if bad:
        L.append("  failed polls: " + ", ".join(f"{st}/{s}" for _, _, st, s in bad[:8]))
    if not health_ok:
        fails.append("/health exceeded 100 ms or failed")

    fmt = lambda x: f"{x:.1f}" if x is not None else "n/a"
    L.append(f"RSS: before {fmt(rss_before)} MiB, peak during load {fmt(rss_peak_load)} MiB, after load {fmt(rss_after)} MiB, "
             f"after {args.settle:.0f} s settle {fmt(rss_settled)} MiB (VmHWM {fmt(rss_hwm)} MiB)")
    if health_after:
        pc = health_after.get("prompt_cache_bytes", 0) / 2 ** 20
        L.append(f"after settle /health: status {health_after.get('status')}, slots_processing "
                 f"{health_after.get('slots_processing')}, queued {health_after.get('queued')}, faults "
                 f"{health_after.get('faults')}, prompt cache {pc:.1f} MiB")
        if health_after.get("slots_processing") or health_after.get("queued"):
            warns.append("slots still busy or requests queued after the load ended (leak?)")
        if health_after.get("faults"):
            warns.append(f"model faults: {health_after.get('faults')} ({health_after.get('last_fault')})")
        if rss_settled is not None and rss_before is not None and rss_settled - rss_before - pc > 64:
            warns.append(f"RSS grew {rss_settled - rss_before:.0f} MiB, {rss_settled - rss_before - pc:.0f} MiB beyond the prompt cache")
    if metrics_text:
        reqs, other = parse_metrics(metrics_text)
        gen = {"/v1/chat/completions", "/v1/completions"}
        m200 = sum(v for (e, s), v in reqs.items() if e in gen and s == 200)
        m413 = sum(v for (e, s), v in reqs.items() if s == 413)
        mh = sum(v for (e, s), v in reqs.items() if e == "/health")
        c200 = sum(v for (k, o), v in soak.out.c.items()
                   if (k.startswith("stream_") or k in ("slow_reader", "vanish", "completions_json", "oversize_at_limit"))
                   and o in ("ok", "ok_rst", "ok_fin", "ok_200", "malformed", "error_event"))
        c413 = sum(v for (k, o), v in soak.out.c.items() if o == "ok_413")
        by_status = collections.Counter()
        for (e, s), v in reqs.items():
            by_status[s] += v
        odd = ", ".join(f"{e} {st} x{v}" for (e, st), v in sorted(reqs.items()) if st not in (200, 413))
        L.append(f"/metrics: gpt_requests_total by status {dict(sorted(by_status.items()))}"
                 f"{' (' + odd + ')' if odd else ''}; generation 200s {m200} "
                 f"(clients saw >= {c200}), 413s {m413} (clients saw {c413}), /health {mh} (polls {len(polls)}); "
                 f"generated tokens {other.get('gpt_generated_tokens_total', 'n/a')}")
        if m200 < c200 or m413 < c413:
            warns.append("/metrics counts fewer answers than the clients received")
    if crashed is not None:
        fails.append(f"the server exited during the soak with {crashed}")
        L.append(f"SERVER CRASHED: exit {crashed}; log tail:\n" + server_log[-1500:])
    if shut:
        ends = shut["stream_end"]
        L.append(f"SIGTERM: exit after {shut['exit_s']:.2f} s with code {shut['code']}"
                 f"{' (KILLED: did not exit)' if shut.get('killed') else ''}; bar: grace {GRACE:.0f} s + 10 s");
        L.append(f"  running streams: {dict(shut['streams'])}, ended at " + ", ".join(f"{x:.2f}" for x in ends) + " s")
        L.append("  half-sent requests: " + ", ".join(f"{n} {how} at {t:.2f} s" if t is not None else f"{n} {how}"
                                                      for n, t, how in shut["half"]))
        idle_g = collections.defaultdict(list)
        for n, t, how in shut["idle"]:
            idle_g[(n, how)].append(t)
        L.append(f"  idle connections (opened {shut['idle_age']:.2f} s before SIGTERM): " + ", ".join(
            f"{n} {how} x{len(ts)}" + (f" at {min(ts):.2f}-{max(ts):.2f} s" if None not in ts else "")
            for (n, how), ts in sorted(idle_g.items())))
        L.append(f"  a new /health 0.5 s after SIGTERM: {shut['after']}")
        if shut["code"] != 0:
            warns.append(f"exit code {shut['code']} after SIGTERM")
        if shut.get("killed") or shut["exit_s"] > GRACE + 10:
            fails.append(f"no exit within grace + 10 s of SIGTERM ({shut['exit_s']:.1f} s)")
        if shut["streams"].get("ok_done", 0) != 4:
            warns.append(f"streams running at SIGTERM did not all finish: {dict(shut['streams'])}")
    if hung:
        warns.append(f"{hung} client threads still running {args.timeout + 10:.0f} s after the load (hung requests)")
    log_lines = re.sub(r"\x1b\[[0-9;]*m", "", server_log).splitlines()
    panics = [l for l in log_lines if "panic" in l.lower()]
    warn_lines = [l for l in log_lines if " WARN " in l or " ERROR " in l]
    if panics:
        fails.append(f"server log has {len(panics)} panic lines: {panics[0][:160]}")
    L.append(f"server log: {len(server_log.splitlines())} lines, {len(warn_lines)} WARN/ERROR" +
             (": " + " | ".join(sorted(set(re.sub(r'^\S+\s+', '', l)[:140] for l in warn_lines))[:5]) if warn_lines else ""))
    if crashed is None and not shut:
        fails.append("the shutdown phase did not run")
    if soak.notes:
        L.append("client notes (first few):")
        L += ["  " + n for n in soak.notes[:12]]
    for w in warns:
        L.append("WARN: " + w)
    for f in fails:
        L.append("FAIL: " + f)
    L.append("RESULT: " + ("FAIL" if fails else "PASS"))
    L.append("=" * 78)
    print("\n".join(L), flush=True)
    if srv.poll() is None:
        srv.kill()
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
