#!/usr/bin/env python3
"""The sale half of the Redis Sentinel failover drill (scripts/sentinel-drill.sh
starts the primary, replica, Sentinels and gateway, then runs this).

A show with `capacity` slots; `size` fans join and poll their status (the
REST fallback); an admitted fan leaves shortly after, which admits the next,
so admissions keep happening. Late fans keep joining at a steady rate. Mid
sale the drill snapshots every fan's standing, kills the Redis primary with
SIGKILL, and keeps the sale going until the gateway has followed the
failover. Then it compares every fan's standing with the snapshot.

Measured: how long joins were answered 503 (first to last failure after the
kill), how long Sentinel took to name the new primary, how many fans lost
their spot or changed place relative to the others, and whether anyone was
admitted twice (two different sessions) or more fans were active than
capacity. Python stdlib only.
"""

import argparse
import base64
import http.client
import json
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

ADMIN_KEY = os.environ.get("DRILL_ADMIN_KEY", "drill-admin-key")


class Gateway:
    """HTTP/1.1 keep-alive connections to the gateway, one per thread."""

    def __init__(self, host, port, timeout=10.0):
        self.host, self.port, self.timeout = host, port, timeout
        self.local = threading.local()

    def request(self, method, path, body=None, headers=None):
        """(status, json body or None, retry-after header, seconds taken)."""
        headers = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        for attempt in range(2):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                self.local.conn = conn
            started = time.monotonic()
            try:
                conn.request(method, path, body=data, headers=headers)
                res = conn.getresponse()
                raw = res.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                self.local.conn = None
                if attempt == 1:
                    return 0, None, None, time.monotonic() - started
                continue
            took = time.monotonic() - started
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = None
            return res.status, parsed, res.getheader("retry-after"), took
        raise AssertionError("unreachable")


def session_of(access_token):
    payload = access_token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))["sid"]


def resp(address, *args):
    """One command over RESP; the raw reply (enough for short answers)."""
    host, port = address.rsplit(":", 1)
    args = [a.encode() for a in args]
    with socket.create_connection((host, int(port)), timeout=0.5) as s:
        s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
        reply = b""
        while True:
            chunk = s.recv(4096)
            reply += chunk
            if not chunk or not reply.startswith(b"*2") or reply.count(b"\r\n") >= 5:
                return reply


def sentinel_master(address, name):
    """`SENTINEL get-master-addr-by-name`: "host:port", or None."""
    try:
        lines = resp(address, "SENTINEL", "get-master-addr-by-name", name).split(b"\r\n")
    except OSError:
        return None
    if not lines or not lines[0].startswith(b"*2"):
        return None
    return f"{lines[2].decode()}:{lines[4].decode()}"


class Fan:
    def __init__(self, name):
        self.name = name
        self.token = None
        self.ticket = None
        self.state = None
        self.rank = None
        self.sessions = set()
        self.admitted_at = None
        self.left = False
        # Seen waiting again after being admitted (an admission the
        # failover lost: the fan still holds a valid access token).
        self.demoted = False
        self.lock = threading.Lock()


class Drill:
    def __init__(self, args):
        self.args = args
        host, port = args.gateway.rsplit(":", 1)
        self.gw = Gateway(host, int(port))
        self.fans = [Fan(f"drill{args.run}-{i}") for i in range(args.size)]
        self.late = [Fan(f"drill{args.run}-late{i}") for i in range(args.late)]
        self.stop = threading.Event()
        self.hold_leaves = threading.Event()
        self.killed_at = None
        self.join_log = []  # (t, status, seconds, retry_after)
        self.poll_errors = 0
        self.max_active = 0
        self.log_lock = threading.Lock()

    # ---- fan actions -------------------------------------------------------
    def sign_in(self, fan):
        status, body, _, _ = self.gw.request("POST", "/v1/sessions", {"username": fan.name})
        assert status == 201, (status, body)
        fan.token = body["token"]

    def join(self, fan):
        status, body, retry_after, took = self.gw.request(
            "POST", f"/v1/shows/{self.show}/queue", headers={"authorization": f"Bearer {fan.token}"}
        )
        if status in (200, 201):
            with fan.lock:
                fan.ticket = body["ticket"]
                self.record(fan, body)
        return status, retry_after, took

    def record(self, fan, body):
        if body.get("state") == "waiting" and fan.sessions:
            fan.demoted = True
        fan.state = body.get("state")
        fan.rank = body.get("rank")
        if fan.state == "active" and body.get("access_token"):
            fan.sessions.add(session_of(body["access_token"]))
            if fan.admitted_at is None:
                fan.admitted_at = time.monotonic()

    def status(self, fan):
        status, body, _, _ = self.gw.request(
            "GET", f"/v1/shows/{self.show}/queue/status", headers={"x-queue-ticket": fan.ticket}
        )
        if status == 200 and body:
            with fan.lock:
                self.record(fan, body)
                if body.get("state") == "closed":
                    fan.state = "closed:" + str(body.get("reason"))
        elif status == 404 and body and body.get("error", {}).get("code") == "not_in_queue":
            with fan.lock:
                fan.state = "closed:not_in_queue"
        return status

    def leave(self, fan):
        status, _, _, _ = self.gw.request(
            "DELETE", f"/v1/shows/{self.show}/queue", headers={"x-queue-ticket": fan.ticket}
        )
        if status in (200, 204):
            fan.left = True
        return status

    # ---- the sale ----------------------------------------------------------
    def poller(self, fans):
        while not self.stop.is_set():
            for fan in fans:
                if self.stop.is_set():
                    return
                if fan.left or fan.ticket is None:
                    continue
                status = self.status(fan)
                if status not in (200, 404):
                    self.poll_errors += 1
                if (
                    fan.state == "active"
                    and not self.hold_leaves.is_set()
                    and time.monotonic() - fan.admitted_at > self.args.hold
                ):
                    self.leave(fan)
            time.sleep(self.args.poll_interval)

    def counter(self):
        while not self.stop.is_set():
            status, shows, _, _ = self.gw.request("GET", "/v1/shows")
            if status == 200:
                for s in shows:
                    if s["id"] == self.show:
                        self.max_active = max(self.max_active, s["queue"]["active"])
            time.sleep(0.1)

    def joiner(self):
        gap = 1.0 / self.args.join_rate
        for fan in self.late:
            if self.stop.is_set():
                return
            while not self.stop.is_set():
                t = time.monotonic()
                status, retry_after, took = self.join(fan)
                with self.log_lock:
                    self.join_log.append((t, status, took, retry_after))
                if status in (200, 201):
                    break
                time.sleep(gap)
            time.sleep(gap)

    def snapshot(self, include_left=False):
        fans = [f for f in self.fans + self.late if f.ticket and (include_left or not f.left)]
        with ThreadPoolExecutor(self.args.threads) as pool:
            list(pool.map(self.status, fans))
        return {
            f.name: (f.state, f.rank, f.left, set(f.sessions))
            for f in self.fans + self.late
            if f.ticket
        }

    def run(self):
        a = self.args
        status, body, _, _ = self.gw.request(
            "POST",
            "/v1/admin/shows",
            {
                "title": "Sentinel drill",
                "capacity": a.capacity,
                "session_ttl_seconds": 600,
                "abandon_grace_seconds": 600,
            },
            headers={"authorization": f"Bearer {ADMIN_KEY}"},
        )
        assert status == 201, (status, body)
        self.show = body["id"]
        with ThreadPoolExecutor(a.threads) as pool:
            list(pool.map(self.sign_in, self.fans + self.late))
        # The first fans join in order (one at a time), so the line has a
        # known order to compare with after the failover.
        for fan in self.fans:
            status, _, _ = self.join(fan)
            assert status == 201, status
        print(f"{len(self.fans)} fans joined show {self.show}; the sale runs", flush=True)

        groups = [self.fans[i :: a.threads] + self.late[i :: a.threads] for i in range(a.threads)]
        threads = [threading.Thread(target=self.poller, args=(g,), daemon=True) for g in groups]
        threads.append(threading.Thread(target=self.joiner, daemon=True))
        threads.append(threading.Thread(target=self.counter, daemon=True))
        for t in threads:
            t.start()
        time.sleep(a.warmup)

        # The standing every fan had when the primary died: leaving (which
        # admits) pauses for the snapshot only; joins and polls go on.
        self.hold_leaves.set()
        time.sleep(0.3)
        before = self.snapshot()
        admitted_before = sum(1 for f in self.fans + self.late if f.sessions)
        old_primary = sentinel_master(a.sentinels[0], a.master)
        if a.mode == "kill":
            os.kill(a.primary_pid, signal.SIGKILL)
            what = f"killed the primary {old_primary} (pid {a.primary_pid})"
        else:
            # A planned switch: the old primary lives on as a replica.
            reply = resp(a.sentinels[0], "SENTINEL", "FAILOVER", a.master)
            assert reply.startswith(b"+OK"), reply
            what = f"asked Sentinel to fail over from {old_primary}"
        self.killed_at = time.monotonic()
        self.hold_leaves.clear()
        print(f"{what}; {admitted_before} admitted so far", flush=True)

        switched_at = None
        recovered_at = None
        deadline = self.killed_at + a.max_outage
        while time.monotonic() < deadline:
            if switched_at is None:
                now_primary = sentinel_master(a.sentinels[1], a.master)
                if now_primary and now_primary != old_primary:
                    switched_at = time.monotonic()
                    print(f"Sentinel names {now_primary} after {switched_at - self.killed_at:.2f} s", flush=True)
            with self.log_lock:
                ok_after = [t for t, s, _, _ in self.join_log if t > self.killed_at and s in (200, 201)]
                failed_after = [t for t, s, _, _ in self.join_log if t > self.killed_at and s not in (200, 201)]
            if (
                switched_at
                and ok_after
                and ok_after[-1] > switched_at
                and (not failed_after or ok_after[-1] > failed_after[-1])
            ):
                recovered_at = recovered_at or ok_after[-1]
                if time.monotonic() - recovered_at > a.after:
                    break
            time.sleep(0.05)
        # Let admissions go on a little after recovery, then settle.
        self.hold_leaves.set()
        time.sleep(1.0)
        self.stop.set()
        for t in threads:
            t.join(timeout=15)
        after = self.snapshot(include_left=True)
        return self.report(before, after, old_primary, switched_at, recovered_at)

    # ---- the verdict -------------------------------------------------------
    def report(self, before, after, old_primary, switched_at, recovered_at):
        a, k = self.args, self.killed_at
        joins_after = [(t - k, s, took, ra) for t, s, took, ra in self.join_log if t > k]
        failures = [(t, s, took, ra) for t, s, took, ra in joins_after if s not in (200, 201)]
        non_503 = [s for _, s, _, _ in failures if s != 503]
        no_retry_after = [1 for _, s, _, ra in failures if s == 503 and not ra]
        slowest_failure = max((took for _, _, took, _ in failures), default=0.0)

        waiting_before = sorted(
            (name for name, (state, rank, left, _) in before.items() if state == "waiting"),
            key=lambda n: before[n][1],
        )
        lost, kept_waiting, admitted_since = [], [], []
        for name in waiting_before:
            state, rank, left, sessions = after[name]
            if state == "waiting":
                kept_waiting.append((name, rank))
            elif state == "active" or left or sessions:
                admitted_since.append(name)
            else:
                lost.append((name, state))
        # Place changes: fans still waiting whose order relative to each
        # other differs from before (the complement of the longest run kept
        # in order), and fans admitted while someone ahead of them still waits.
        ranks = [rank for _, rank in kept_waiting]
        tails = []
        for r in ranks:
            lo, hi = 0, len(tails)
            while lo < hi:
                mid = (lo + hi) // 2
                if tails[mid] < r:
                    lo = mid + 1
                else:
                    hi = mid
            tails[lo:lo + 1] = [r]
        reordered = len(ranks) - len(tails)
        first_still_waiting = waiting_before.index(kept_waiting[0][0]) if kept_waiting else len(waiting_before)
        jumped = [n for n in admitted_since if waiting_before.index(n) > first_still_waiting]
        # Active before the kill and not any more, without leaving.
        active_lost = [
            name
            for name, (state, _, left, _) in before.items()
            if state == "active" and not left and not after[name][2] and after[name][0] != "active"
        ]
        late_acked_lost = [
            f.name
            for f in self.late
            if f.ticket and before.get(f.name) is None and str(after[f.name][0]).startswith("closed")
            and not f.left and not f.sessions
        ]
        twice = [f.name for f in self.fans + self.late if len(f.sessions) > 1]
        demoted = [f.name for f in self.fans + self.late if f.demoted]
        # Left (the gateway said so), and back in line or active: a leave
        # the failover lost.
        back = [
            f.name
            for f in self.fans + self.late
            if f.left and after[f.name][0] in ("waiting", "active")
        ]
        admitted = sum(1 for f in self.fans + self.late if f.sessions)

        result = {
            "mode": a.mode,
            "size": a.size,
            "late_fans": a.late,
            "capacity": a.capacity,
            "sentinel_switch_s": round(switched_at - k, 2) if switched_at else None,
            "joins_after_kill": len(joins_after),
            "join_failures": len(failures),
            "join_503_first_s": round(failures[0][0], 2) if failures else None,
            "join_503_last_s": round(failures[-1][0], 2) if failures else None,
            "join_503_window_s": round(failures[-1][0] - failures[0][0], 2) if failures else 0.0,
            "first_join_ok_after_kill_s": round(recovered_at - k, 2) if recovered_at else None,
            "slowest_failed_join_s": round(slowest_failure, 3),
            "failures_not_503": len(non_503),
            "503_without_retry_after": len(no_retry_after),
            "waiting_at_kill": len(waiting_before),
            "lost_spots": len(lost),
            "lost_examples": lost[:5],
            "reordered": reordered,
            "admitted_out_of_order": len(jumped),
            "active_lost": len(active_lost),
            "late_joins_acknowledged_then_lost": len(late_acked_lost),
            "admitted_total": admitted,
            "admitted_twice": len(twice),
            "admitted_then_waiting_again": len(demoted),
            "left_then_back": len(back),
            "max_active_seen": self.max_active,
            "poll_errors": self.poll_errors,
        }
        print(json.dumps(result, indent=2), flush=True)
        ok = (
            switched_at is not None
            and recovered_at is not None
            and not non_503
            and not no_retry_after
            and not twice
            and self.max_active <= a.capacity
            # No fan loses their place: the node rebuilds what the failover
            # lost (fans poll well within the 600 s grace, so none is
            # abandoned), and a late fan told they joined keeps the spot.
            and not lost
            and not reordered
            and not jumped
            and not active_lost
            and not late_acked_lost
        )
        return ok, result


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gateway", required=True, help="host:port")
    p.add_argument("--primary-pid", type=int, required=True)
    p.add_argument("--sentinels", required=True, help="host:port,host:port,...")
    p.add_argument("--master", default="drill")
    p.add_argument("--mode", choices=["kill", "failover"], default="kill",
                   help="kill: SIGKILL the primary; failover: SENTINEL FAILOVER (the old primary "
                        "becomes a replica and answers writes READONLY)")
    p.add_argument("--size", type=int, default=60, help="fans in line before the kill")
    p.add_argument("--late", type=int, default=None,
                   help="fans who join during the drill, one after another (default: enough for "
                        "the join rate through warm-up, an outage of 15 s and the time after)")
    p.add_argument("--join-rate", type=float, default=20.0, help="late joins a second")
    p.add_argument("--capacity", type=int, default=5)
    p.add_argument("--hold", type=float, default=0.3, help="seconds an admitted fan stays before leaving")
    p.add_argument("--poll-interval", type=float, default=0.2)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--after", type=float, default=3.0, help="seconds of sale after joins recover")
    p.add_argument("--max-outage", type=float, default=40.0)
    p.add_argument("--out", help="write the result as JSON here")
    p.add_argument("--run", default=str(os.getpid()))
    args = p.parse_args()
    args.sentinels = args.sentinels.split(",")
    if args.late is None:
        args.late = int(args.join_rate * (args.warmup + 15 + args.after))
    ok, result = Drill(args).run()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    if not ok:
        print("DRILL FAILED: no failover followed, a failure other than 503 + Retry-After, "
              "a fan admitted twice, more active than capacity, or a fan who lost their spot, "
              "changed place, was admitted out of order, lost their session, or joined late "
              "and was then lost (see the counts above)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
