#!/usr/bin/env python3
"""Abuse measurements against a gateway on this machine (docs/benchmarks.md,
"Abuse defences"). Python 3 standard library only; loopback addresses only;
every run is bounded in connections, requests and time, and stops by itself.

  scripts/slowloris.py slowloris --port 8080 --pid PID [--connections 1000]
      Opens N connections and sends each one byte of a request header per
      second, never finishing it. Reports how many the gateway closed within
      its header-read timeout + 1 s (--header-timeout, default 10), and the
      gateway's resident memory (VmRSS of --pid) before, at the peak and
      after.

  scripts/slowloris.py signins --port 8080 [--attempts 2000] [--secs 1]
      Sends N sign-ins (POST /v1/sessions, each a new name) from this one
      address, spread evenly over --secs, on --connections keep-alive
      connections. Reports the answers by status.
"""

import argparse
import asyncio
import ipaddress
import json
import resource
import selectors
import socket
import statistics
import sys
import time
import uuid

MAX_CONNECTIONS = 5000
MAX_ATTEMPTS = 20000
MAX_SECS = 120


def loopback(host):
    """The address of `host`, which must be a loopback address."""
    addr = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)[0][4][0]
    if not ipaddress.ip_address(addr).is_loopback:
        sys.exit(f"{host} ({addr}) is not a loopback address; this script only targets this machine")
    return addr


def rss_kib(pid):
    if pid is None:
        return None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def slowloris(args):
    if not 1 <= args.connections <= MAX_CONNECTIONS:
        sys.exit(f"--connections must be 1..{MAX_CONNECTIONS}")
    addr = loopback(args.host)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.connections + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    limit = args.header_timeout + 1.0
    deadline_secs = min(args.max_secs, MAX_SECS)

    rss_before = rss_kib(args.pid)
    # The request never ends: a request line, then one more header byte a
    # second on a header line that is never finished.
    head = b"GET /healthz HTTP/1.1\r\nHost: " + addr.encode() + b"\r\nX-Slow: "
    sel = selectors.DefaultSelector()
    conns = {}  # socket -> [opened_at, bytes_sent, closed_at]
    failed = 0
    for _ in range(args.connections):
        s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.connect((addr, args.port))
            s.send(head[:1])
        except OSError:
            failed += 1
            s.close()
            continue
        s.setblocking(False)
        conns[s] = [time.monotonic(), 1, None]
        sel.register(s, selectors.EVENT_READ)
    opened = len(conns)
    started = time.monotonic()
    rss_peak = rss_kib(args.pid) or 0
    next_byte = started + 1.0

    def close(s, now):
        if conns[s][2] is None:
            conns[s][2] = now
            sel.unregister(s)
            s.close()

    while any(c[2] is None for c in conns.values()):
        now = time.monotonic()
        if now - started > deadline_secs:
            break
        for key, _ in sel.select(timeout=max(0.0, min(next_byte - now, 0.2))):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:
                close(s, time.monotonic())
        now = time.monotonic()
        if now >= next_byte:
            next_byte += 1.0
            for s, c in list(conns.items()):
                if c[2] is not None:
                    continue
                i = c[1]
                byte = head[i:i + 1] if i < len(head) else b"a"
                try:
                    s.send(byte)
                    c[1] += 1
                except OSError:
                    close(s, now)
            rss_peak = max(rss_peak, rss_kib(args.pid) or 0)

    still_open = [s for s, c in conns.items() if c[2] is None]
    for s in still_open:
        sel.unregister(s)
        s.close()
    lifetimes = [c[2] - c[0] for c in conns.values() if c[2] is not None]
    # Give the gateway a moment to free what the connections held.
    time.sleep(1.0)
    report = {
        "connections_opened": opened,
        "connections_failed_to_open": failed,
        "header_timeout_secs": args.header_timeout,
        "closed_by_gateway_within_timeout_plus_1s": sum(1 for t in lifetimes if t <= limit),
        "closed_by_gateway_later": sum(1 for t in lifetimes if t > limit),
        "still_open_at_end": len(still_open),
        "closed_after_secs": {
            "min": round(min(lifetimes), 2) if lifetimes else None,
            "median": round(statistics.median(lifetimes), 2) if lifetimes else None,
            "max": round(max(lifetimes), 2) if lifetimes else None,
        },
        "gateway_rss_kib": {
            "before": rss_before,
            "peak_while_open": rss_peak if args.pid else None,
            "after": rss_kib(args.pid),
        },
    }
    print(json.dumps(report, indent=2))


async def signins_async(args):
    if not 1 <= args.attempts <= MAX_ATTEMPTS:
        sys.exit(f"--attempts must be 1..{MAX_ATTEMPTS}")
    if not 0 < args.secs <= MAX_SECS:
        sys.exit(f"--secs must be in (0, {MAX_SECS}]")
    if not 1 <= args.connections <= 500:
        sys.exit("--connections must be 1..500")
    addr = loopback(args.host)
    run = uuid.uuid4().hex[:8]
    statuses = {}
    retry_after = {}
    late = 0
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.2

    async def worker(first):
        nonlocal late
        reader, writer = await asyncio.open_connection(addr, args.port)
        try:
            for i in range(first, args.attempts, args.connections):
                at = t0 + args.secs * i / args.attempts
                delay = at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -0.05:
                    late += 1
                body = json.dumps({"username": f"s{run}{i}"}).encode()
                writer.write(
                    b"POST /v1/sessions HTTP/1.1\r\nHost: " + addr.encode()
                    + b"\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(body)).encode() + b"\r\n\r\n" + body
                )
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split()[1])
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                await reader.readexactly(int(headers.get("content-length", "0")))
                statuses[status] = statuses.get(status, 0) + 1
                if "retry-after" in headers:
                    ra = headers["retry-after"]
                    retry_after[ra] = retry_after.get(ra, 0) + 1
        finally:
            writer.close()

    started = time.monotonic()
    await asyncio.wait_for(
        asyncio.gather(*(worker(j) for j in range(args.connections))),
        timeout=args.secs + 30,
    )
    elapsed = time.monotonic() - started
    print(json.dumps({
        "attempts": args.attempts,
        "spread_over_secs": args.secs,
        "connections": args.connections,
        "sent_more_than_50ms_late": late,
        "elapsed_secs": round(elapsed, 2),
        "by_status": {str(k): v for k, v in sorted(statuses.items())},
        "retry_after_values": retry_after,
    }, indent=2))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sl = sub.add_parser("slowloris", help="slow-header connections")
    sl.add_argument("--host", default="127.0.0.1")
    sl.add_argument("--port", type=int, required=True)
    sl.add_argument("--pid", type=int, help="the gateway's process id, for its RSS")
    sl.add_argument("--connections", type=int, default=1000)
    sl.add_argument("--header-timeout", type=float, default=10.0,
                    help="the gateway's http.header_read_timeout_secs")
    sl.add_argument("--max-secs", type=float, default=30.0, help="stop after this long")
    si = sub.add_parser("signins", help="a burst of sign-ins from one address")
    si.add_argument("--host", default="127.0.0.1")
    si.add_argument("--port", type=int, required=True)
    si.add_argument("--attempts", type=int, default=2000)
    si.add_argument("--secs", type=float, default=1.0)
    si.add_argument("--connections", type=int, default=50)
    args = p.parse_args()
    if args.command == "slowloris":
        slowloris(args)
    else:
        asyncio.run(signins_async(args))


if __name__ == "__main__":
    main()
