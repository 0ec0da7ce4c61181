#!/usr/bin/env python3
"""Cold start proxy: process start -> first event served, and peak RSS.

Plays the AWS Lambda Runtime API on 127.0.0.1 (a fresh server per run),
starts the function's process with AWS_LAMBDA_RUNTIME_API pointing at it,
hands it one event on GET .../invocation/next, and stops the clock when the
process POSTs .../invocation/<id>/response (or /error, or /init/error). Peak
RSS is the process's VmHWM from /proc/<pid>/status, read while it waits for
its second event; then it is killed. Cases run round-robin (run 1 of every
case, then run 2, ...) so that machine noise spreads evenly.

    harness.py --runs 7 --env-file ENV --json OUT.json --markdown OUT.md \
        --case 'NAME|EVENT.json|COMMAND ARGS...' [--case ...]

ENV holds KEY=VALUE lines given to every process (on top of a minimal
environment: PATH, HOME, LANG). A `{RUNTIME_API}` in an event is replaced by
this run's host:port (the CloudFormation ResponseURL of dns-seed points back
here; PUT requests are answered 200).

Standard library only. Timings are wall clock (time.perf_counter).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PREFIX = "/2018-06-01/runtime"
RUN_TIMEOUT_S = 60.0


class Run:
    """State of one cold start: the event handed out and what came back."""

    def __init__(self, event: bytes, request_id: str, function_name: str):
        self.event = event
        self.request_id = request_id
        self.arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.first_next: float | None = None
        self.served: float | None = None
        self.outcome = ""
        self.body = b""
        self.done = threading.Event()
        self.stop = threading.Event()
        self.handed_out = False
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    run: Run  # set on the per-run subclass

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def _reply(self, status: int, body: bytes = b"", headers: dict | None = None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        run = self.run
        if self.path == f"{PREFIX}/invocation/next":
            with run.lock:
                first = not run.handed_out
                run.handed_out = True
                if run.first_next is None:
                    run.first_next = time.perf_counter()
            if not first:
                # The second poll: the process is warm and idle; hold it.
                run.stop.wait(RUN_TIMEOUT_S)
                try:
                    self._reply(500, b'{"errorMessage":"harness stopping"}')
                except OSError:
                    pass
                return
            deadline_ms = int(time.time() * 1000) + 30_000
            self._reply(
                200,
                run.event,
                {
                    "Lambda-Runtime-Aws-Request-Id": run.request_id,
                    "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": run.arn,
                    "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000;Sampled=0",
                },
            )
            return
        self._reply(404, b"{}")

    def do_POST(self):
        run = self.run
        now = time.perf_counter()
        body = self._body()
        kind = None
        if self.path == f"{PREFIX}/invocation/{run.request_id}/response":
            kind = "response"
        elif self.path == f"{PREFIX}/invocation/{run.request_id}/error":
            kind = "error"
        elif self.path == f"{PREFIX}/init/error":
            kind = "init-error"
        if kind is None:
            self._reply(404, b"{}")
            return
        self._reply(202, b'{"status":"OK"}')
        if not run.done.is_set():
            run.served, run.outcome, run.body = now, kind, body
            run.done.set()

    def do_PUT(self):
        # CloudFormation custom resource response (dns-seed): accept it.
        self._body()
        self._reply(200, b"")


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A killed process resets its keep-alive connection: expected.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def read_status_kb(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def status_of(outcome: str, body: bytes) -> str:
    """What the function answered: the HTTP status of an API Gateway
    response, else the outcome (`response`, `error`, `init-error`)."""
    if outcome != "response":
        return outcome
    try:
        parsed = json.loads(body)
    except ValueError:
        return "response"
    if isinstance(parsed, dict) and "statusCode" in parsed:
        return str(parsed["statusCode"])
    return "response"


def one_run(name: str, event_path: Path, command: list[str], env: dict, log: Path, index: int) -> dict:
    template = event_path.read_text()
    run = Run(b"", f"coldstart-{name}-{index}", name)
    handler = type("RunHandler", (Handler,), {"run": run})
    server = Server(("127.0.0.1", 0), handler)
    port = server.server_address[1]
    run.event = template.replace("{RUNTIME_API}", f"127.0.0.1:{port}").encode()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    proc_env = dict(env)
    proc_env["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{port}"
    proc_env["AWS_LAMBDA_FUNCTION_NAME"] = name
    proc_env["AWS_LAMBDA_FUNCTION_VERSION"] = "$LATEST"
    proc_env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = proc_env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
    proc_env["AWS_LAMBDA_LOG_STREAM_NAME"] = f"coldstart/{index}"
    proc_env["AWS_LAMBDA_LOG_GROUP_NAME"] = f"/aws/lambda/{name}"
    with open(log, "wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(command, env=proc_env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        finished = run.done.wait(RUN_TIMEOUT_S)
        hwm = read_status_kb(proc.pid, "VmHWM")
        exited = proc.poll()
        run.stop.set()
        if exited is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
    server.shutdown()
    server.server_close()
    if not finished:
        return {"ok": False, "status": "timeout", "exit": exited}
    return {
        "ok": run.outcome == "response",
        "ms": (run.served - started) * 1000.0,
        "first_poll_ms": (run.first_next - started) * 1000.0 if run.first_next else None,
        "hwm_kb": hwm,
        "status": status_of(run.outcome, run.body),
        "exit": exited,
    }


def nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100)
    return ordered[int(k) - 1]


def summarize(results: list[dict]) -> dict:
    ok = [r for r in results if "ms" in r]
    ms = [r["ms"] for r in ok]
    polls = [r["first_poll_ms"] for r in ok if r.get("first_poll_ms") is not None]
    hwm = [r["hwm_kb"] for r in ok if r.get("hwm_kb")]
    statuses: dict[str, int] = {}
    for r in results:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    if not ms:
        return {"runs": len(results), "statuses": statuses}
    return {
        "runs": len(results),
        "median_ms": statistics.median(ms),
        "p90_ms": nearest_rank(ms, 90),
        "max_ms": max(ms),
        "min_ms": min(ms),
        "first_poll_median_ms": statistics.median(polls) if polls else None,
        "rss_median_mb": statistics.median(hwm) / 1024 if hwm else None,
        "rss_max_mb": max(hwm) / 1024 if hwm else None,
        "statuses": statuses,
    }


def markdown(summaries: dict[str, dict], reference: str | None, sizes: dict[str, int], floor: str | None = None) -> str:
    ref = summaries.get(reference) if reference else None
    bare = summaries.get(floor) if floor else None
    lines = [
        "| function | answered | median ms | p90 / max ms | init → first poll ms (median) | first poll vs bare | peak RSS MB (median / max) | binary MB | ms vs Node | RSS vs Node |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s in summaries.items():
        statuses = ", ".join(f"{k}×{v}" for k, v in sorted(s["statuses"].items()))
        if "median_ms" not in s:
            lines.append(f"| {name} | {statuses} | – | – | – | – | – | – | – | – |")
            continue
        ratio_ms = ratio_rss = "–"
        if ref and "median_ms" in ref and name != reference:
            ratio_ms = f"{s['median_ms'] / ref['median_ms']:.2f}×"
            if s["rss_median_mb"] and ref["rss_median_mb"]:
                ratio_rss = f"{s['rss_median_mb'] / ref['rss_median_mb']:.2f}×"
        size = f"{sizes[name] / 1e6:.1f}" if name in sizes else "–"
        poll = f"{s['first_poll_median_ms']:.1f}" if s.get("first_poll_median_ms") is not None else "–"
        vs_bare = "–"
        if bare and bare.get("first_poll_median_ms") and s.get("first_poll_median_ms") is not None and name != floor:
            vs_bare = f"{s['first_poll_median_ms'] / bare['first_poll_median_ms']:.2f}×"
        rss = f"{s['rss_median_mb']:.1f} / {s['rss_max_mb']:.1f}" if s.get("rss_median_mb") else "–"
        lines.append(
            f"| {name} | {statuses} | {s['median_ms']:.1f} | {s['p90_ms']:.1f} / {s['max_ms']:.1f} | {poll} | {vs_bare} | {rss} | {size} | {ratio_ms} | {ratio_rss} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--env-file", type=Path, required=True)
    ap.add_argument("--case", action="append", required=True, help="NAME|EVENT|COMMAND")
    ap.add_argument("--reference", help="case the ratios are taken against")
    ap.add_argument("--floor", help="case the init → first poll ratio is taken against")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("--logs", type=Path, default=Path(".local/coldstart"))
    args = ap.parse_args()

    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    for line in args.env_file.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value

    cases = []
    for spec in args.case:
        name, event, command = spec.split("|", 2)
        cases.append((name, Path(event), shlex.split(command)))
    args.logs.mkdir(parents=True, exist_ok=True)

    sizes = {}
    for name, _, command in cases:
        if not command[0].endswith("node"):
            sizes[name] = Path(command[0]).stat().st_size

    results: dict[str, list[dict]] = {name: [] for name, _, _ in cases}
    for i in range(args.runs):
        for name, event, command in cases:
            r = one_run(name, event, command, env, args.logs / f"{name}.log", i)
            results[name].append(r)
            shown = f"{r['ms']:.1f} ms, {r['hwm_kb'] / 1024:.1f} MB" if "ms" in r and r.get("hwm_kb") else ""
            print(f"run {i + 1}/{args.runs} {name}: {r['status']} {shown}", file=sys.stderr)

    summaries = {name: summarize(rs) for name, rs in results.items()}
    if args.json:
        args.json.write_text(json.dumps({"summaries": summaries, "runs": results}, indent=2) + "\n")
    table = markdown(summaries, args.reference, sizes, args.floor)
    if args.markdown:
        args.markdown.write_text(table)
    print(table)
    return 0 if all("median_ms" in s for s in summaries.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
