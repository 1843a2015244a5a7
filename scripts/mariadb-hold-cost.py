#!/usr/bin/env python3
"""MariaDB's own CPU per statement of a hold, and per whole hold, on this machine.

The floor under the reserve scenario's winners (docs/benchmarks.md, "the reserve
burst's floor"): each winner's hold is one transaction of the statements below,
and the database's CPU for them is spent on the same cores as the burst.

Runs in a database of its own (`anteroom_holdcost`, dropped at the end) built
from migrations/, one connection, one statement at a time, nothing else
contending; CPU is mariadbd's from /proc (utime + stime) around each set of
2,000 runs. Needs root on the local MariaDB (as the tests do) and
`pip install pymysql`.

    python3 scripts/mariadb-hold-cost.py [--host 127.0.0.1] [--runs 2000]
"""

import argparse
import os
import subprocess
import time
from pathlib import Path

import pymysql
from pymysql.constants import CLIENT

DB = "anteroom_holdcost"
USERS = 200
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def mariadbd_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--runs", type=int, default=2000)
    args = ap.parse_args()
    pid = int(subprocess.check_output(["pgrep", "-x", "mariadbd"]).split()[0])
    admin = pymysql.connect(host=args.host, user="root", autocommit=True,
                            client_flag=CLIENT.MULTI_STATEMENTS).cursor()
    admin.execute(f"DROP DATABASE IF EXISTS {DB}")
    admin.execute(f"CREATE DATABASE {DB}")
    admin.execute(f"USE {DB}")
    try:
        for f in sorted(MIGRATIONS.glob("*.sql")):
            admin.execute(f.read_text())
            while admin.nextset():
                pass
        admin.execute("INSERT INTO shows (title, capacity, session_ttl_secs, abandon_grace_secs) "
                      "VALUES ('cost', 100, 3600, 30)")
        show = admin.lastrowid
        seats = 3 * args.runs
        admin.execute("INSERT INTO seats (show_id, section, label, price) VALUES "
                      + ",".join(f"({show},'Floor','A-{i}',1)" for i in range(seats)))
        admin.execute(f"SELECT MIN(id) FROM seats WHERE show_id = {show}")
        first = admin.fetchone()[0]
        admin.execute("INSERT INTO accounts (user_id, balance) VALUES "
                      + ",".join(f"({u},0)" for u in range(1, USERS + 1)))

        def user(i: int) -> int:
            return i % USERS + 1

        # What a winning hold runs (src/store/db/mysql.rs, hold_sql), one
        # statement at a time, each in a transaction of its own.
        pieces = {
            "SELECT 1 (the round trip alone)": lambda i: "SELECT 1",
            "START TRANSACTION; COMMIT": lambda i: "START TRANSACTION; COMMIT",
            "the account's lock and open holds (SELECT … FOR UPDATE)": lambda i: (
                "START TRANSACTION; SELECT COUNT(r.id) FROM accounts a LEFT JOIN reservations r "
                f"ON r.user_id = a.user_id AND r.show_id = {show} AND r.state = 'held' "
                f"WHERE a.user_id = {user(i)} GROUP BY a.user_id FOR UPDATE; COMMIT"),
            "the seat's lock (SELECT … FOR UPDATE by primary key)": lambda i: (
                "START TRANSACTION; SELECT id, show_id, label, section, price, status, version "
                f"FROM seats WHERE id = {first + i} AND show_id = {show} FOR UPDATE; COMMIT"),
            "the claim (UPDATE seats by primary key)": lambda i: (
                "START TRANSACTION; UPDATE seats SET version = version + 1 "
                f"WHERE id = {first + i} AND show_id = {show}; COMMIT"),
            "the reservation (INSERT)": lambda i: (
                "START TRANSACTION; INSERT INTO reservations (show_id, seat_id, user_id, session_id, "
                f"price, state, expires_at, open_seat_id) VALUES ({show}, {first + i}, {user(i)}, 1, "
                "1, 'released', 1, NULL); COMMIT"),
            "a whole hold (the batch above, claimed and inserted)": lambda i: (
                "START TRANSACTION; SET @open = NULL; SELECT @open := COUNT(r.id) FROM accounts a "
                f"LEFT JOIN reservations r ON r.user_id = a.user_id AND r.show_id = {show} AND "
                f"r.state = 'held' WHERE a.user_id = {user(i)} GROUP BY a.user_id FOR UPDATE; "
                "SELECT id, show_id, label, section, price, status, version FROM seats "
                f"WHERE id = {first + args.runs + i} AND show_id = {show} FOR UPDATE; "
                "UPDATE seats SET status = 'held', version = version + 1 "
                f"WHERE id = {first + args.runs + i} AND show_id = {show} AND status = 'available' "
                "AND @open < 1000000; SET @claimed = ROW_COUNT(); INSERT INTO reservations "
                "(show_id, seat_id, user_id, session_id, price, state, expires_at, open_seat_id) "
                f"SELECT show_id, id, {user(i)}, 1, price, 'held', 99999999999, id FROM seats "
                f"WHERE id = {first + args.runs + i} AND @claimed = 1; COMMIT"),
        }
        conn = pymysql.connect(host=args.host, user="root", database=DB, autocommit=True,
                               client_flag=CLIENT.MULTI_STATEMENTS)
        run = conn.cursor()
        run.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        print(f"{'':58s} mariadbd CPU   wall (one connection)")
        for name, sql in pieces.items():
            cpu, wall = mariadbd_cpu(pid), time.perf_counter()
            for i in range(args.runs):
                run.execute(sql(i))
                while run.nextset():
                    pass
            cpu = (mariadbd_cpu(pid) - cpu) / args.runs * 1e6
            wall = (time.perf_counter() - wall) / args.runs * 1e6
            print(f"{name:58s} {cpu:6.0f} µs   {wall:6.0f} µs", flush=True)
        conn.close()
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {DB}")


if __name__ == "__main__":
    main()
