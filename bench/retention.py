#!/usr/bin/env python3
"""retention.py BUILD_DIR [MESSAGES] - how fast smisd's store retention
deletes a backlog of old messages, and what sends see meanwhile.

Each repetition starts smisd (with the simulators, tests/integration's
harness) on a store prefilled with MESSAGES old messages (one attempt and
one delivery report each, as a RingRing send leaves them), with
store.retention_s on, and times the deletion through
smis_store_purged_messages_total. Meanwhile it sends sms_only messages one
after another; the baseline is the same sends right after the purge, in
the same repetition. Figures are medians over BENCH_REPS repetitions (3).
Writes its section of bench/RESULTS.md (between retention markers; run.sh
keeps it) and prints it. Run from the source tree, on a quiet machine.
"""
import datetime
import os
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import time

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if len(sys.argv) < 2:
    sys.exit("usage: bench/retention.py BUILD_DIR [MESSAGES]")
os.environ["top_builddir"] = os.path.abspath(sys.argv[1])
os.environ["top_srcdir"] = SRC
sys.path.insert(0, os.path.join(SRC, "tests/integration"))
from harness import CITIZENS, Stack, message  # noqa: E402

N = int(sys.argv[2]) if len(sys.argv) > 2 else 200000
REPS = int(os.environ.get("BENCH_REPS", "3"))
SENDS = 300
B32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def id_time(ms):
    return "".join(B32[(ms >> (5 * (9 - i))) & 31] for i in range(10))


def purged(stack):
    return stack.metric("smis_store_purged_messages_total") or 0.0


def send_latencies(stack, n):
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        r = stack.send(message(CITIZENS["no_app"], "sms_only"))
        lat.append((time.perf_counter() - t) * 1000)
        if r.status != 201:
            raise RuntimeError("send answered %d: %s" % (r.status, r.raw))
    lat.sort()
    return statistics.median(lat), lat[int(len(lat) * 0.99) - 1]


def prefill(path, n):
    """n messages made 200 days ago, keyed as smisd keys them."""
    old = int(time.time() * 1000) - 200 * 86400 * 1000
    ids = ["msg_" + id_time(old + i) + "".join(random.choice(B32) for _ in range(16)) for i in range(n)]
    db = sqlite3.connect(path)
    db.executemany("INSERT INTO messages (id, institution, recipient_hash, strategy, status, channel,"
                   " created_ms, updated_ms, response) VALUES (?, 'inst-a', ?, 'sms_only', 'delivered',"
                   " 'ringring', ?, ?, '{}')", [(m, "%064x" % i, old, old) for i, m in enumerate(ids)])
    db.executemany("INSERT INTO attempts (message_id, seq, channel, operation, outcome, provider_ref,"
                   " lookup_ref, started_ms, duration_ms) VALUES (?, 0, 'ringring', 'send', 'sent', ?, ?, ?, 3)",
                   [(m, "rr" + m[-16:], "rr" + m[-16:], old) for m in ids])
    db.executemany("INSERT INTO reports (message_id, channel, device, status, at_ms)"
                   " VALUES (?, 'ringring', '', 'delivered', ?)", [(m, old) for m in ids])
    db.commit()
    db.close()


def one_run():
    stack = Stack(store_extra="retention_s = 0;").start()
    try:
        # smisd makes the schema; stop it, fill its store, start it with retention on.
        stack.smisd.send_signal(signal.SIGTERM)
        stack.smisd.wait(timeout=60)
        db = os.path.join(stack.dir, "smis.db")
        prefill(db, N)
        size = os.path.getsize(db)
        stack.store_extra = "retention_s = 86400;"
        stack.write_conf()
        t0 = time.monotonic()
        stack.start_smisd()
        during = send_latencies(stack, SENDS)
        while purged(stack) < N:
            if time.monotonic() - t0 > 600:
                raise RuntimeError("purge did not finish in 600 s")
            time.sleep(0.02)
        elapsed = time.monotonic() - t0
        after = send_latencies(stack, SENDS)
        cut = "msg_" + id_time(int(time.time() * 1000) - 86400 * 1000)
        left = sqlite3.connect(db).execute("SELECT count(*) FROM messages WHERE id < ?", (cut,)).fetchone()[0]
        if left:
            raise RuntimeError("%d old messages left" % left)
    finally:
        rc, problems, _ = stack.stop()
    if rc != 0 or problems:
        raise RuntimeError("smisd exit %r: %s" % (rc, problems[:5]))
    return {"elapsed": elapsed, "rate": N / elapsed, "during": during, "after": after, "size": size}


def main():
    runs = [one_run() for _ in range(REPS)]
    med = lambda f: statistics.median(f(r) for r in runs)  # noqa: E731
    cmd = "BENCH_REPS=%d bench/retention.py %s %d" % (REPS, sys.argv[1], N)
    git = subprocess.run(["git", "-C", SRC, "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    lines = [
        "<!-- retention:begin -->",
        "## Retention: deleting a backlog",
        "",
        "Written by `bench/retention.py` (run.sh keeps this section), with this command, on %s UTC at git %s:"
        % (datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"), git),
        "",
        "```",
        cmd,
        "```",
        "",
        "smisd starts on a store holding %s messages older than `store.retention_s` (one attempt and one "
        "delivery report each; %.0f MiB), as when retention is first turned on for an old store; the "
        "time runs from its start until `smis_store_purged_messages_total` has counted them all. Meanwhile "
        "%d `sms_only` messages are sent one after another; the baseline is %d more right after the "
        "purge, in the same repetition. Medians over %d repetitions; one client, so the latencies are "
        "those of single requests (the load benchmarks are above)."
        % ("{:,}".format(N), med(lambda r: r["size"]) / 2**20, SENDS, SENDS, REPS),
        "",
        "| figure | value |",
        "|---|--:|",
        "| time to delete them all, from smisd's start | %.2f s |" % med(lambda r: r["elapsed"]),
        "| messages deleted per second | %s |" % "{:,.0f}".format(med(lambda r: r["rate"])),
        "| send p50 / p99 during the purge | %.2f / %.2f ms |" % (med(lambda r: r["during"][0]),
                                                                 med(lambda r: r["during"][1])),
        "| send p50 / p99 after it (baseline) | %.2f / %.2f ms |" % (med(lambda r: r["after"][0]),
                                                                    med(lambda r: r["after"][1])),
        "| p50 during / after | %.2f |" % statistics.median(r["during"][0] / r["after"][0] for r in runs),
        "<!-- retention:end -->",
        "",
    ]
    section = "\n".join(lines)
    out = os.path.join(SRC, "bench/RESULTS.md")
    with open(out) as f:
        text = f.read()
    text = re.sub(r"<!-- retention:begin -->.*?<!-- retention:end -->\n?", "", text, flags=re.S).rstrip("\n")
    with open(out + ".tmp", "w") as f:
        f.write(text + "\n\n" + section)
    os.replace(out + ".tmp", out)
    print(section)


if __name__ == "__main__":
    main()
