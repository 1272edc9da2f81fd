"""
Durability: smisd killed with SIGKILL in the middle of a load, then started
again on the same store, and its disk full for a while. What the clients
were answered is checked against what the store holds afterwards and what
the upstream (ringring-sim) received: docs/architecture.md, section 2
steps 6 and 7 ("Answer, then commit" and "Commit, then answer") and
section 9 ("When the database cannot be written").

Every message goes to a recipient of its own, so that the sends the
simulator recorded for one number are the sends of one Idempotency-Key.
"""
import contextlib
import datetime
import json
import os
import re
import signal
import sqlite3
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (SLOW, PreloadedFaultCase, StackTestCase, http, message, poll_until)  # noqa: E402

MESSAGES = 240
CLIENTS = 6


def recipient(i):
    """The mobile number of message i: one per message."""
    return "+3247%07d" % (1000000 + i)


def body(i):
    return message(recipient(i), "sms_only", reference="dur-%d" % i)


def key(i):
    return "durability-%d" % i


class Clock:
    """A sequence number per client event, in the order the events happened
    (taken under a lock): a request sent after another's answer arrived has
    a larger `sent` than that answer's `answered`. No wall clock involved."""

    def __init__(self):
        self.n = 0
        self.lock = threading.Lock()

    def tick(self):
        with self.lock:
            self.n += 1
            return self.n


class Outcome:
    def __init__(self, i):
        self.i = i
        self.sent = self.answered = None
        self.response = None  # None: no answer (the connection was cut)


def load_then_kill(case):
    """Send MESSAGES messages from CLIENTS threads, each with its
    Idempotency-Key; SIGKILL smisd once half of them are answered 201. The
    clients stop starting requests at the kill. Returns the outcomes of the
    requests started, by index."""
    s = case.stack
    clock, killed = Clock(), threading.Event()
    outcomes, lock, queue = {}, threading.Lock(), iter(range(MESSAGES))

    def client():
        while not killed.is_set():
            with lock:
                i = next(queue, None)
                if i is None:
                    return
                o = outcomes[i] = Outcome(i)
            while True:
                o.sent = clock.tick()
                try:
                    r = s.send(body(i), headers={"Idempotency-Key": key(i)})
                except OSError:  # reset, refused: killed
                    return
                o.answered = clock.tick()
                # Refused before anything is done (limits.max_in_flight):
                # the same request again, as a client would.
                if r.status == 503 and r.json and r.json.get("code") == "overloaded" and not killed.is_set():
                    continue
                o.response = r
                break

    def answered():
        with lock:
            return sum(1 for o in outcomes.values() if o.response is not None and o.response.status == 201)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    try:
        poll_until(lambda: answered() >= MESSAGES // 2, 60, lambda: "only %d answered" % answered())
    finally:
        s.smisd.send_signal(signal.SIGKILL)
        killed.set()
        for t in threads:
            t.join()
    s.smisd.wait()
    for o in outcomes.values():
        if o.response is not None:
            case.assertEqual(o.response.status, 201, o.response.raw)
    return outcomes


def check_store(case):
    """The database a SIGKILL left: it opens, passes integrity_check, and
    each message's rows are whole: every attempt belongs to a stored
    message and each message has the attempts its stored answer lists.
    Returns {idempotency key: (id, status)} of the stored messages."""
    con = sqlite3.connect(os.path.join(case.stack.dir, "smis.db"))
    try:
        case.assertEqual(con.execute("PRAGMA integrity_check").fetchall(), [("ok",)])
        orphans = con.execute("SELECT count(*) FROM attempts WHERE message_id NOT IN (SELECT id FROM messages)")
        case.assertEqual(orphans.fetchone()[0], 0, "attempts without their message")
        stored = {}
        for mid, idem, status, response in con.execute(
                "SELECT id, idem_key, status, response FROM messages"):
            n = con.execute("SELECT count(*) FROM attempts WHERE message_id = ?", (mid,)).fetchone()[0]
            case.assertEqual(n, len(json.loads(response)["attempts"]), "message %s is partial" % mid)
            stored[idem] = (mid, status)
        return stored
    finally:
        con.close()


def sends_per_recipient(stack):
    sends = {}
    for r in stack.sim("ringring", "GET", "/_sim/requests").json:
        number = "+" + re.sub(r"\D", "", r["to"])
        sends[number] = sends.get(number, 0) + 1
    return sends


class KilledCase(StackTestCase):
    """One load, one SIGKILL, one restart on the same store."""
    max_in_flight = 32
    commit_before_answer = None

    @classmethod
    def setUpClass(cls):
        cls.stack_kwargs = {"ringring_status_url": False, "max_in_flight": cls.max_in_flight,
                            "store_extra": "" if cls.commit_before_answer is None else
                            "commit_before_answer = %s;" % str(cls.commit_before_answer).lower()}
        super().setUpClass()

    def setUp(self):
        super().setUp()
        s = self.stack
        # Slow enough upstream answers that some sends are on their way
        # at the kill (recorded by the simulator, not answered).
        s.sim("ringring", "POST", "/_sim/faults", {"latency_ms": 20})
        self.outcomes = load_then_kill(self)
        self.stored = check_store(self)
        self.sends_before = sends_per_recipient(s)
        s.start_smisd()
        s.sim("ringring", "DELETE", "/_sim/faults")

    def retry(self, o):
        return self.stack.send(body(o.i), headers={"Idempotency-Key": key(o.i)})

    def check_replayed(self, o, answer):
        r = self.retry(o)
        self.assertEqual((r.status, r.headers.get("Idempotent-Replayed")), (200, "true"), r.raw)
        self.assertEqual((r.json["id"], r.json["status"]), (answer["id"], answer["status"]))

    def check_unanswered(self):
        """A request cut by the kill: stored (committed, not yet answered)
        or not. A retry replays the stored one and sends nothing; it sends
        the other (201). That one may then be sent twice: its first send
        can have reached the upstream before the kill, and no record of it
        survived to stop the second (docs/architecture.md, section 2,
        step 6, "What this trades": so it is with either setting)."""
        twice = 0
        for o in self.outcomes.values():
            if o.response is not None:
                continue
            r = self.retry(o)
            number = recipient(o.i)
            if key(o.i) in self.stored:
                self.assertEqual((r.status, r.headers.get("Idempotent-Replayed")), (200, "true"), r.raw)
                self.assertEqual(r.json["id"], self.stored[key(o.i)][0])
                self.assertEqual(self.sends_before.get(number), 1)
                self.assertEqual(sends_per_recipient(self.stack).get(number), 1)
            else:
                self.assertEqual(r.status, 201, r.raw)
                self.assertLessEqual(self.sends_before.get(number, 0), 1)
                self.assertEqual(sends_per_recipient(self.stack).get(number), self.sends_before.get(number, 0) + 1)
                twice += self.sends_before.get(number, 0)
        return twice

    def answered(self):
        return sorted((o for o in self.outcomes.values() if o.response is not None), key=lambda o: o.answered)


class KilledCommitFirst(KilledCase):
    """store.commit_before_answer = true: a 201 proves the commit, so no
    answered message is missing after the restart."""
    commit_before_answer = True

    def test_every_answered_message_survives_a_sigkill(self):
        answered = self.answered()
        self.assertGreaterEqual(len(answered), MESSAGES // 2)
        for o in answered:
            answer = o.response.json
            self.assertIn(key(o.i), self.stored, "message %s answered 201, not stored" % answer["id"])
            r = self.stack.get(answer["id"])
            self.assertEqual((r.status, r.json["status"]), (200, answer["status"]), r.raw)
            self.check_replayed(o, answer)
            self.assertEqual(sends_per_recipient(self.stack).get(recipient(o.i)), 1)
        self.check_unanswered()


class KilledAnswerFirst(KilledCase):
    """The default (answer, then commit): a SIGKILL loses the records of
    the messages answered and not committed yet, and only those. They are
    the last ones queued to the store writer, which commits in the order
    they were queued, each batch whole; a message is queued before it is
    answered. So the missing ones are a tail: no message whose request
    was sent after a missing one's answer came back is stored either.
    Their number is bounded by limits.max_in_flight (32 here), as an
    answered message keeps its slot until it is committed; no wall-clock
    bound is tested (the window is commit_delay_ms plus the writing of the
    batches ahead of it, longer on a loaded machine)."""
    max_in_flight = 32

    def test_only_the_last_uncommitted_answers_are_lost(self):
        answered = self.answered()
        self.assertGreaterEqual(len(answered), MESSAGES // 2)
        lost = [o for o in answered if key(o.i) not in self.stored]
        self.assertLessEqual(len(lost), self.max_in_flight)
        for o in lost:
            later = [p.i for p in self.outcomes.values() if p.sent > o.answered and key(p.i) in self.stored]
            self.assertEqual(later, [], "stored though sent after the answer of %d, lost" % o.i)
        for o in answered:
            answer = o.response.json
            r = self.stack.get(answer["id"])
            if o in lost:
                self.assertEqual(r.status, 404, r.raw)
                # The trade documented: its key was not stored, the retry
                # sends it again.
                self.assertEqual(self.retry(o).status, 201)
                self.assertEqual(sends_per_recipient(self.stack).get(recipient(o.i)), 2)
                continue
            self.assertEqual((r.status, r.json["status"]), (200, answer["status"]), r.raw)
            self.check_replayed(o, answer)
            self.assertEqual(sends_per_recipient(self.stack).get(recipient(o.i)), 1)
        self.check_unanswered()


class CommitFirstFlushesTheWal(PreloadedFaultCase):
    """With store.commit_before_answer the answer proves the commit, and
    the operator chose that over latency: the commit flushes the WAL
    (synchronous=FULL), so that a power failure cannot lose it either. By
    default the WAL is flushed at the checkpoints only (synchronous=NORMAL).
    The setting is reloadable: the store thread follows it batch by batch.
    tests/plugins/walsync.c counts the WAL flushes of the store's commits,
    a byte each in self.flag."""
    preload, flag_env = "walsync", "SMIS_TEST_WALSYNCS"
    stack_kwargs = {"ringring_status_url": False}
    N = 8

    def flushes(self):
        return os.path.getsize(self.flag) if os.path.exists(self.flag) else 0

    def flushes_sending(self, commit_first):
        """The WAL flushes of the commits of N messages sent one after the
        other (each its own batch), with commit_before_answer as given."""
        s = self.stack
        s.store_extra = "commit_before_answer = %s;" % str(commit_first).lower()
        s.write_conf()
        s.reload_and_wait()
        before = self.flushes()
        for i in range(self.N):
            r = s.send(body(i))
            self.assertEqual(r.status, 201, r.raw)
            s.wait_stored(r.json["id"])
        return self.flushes() - before

    def test_a_commit_first_message_is_flushed_at_its_commit(self):
        self.assertEqual(self.flushes_sending(False), 0)
        self.assertGreaterEqual(self.flushes_sending(True), self.N)
        self.assertEqual(self.flushes_sending(False), 0)


class DiskFullCase(PreloadedFaultCase):
    """The store's files (and only they: not the log) refuse every write
    with ENOSPC for the length of self.failing() (tests/plugins/diskfull.c)."""
    preload, flag_env = "diskfull", "SMIS_TEST_DISKFULL"
    stack_kwargs = {"ringring_status_url": False}

    def setUp(self):
        super().setUp()
        self.stack.expect_log(r"^cannot write \(database or disk is full\): \d+ message record\(s\) and \d+ report"
                              r"\(s\) kept in memory, retrying$", r"^written after \d+ retries$")

    def secret(self, i):
        """A message whose content and number must not reach the log."""
        m = body(i)
        m["content"]["nl"] = {"title": "Geheim-titel-%d" % i, "body": "Geheim-bericht-%d" % i}
        return m

    def wait_retried(self, before, n=2):
        """Until the writer has tried its batch again n times more: the
        disk is known to have failed it then, however slow the machine."""
        s = self.stack
        poll_until(lambda: (s.metric("smis_store_retries_total") or 0) >= before + n, 30,
                   lambda: "batch not tried again: %s" % s.log_text()[-1500:])

    def answered_in_memory(self, n):
        """Send n messages while the disk is full: each answered 201 (by
        default), and kept in memory once the writer has tried them again."""
        s = self.stack
        retries = s.metric("smis_store_retries_total") or 0
        answers = [s.send(self.secret(i), headers={"Idempotency-Key": key(i)}) for i in range(n)]
        self.assertEqual([r.status for r in answers], [201] * n)
        self.wait_retried(retries)
        return answers

    def check_logged_once(self, errors_before):
        s = self.stack
        log = s.log_text()
        self.assertEqual(len(re.findall(r"cannot write \(database or disk is full\)", log)), 1, log[-3000:])
        self.assertEqual(len(re.findall(r"written after \d+ retries", log)), 1, log[-3000:])
        # Nothing was lost, so nothing counted as not stored.
        self.assertEqual(s.metric('smis_store_errors_total{operation="message"}') or 0, errors_before)
        self.assertNotRegex(log, r"Geheim|4710000\d\d")


class DiskFull(DiskFullCase):
    """By default a message is answered before its commit: while the disk
    is full the clients are answered 201 as usual, GET and idempotent
    retries find the messages in memory, and once the disk takes writes
    again the batch kept in memory is written, whole. The messages kept
    hold their limits.max_in_flight slots (5 here): past them a new one is
    refused 503 overloaded, with nothing sent."""
    stack_kwargs = dict(DiskFullCase.stack_kwargs, max_in_flight=5)

    def test_answered_while_full_are_stored_once_it_recovers(self):
        s = self.stack
        retries = s.metric("smis_store_retries_total") or 0
        errors = s.metric('smis_store_errors_total{operation="message"}') or 0
        with self.failing():
            answers = []
            for i in range(5):
                r = s.send(self.secret(i), headers={"Idempotency-Key": key(i)})
                self.assertEqual((r.status, r.json["status"]), (201, "sent"), r.raw)
                answers.append(r.json)
                if i == 0:
                    self.wait_retried(retries)
            for i, answer in enumerate(answers):
                self.assertEqual(s.get(answer["id"]).status, 200)
                self.assertIsNone(s.stored_status(answer["id"]))
                r = s.send(self.secret(i), headers={"Idempotency-Key": key(i)})
                self.assertEqual((r.status, r.headers.get("Idempotent-Replayed"), r.json["id"]),
                                 (200, "true", answer["id"]), r.raw)
            s.expect_log(r": 503 overloaded$")
            r = s.send(self.secret(5), headers={"Idempotency-Key": key(5)})
            self.assertEqual((r.status, r.json["code"], r.headers.get("Retry-After")), (503, "overloaded", "1"), r.raw)
            self.assertEqual(len(s.sim("ringring", "GET", "/_sim/requests").json), 5)
        for answer in answers:
            s.wait_stored(answer["id"], timeout=30)
            self.assertEqual(s.get(answer["id"]).json["status"], "sent")
        s.wait_idle()
        self.assertEqual(s.send(self.secret(5), headers={"Idempotency-Key": key(5)}).status, 201)
        self.assertIsNone(s.smisd.poll())
        self.check_logged_once(errors)


class DiskFullCommitFirst(DiskFullCase):
    """With store.commit_before_answer the answer waits for the commit:
    while the disk is full the client waits (the batch is tried again),
    and is answered 201 once the disk takes the record, not before."""
    stack_kwargs = dict(DiskFullCase.stack_kwargs, store_extra="commit_before_answer = true;")

    def test_answer_waits_for_the_disk_and_proves_the_commit(self):
        s = self.stack
        retries = s.metric("smis_store_retries_total") or 0
        errors = s.metric('smis_store_errors_total{operation="message"}') or 0
        answers = []
        with self.failing():
            sender = threading.Thread(target=lambda: answers.append(
                s.send(self.secret(0), headers={"Idempotency-Key": key(0)})))
            sender.start()
            self.wait_retried(retries)
            self.assertEqual(answers, [], "answered before its commit")
            # Nothing else waits for the disk: smisd answers, and a retry
            # of the waiting request is told that it is still running.
            self.assertEqual(http("GET", s.base + "/healthz").status, 200)
            r = s.send(self.secret(0), headers={"Idempotency-Key": key(0)})
            self.assertEqual((r.status, r.json["code"]), (409, "idempotency_in_progress"), r.raw)
        sender.join(30 * SLOW)
        self.assertFalse(sender.is_alive(), "no answer once the disk recovered")
        r = answers[0]
        self.assertEqual((r.status, r.json["status"]), (201, "sent"), r.raw)
        self.assertEqual(s.stored_status(r.json["id"]), "sent")
        self.assertEqual(len(s.sim("ringring", "GET", "/_sim/requests").json), 1)
        self.check_logged_once(errors)


class KilledWhileDiskFull(DiskFullCase):
    """The window in which a crash loses an answered message's record
    (answer, then commit) is not commit_delay_ms when the disk fails: it
    lasts until the disk takes the batch again. Killed meanwhile, smisd
    loses the records of every message answered since the disk failed;
    as documented (README, smis.conf(5), docs/architecture.md)."""

    def test_records_kept_in_memory_die_with_the_process(self):
        s = self.stack
        with self.failing():
            answers = self.answered_in_memory(3)
            s.smisd.send_signal(signal.SIGKILL)
            s.smisd.wait()
        s.start_smisd()
        for i, r in enumerate(answers):
            self.assertEqual(s.get(r.json["id"]).status, 404)
            self.assertEqual(s.send(self.secret(i), headers={"Idempotency-Key": key(i)}).status, 201)
        self.assertEqual(len(s.sim("ringring", "GET", "/_sim/requests").json), 6)


class CheckpointFails(DiskFullCase):
    """The database file refuses writes while its WAL takes them (a failing
    disk region): commits go on, but the checkpoints, which copy the WAL
    into the database file and flush it, fail, and the WAL grows. That
    was silent; it is logged and counted once when it starts, and once
    more when a checkpoint works again."""

    @contextlib.contextmanager
    def database_file_failing(self):
        with open(self.flag, "w") as f:
            f.write("smis.db\n")
        try:
            yield
        finally:
            os.unlink(self.flag)

    def test_a_failing_checkpoint_is_said_once(self):
        s = self.stack
        s.expect_log(r"^checkpoint failed \(database or disk is full\): the WAL grows",
                     r"^checkpoint works again, after \d+ failed tries$")
        with self.database_file_failing():
            for i in range(2):
                r = s.send(self.secret(i))
                self.assertEqual(r.status, 201, r.raw)
                s.wait_stored(r.json["id"])
                poll_until(lambda: "checkpoint failed" in s.log_text(), 20,
                           lambda: "failing checkpoint not logged: " + s.log_text()[-1500:])
        poll_until(lambda: "checkpoint works again" in s.log_text(), 20,
                   lambda: "recovered checkpoint not logged: " + s.log_text()[-1500:])
        log = s.log_text()
        self.assertEqual(len(re.findall(r"checkpoint failed", log)), 1, log[-3000:])
        self.assertEqual(len(re.findall(r"checkpoint works again", log)), 1, log[-3000:])
        self.assertEqual(s.metric('smis_store_errors_total{operation="checkpoint"}'), 1)
        self.assertNotRegex(log, r"Geheim|4710000\d\d")


class StoppedWhileDiskFull(DiskFullCase):
    """A graceful stop (SIGTERM) waits for the commits of the messages
    answered, for the drain window (job_timeout_ms + 1 s) at most; a disk
    still full then leaves the batch three more tries, spaced by pauses of
    up to 0.5 s (1.5 s in all), and it is given up: logged and lost
    (docs/architecture.md, section 2, step 6, and section 9), as the
    service manager's SIGKILL would lose it a little later."""
    stack_kwargs = dict(DiskFullCase.stack_kwargs, job_timeout_ms=1000)

    def logged_at(self, start):
        """When the line whose message starts so was logged (s)."""
        for line in self.stack.log_text().splitlines():
            entry = json.loads(line)
            if entry["msg"].startswith(start):
                t = datetime.datetime.strptime(entry["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
                return t.replace(tzinfo=datetime.timezone.utc).timestamp()
        self.fail("not logged: " + start)

    def test_records_not_written_through_the_drain_are_logged_lost(self):
        s = self.stack
        s.expect_log(r"^stopping with 2 message\(s\) still in flight after the drain window$",
                     r"^commit failed \(database or disk is full\): \d message record\(s\) and 0 report\(s\)"
                     r" not stored$", r"^answered, but the record could not be stored$")
        with self.failing():
            answers = self.answered_in_memory(2)
            s.smisd.send_signal(signal.SIGTERM)
            self.assertEqual(s.smisd.wait(timeout=60 * SLOW), 0)
        self.assertEqual(len(re.findall(r"answered, but the record could not be stored", s.log_text())), 2)
        # The batch had been tried for more than 2 s, so its last two
        # pauses last 0.5 s each (they ran back to back, within a few ms).
        self.assertGreaterEqual(self.logged_at("commit failed") - self.logged_at("stopping with"), 1.0)
        s.start_smisd()
        for r in answers:
            self.assertEqual(s.get(r.json["id"]).status, 404)


if __name__ == "__main__":
    unittest.main()
