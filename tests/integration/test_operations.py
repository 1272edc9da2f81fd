"""
Operating smisd: reload under load (SIGHUP), refused reloads, graceful
SIGTERM with messages in flight, /metrics, JSON logs with request ids.
"""
import concurrent.futures
import contextlib
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (BUILD, CITIZENS, GOVAPP_CALLBACK_SECRET, KEYS, RINGRING_CALLBACK_TOKEN, SRC, Stack,  # noqa: E402
                     StackTestCase, http, SLOW, message, ms, poll_until, preloading, run_wrapped, valgrind)

NEW_STRATEGY = """,
  { name = "reloaded_sms"; steps = ( { plugin = "sms_only"; channel = "ringring"; } ); }"""


@contextlib.contextmanager
def background_load(send, threads=8):
    """Call send() in a loop on `threads` threads for the length of the
    with block; yields the list of what the calls returned."""
    stop = threading.Event()
    results = []
    lock = threading.Lock()

    def load():
        while not stop.is_set():
            r = send()
            with lock:
                results.append(r)

    workers = [threading.Thread(target=load) for _ in range(threads)]
    for t in workers:
        t.start()
    try:
        yield results
    finally:
        stop.set()
        for t in workers:
            t.join()


class Reload(StackTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stack.expect_log(r"syntax error|configuration refused")

    def test_reload_under_load_loses_nothing(self):
        # The pauses are SLOW times longer under valgrind, which answers
        # fewer messages per second: as many arrive during the reloads.
        with background_load(lambda: self.stack.send(message(CITIZENS["app_nl"], "govapp_first"))) as results:
            time.sleep(0.3 * SLOW)
            # A good reload that adds a strategy (inst-a may not use it yet:
            # the institution list is not changed), then a broken one.
            for i in range(5):
                self.stack.write_conf(extra_strategy=NEW_STRATEGY if i % 2 == 0 else "")
                self.stack.reload()
                time.sleep(0.2 * SLOW)
            with open(self.stack.conf, "a") as f:
                f.write("\nthis is not libconfig = = ;\n")
            self.stack.reload()
            time.sleep(0.3 * SLOW)
        self.assertGreater(len(results), 50)
        bad = [r for r in results if r.status != 201 or r.json["status"] != "sent"]
        self.assertEqual(bad, [])
        # Every answered message is in the store.
        for r in results[:: max(1, len(results) // 20)]:
            self.assertEqual(self.stack.get(r.json["id"]).status, 200)
        # The refused reload was logged with file:line, and smisd still serves.
        log = self.stack.log_text()
        self.assertRegex(log, re.escape(os.path.basename(self.stack.conf)) + r":\d+: ")
        self.assertIn("configuration refused", log)
        self.assertEqual(self.stack.send(message(CITIZENS["no_app"], "sms_only")).status, 201)
        metrics = http("GET", self.stack.base + "/metrics").raw
        ok = int(re.search(r'smis_reloads_total\{result="ok"\} (\d+)', metrics).group(1))
        refused = int(re.search(r'smis_reloads_total\{result="refused"\} (\d+)', metrics).group(1))
        self.assertGreaterEqual(ok, 5)
        self.assertEqual(refused, 1)

    def test_new_routing_applies_after_reload(self):
        self.stack.write_conf()
        r = self.stack.send(message(CITIZENS["no_app"], "reloaded_sms"))
        self.assertEqual(r.json["code"], "unknown_strategy", r.raw)
        self.stack.write_conf(extra_strategy=NEW_STRATEGY)
        conf2 = open(self.stack.conf).read().replace(
            '"govapp_and_sms", "app_then_sms" ]', '"govapp_and_sms", "app_then_sms", "reloaded_sms" ]')
        with open(self.stack.conf, "w") as f:
            f.write(conf2)
        self.stack.reload()
        deadline = time.time() + 10
        while time.time() < deadline:
            r = self.stack.send(message(CITIZENS["no_app"], "reloaded_sms"))
            if r.status == 201:
                break
            time.sleep(0.1)
        self.assertEqual(r.status, 201, r.raw)
        self.assertEqual(r.json["strategy"], "reloaded_sms")


class RefusedInclude(StackTestCase):
    """libconfig's scanner exit()s the whole process when an @include'd file
    cannot be read, as a directory cannot: a reload of such a file stopped
    smisd. smisd now refuses it like any configuration error, with the file
    and line, and keeps serving with the previous generation."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stack.expect_log(r"not a regular file|configuration refused")

    def test_reload_with_a_directory_include_is_refused(self):
        os.mkdir(os.path.join(self.stack.dir, "conf.d"))
        with open(self.stack.conf, "a") as f:
            f.write('\n@include "conf.d"\n')
        with open(self.stack.conf) as f:
            line = len(f.read().splitlines())
        self.stack.reload()
        poll_until(lambda: "configuration refused" in self.stack.log_text() or self.stack.smisd.poll() is not None,
                   10, lambda: "the reload was neither refused nor fatal")
        self.assertIsNone(self.stack.smisd.poll(), "smisd exited on the reload")
        self.assertRegex(self.stack.log_text(), r'smisd\.conf:%d: @include \\?"conf\.d\\?": not a regular file' % line)
        self.assertEqual(self.stack.send(message(CITIZENS["no_app"], "sms_only")).status, 201)
        # --check-config says the same, without starting.
        p = run_wrapped([os.path.join(BUILD, "smisd"), "--check-config", "-c", self.stack.conf])
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn('smisd.conf:%d: @include "conf.d": not a regular file' % line, p.stderr)


class CheckConfigShowsNoControls(StackTestCase):
    """smisd --check-config quotes the file's names and values (and the
    file's own name) in its errors: a control character there, written
    with a libconfig escape, reaches the operator's terminal as '?', never
    as the ESC that would drive it nor the newline that would forge a line."""

    def check(self, edit):
        """smisd --check-config on the stack's configuration as edit(text)
        makes it: its stderr, once it is known to hold no ESC nor BEL."""
        path = os.path.join(self.stack.dir, "check.conf")
        self.stack.write_conf(path=path)
        with open(path) as f:
            text = edit(f.read())
        with open(path, "w") as f:
            f.write(text)
        p = run_wrapped([os.path.join(BUILD, "smisd"), "--check-config", "-c", path])
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        for out in (p.stdout, p.stderr):
            self.assertNotIn("\x1b", out)
            self.assertNotIn("\x07", out)
        return p.stderr

    def test_names_and_values_are_shown_with_question_marks(self):
        def edit(text):
            for old, new in (('name = "govapp"; plugin = "govapp";', r'name = "\x1b[31mred"; plugin = "govapp";'),
                             ('plugin = "ringring";', r'plugin = "\x1b[2Jgone\nsmisd: OK";'),
                             ('default_strategy = "sms_only"; sender = "32470999999";',
                              r'default_strategy = "\x1b]0;title\x07"; sender = "32470999999";')):
                self.assertEqual(text.count(old), 1, old)
                text = text.replace(old, new)
            return text
        err = self.check(edit)
        self.assertIn("'?[31mred'", err)
        self.assertIn("?[2Jgone?smisd: OK", err)
        self.assertNotIn("\nsmisd: OK", err)
        self.assertIn("'?]0;title?'", err)

    def test_file_names_are_shown_with_question_marks(self):
        # An included file whose name holds an ESC (as it is: libconfig
        # reads no escapes there), and an error in it.
        inc = "inc\x1b[7m.conf"
        with open(os.path.join(self.stack.dir, inc), "w") as f:
            f.write("\nnot_a_setting = 1;\n")
        err = self.check(lambda text: text + '@include "%s"\n' % inc)
        self.assertIn("inc?[7m.conf:2: unknown setting 'not_a_setting'", err)

    def test_the_path_of_a_valid_file_is_shown_with_question_marks(self):
        # The -c path as typed, in the "configuration OK" line: it was
        # printed as it was, ESC and newline included.
        path = os.path.join(self.stack.dir, "ok\x1b[2J\nsmisd: forged.conf")
        self.stack.write_conf(path=path)
        p = run_wrapped([os.path.join(BUILD, "smisd"), "--check-config", "-c", path])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        for out in (p.stdout, p.stderr):
            self.assertNotIn("\x1b", out)
            self.assertNotIn("\nsmisd: forged", out)
        self.assertIn("ok?[2J?smisd: forged.conf: configuration OK (", p.stdout)


def ringring_dlr(stack, msg_id, provider_id, code="200"):
    """A RingRing delivery report, as its webhook would post it."""
    return http("POST", stack.base + "/v1/callbacks/ringring/" + RINGRING_CALLBACK_TOKEN,
                {"MessageId": provider_id, "Reference": msg_id, "StatusCode": code})


def govapp_callback(stack, notification_id):
    """A GovApp status callback, signed as its backend would sign it."""
    body = json.dumps({"notification_id": notification_id, "device_id": "d-1", "status": "delivered"}).encode()
    t = int(time.time())
    mac = hmac.new(GOVAPP_CALLBACK_SECRET.encode(), str(t).encode() + b"." + body, hashlib.sha256).hexdigest()
    return http("POST", stack.base + "/v1/callbacks/govapp", body,
                {"Content-Type": "application/json", "X-GovApp-Signature": "t=%d,v1=%s" % (t, mac)})


def restarted_with_orphans(test, orphans):
    """Stop smisd, add RingRing orphan reports (provider reference, time
    received) to its store, and start it again."""
    s = test.stack
    s.smisd.send_signal(signal.SIGTERM)
    test.assertEqual(s.smisd.wait(timeout=60), 0)
    con = sqlite3.connect(os.path.join(s.dir, "smis.db"))
    try:
        with con:
            con.executemany("INSERT INTO orphan_reports (channel, provider_ref, device, status, at_ms,"
                            " detail, received_ms) VALUES ('ringring', ?, '', 2, ?, NULL, ?)",
                            ((ref, received, received) for ref, received in orphans))
    finally:
        con.close()
    s.start_smisd()


def stored_sms(stack):
    """Send an SMS and wait until it is stored and nothing is in flight
    (a report is then checked against the stored sends); its answer and
    provider reference."""
    sent = stack.send(message(CITIZENS["no_app"], "sms_only")).json
    stack.wait_stored(sent["id"])
    stack.wait_idle()
    return sent, sent["attempts"][0]["provider_reference"]


def orphan_refs(stack):
    """The provider references of the reports kept as orphans, sorted."""
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(stack.dir, "smis.db"), uri=True)
    try:
        return sorted(r[0] for r in con.execute("SELECT provider_ref FROM orphan_reports"))
    finally:
        con.close()


def one_batch(stack, *submits):
    """Call each of submits in turn while the store's writer is held on a
    batch of its own (a message sent first, the write lock held until the
    writer has tried and failed to commit it): whatever they queue for the
    writer is written together in its next batch. What they returned."""
    retrying = r"cannot write \(database is locked\)"
    tried = len(re.findall(retrying, stack.log_text()))
    # The writer's once-a-second chores (orphan expiry, retention) wait 5 s
    # for the lock, then say they failed: a loaded machine (valgrind in CI)
    # can take that long over the submits. The lock is the test's doing.
    stack.expect_log(r"failed: database is locked")
    with stack.store_locked():
        stack.send(message(CITIZENS["no_app"], "sms_only"))
        poll_until(lambda: len(re.findall(retrying, stack.log_text())) > tried, 20,
                   lambda: "the writer did not wait for the lock: " + stack.log_text()[-1500:])
        return [submit() for submit in submits]


class StartOnlySettings(StackTestCase):
    """Settings read once at start: a reload that changes them keeps the
    running values, and says so, one line per setting, naming it."""

    START_ONLY = {"listen.address", "listen.port", "listen.threads", "listen.connection_timeout_s",
                  "listen.max_connections", "store.path", "store.batch_max", "store.commit_delay_ms",
                  "limits.max_in_flight", "limits.prepare_threads"}

    def warned(self):
        lines = [json.loads(line) for line in self.stack.log_text().splitlines()]
        return [e["msg"] for e in lines if e.get("component") == "reload" and e.get("level") == "warn"]

    def test_reload_names_each_start_only_setting_changed(self):
        st = self.stack
        st.expect_log(r"until its next restart$")
        st.max_in_flight, st.prepare_threads = 100, 3
        st.listen_extra = "connection_timeout_s = 7; max_connections = 500; "
        st.store_extra = "batch_max = 17; commit_delay_ms = 9; "
        st.write_conf()
        with open(st.conf) as f:
            conf = f.read()
        with open(st.conf, "w") as f:
            f.write(conf.replace('address = "127.0.0.1"; port = %d; threads = 2;' % st.smisd_port,
                                 'address = "127.0.0.2"; port = %d; threads = 3;' % (st.smisd_port + 1))
                    .replace(os.path.join(st.dir, "smis.db"), os.path.join(st.dir, "other.db")))
        st.reload_and_wait()
        warned = self.warned()
        self.assertEqual(sorted(m.split(" ")[0] for m in warned), sorted(self.START_ONLY), warned)
        self.assertIn('listen.address changed to "127.0.0.2": smisd keeps "127.0.0.1" until its next restart',
                      warned)
        self.assertIn("limits.max_in_flight changed to 100: smisd keeps 8192 until its next restart", warned)
        # Still served as started; back to the file it started with, a reload says nothing.
        self.assertEqual(st.send(message(CITIZENS["no_app"], "sms_only")).status, 201)
        st.max_in_flight, st.prepare_threads, st.listen_extra, st.store_extra = 8192, None, "", ""
        st.write_conf()
        st.reload_and_wait()
        self.assertEqual(len(self.warned()), len(warned))


class RebuiltPlugin(StackTestCase):
    """dlopen() returns the copy in memory for a path already loaded: a
    reload cannot pick up a plugin rebuilt at the same path, and says so."""

    def test_reload_warns_of_a_plugin_file_changed_since_loaded(self):
        st = self.stack
        st.expect_log(r"changed since it was loaded")
        built = os.path.join(BUILD, "plugin-dir")
        copies = os.path.join(st.dir, "plugins")
        os.mkdir(copies)
        for name in os.listdir(built):
            shutil.copy(os.path.join(built, name), copies)
        with open(st.conf) as f:
            conf = f.read()
        with open(st.conf, "w") as f:
            f.write(conf.replace('plugin_dir = "%s";' % built, 'plugin_dir = "%s";' % copies))
        st.reload_and_wait()  # files new to smisd: loaded, nothing to say
        self.assertNotIn("changed since it was loaded", st.log_text())
        # A new build lands as a new file at the same path.
        rebuilt = os.path.join(copies, "sms_only.so")
        shutil.copy(rebuilt, rebuilt + ".new")
        os.replace(rebuilt + ".new", rebuilt)
        st.reload_and_wait()
        st.reload_and_wait()  # and still, until the restart
        warned = [line for line in st.log_text().splitlines() if "changed since it was loaded" in line]
        self.assertEqual(len(warned), 2, warned)
        self.assertIn("plugin file %s changed since it was loaded" % rebuilt, warned[0])


class StoreLocked(StackTestCase):
    """Another process holds the database's write lock for longer than
    smisd's busy timeout (5 s): an operator's sqlite3 shell in a
    transaction, a backup tool. The records of the messages answered
    meanwhile must wait in memory and be written once it lets go; they
    were dropped ("cannot store message: database is locked"), and with
    them the Idempotency-Keys of messages already sent."""

    def test_records_wait_for_the_lock_and_are_written(self):
        s = self.stack
        s.expect_log(r"cannot write \(database is locked\): .* kept in memory, retrying")
        s.expect_log(r"written after \d+ retries")
        first = s.send(message(CITIZENS["no_app"], "sms_only"))
        s.wait_stored(first.json["id"])
        retries_before = s.metric("smis_store_retries_total") or 0
        with s.store_locked():
            sent = [s.send(message(CITIZENS["no_app"], "sms_only"), headers={"Idempotency-Key": "locked-%d" % i})
                    for i in range(3)]
            self.assertEqual([r.status for r in sent], [201] * 3, [r.raw for r in sent])
            poll_until(lambda: "kept in memory, retrying" in s.log_text(), 20,
                       lambda: "no retry logged: " + s.log_text()[-1500:])
            # Meanwhile they are read from memory, and a retry replays.
            for i, r in enumerate(sent):
                self.assertEqual(s.get(r.json["id"]).status, 200)
                again = s.send(message(CITIZENS["no_app"], "sms_only"), headers={"Idempotency-Key": "locked-%d" % i})
                self.assertEqual((again.status, again.json["id"]), (200, r.json["id"]), again.raw)
        for r in sent:
            s.wait_stored(r.json["id"], timeout=30)
        self.assertGreater(s.metric("smis_store_retries_total"), retries_before)
        # Stored with their keys: a retry now replays from the database.
        s.wait_idle()
        again = s.send(message(CITIZENS["no_app"], "sms_only"), headers={"Idempotency-Key": "locked-0"})
        self.assertEqual((again.status, again.json["id"]), (200, sent[0].json["id"]), again.raw)
        self.assertEqual(len(s.sim("ringring", "GET", "/_sim/requests").json), 4)


class IdempotencyLookupFails(StackTestCase):
    """When the store cannot tell whether an Idempotency-Key was used (the
    read fails: a damaged database, out of memory), the request is refused
    with 503 idempotency_unavailable: taking the key as unused would send a
    retried message a second time. A column renamed by another process
    makes the read fail here."""

    def test_failed_lookup_sends_nothing(self):
        s = self.stack
        s.expect_log(r"^idempotency lookup failed: no such column: idem_key$")
        s.expect_log(r": 503 idempotency_unavailable$")
        body = message(CITIZENS["no_app"], "sms_only")
        first = s.send(body, headers={"Idempotency-Key": "lookup-0"})
        self.assertEqual(first.status, 201, first.raw)
        s.wait_stored(first.json["id"])
        s.wait_idle()
        with s.column_hidden("messages", "idem_key"):
            for key in ("lookup-0", "lookup-1"):
                r = s.send(body, headers={"Idempotency-Key": key})
                self.assertEqual((r.status, r.json["code"], r.headers["Retry-After"]),
                                 (503, "idempotency_unavailable", "1"), r.raw)
        self.assertEqual(len(s.sim("ringring", "GET", "/_sim/requests").json), 1)
        again = s.send(body, headers={"Idempotency-Key": "lookup-0"})
        self.assertEqual((again.status, again.json["id"]), (200, first.json["id"]), again.raw)


class ReportsWhileStoreLocked(StackTestCase):
    """While the store cannot write, delivery reports wait in memory with
    the batch being retried: at most 8 x max_in_flight of them (16 here).
    Beyond that a webhook is answered 503 overloaded with Retry-After, so
    that its sender retries, instead of the queue growing without bound."""
    stack_kwargs = {"max_in_flight": 2, "ringring_status_url": False}

    def dlr(self, msg_id, provider_id, code="200"):
        return ringring_dlr(self.stack, msg_id, provider_id, code)

    def test_reports_are_bounded_then_stored(self):
        s = self.stack
        s.expect_log(r"cannot write \(database is locked\)")
        s.expect_log(r"written after \d+ retries")
        s.expect_log(r"503 overloaded")
        sent, provider_id = stored_sms(s)
        with s.store_locked():
            answers = []
            while len(answers) < 40 and (not answers or answers[-1].status == 200):
                answers.append(self.dlr(sent["id"], provider_id))
            refused = answers[-1]
            self.assertEqual((refused.status, refused.json["code"], refused.headers["Retry-After"]),
                             (503, "overloaded", "1"), refused.raw)
            # 16 queued, plus those the writer took into the batch it retries.
            self.assertTrue(16 <= len(answers) - 1 <= 24, len(answers))
            self.assertEqual({r.status for r in answers[:-1]}, {200})
        # Once the lock is gone the queued reports are written and the
        # webhooks are taken again.
        poll_until(lambda: s.get(sent["id"]).json["status"] == "delivered", 30,
                   lambda: "report not stored: " + s.get(sent["id"]).raw)
        poll_until(lambda: self.dlr(sent["id"], provider_id).status == 200, 30, lambda: "webhooks still refused")


class ReportNotStorable(StackTestCase):
    """A report the store refuses for a reason a retry would not cure (a
    trigger here; a damaged database in life) is logged and counted, the
    message's status does not move without it, and what else the batch
    holds is written. A report and the status it moves are stored together
    or not at all: when the status update was refused, the report's row
    stayed, showing a report the message's status never followed."""
    stack_kwargs = {"ringring_status_url": False}

    def refused_report_moves_nothing(self, trigger, reason):
        s = self.stack
        s.expect_log(r"^report failed: constraint failed \(%s\)$" % reason)
        before = s.metric('smis_store_errors_total{operation="report"}') or 0
        sent, provider_id = stored_sms(s)
        con = sqlite3.connect(os.path.join(s.dir, "smis.db"), isolation_level=None)
        try:
            con.execute(trigger)
            r = ringring_dlr(s, sent["id"], provider_id)
            self.assertEqual((r.status, r.json), (200, {"accepted": 1}), r.raw)
            other = s.send(message(CITIZENS["no_app"], "sms_only"))
            self.assertEqual(other.status, 201, other.raw)
            poll_until(lambda: s.metric('smis_store_errors_total{operation="report"}') == before + 1, 10,
                       lambda: "refused report not counted: " + s.log_text()[-1500:])
            s.wait_stored(other.json["id"])
            got = s.get(sent["id"]).json
            self.assertEqual((got["status"], got["reports"]), ("sent", []))
            con.execute("DROP TRIGGER refuse")
        finally:
            con.close()
        r = ringring_dlr(s, sent["id"], provider_id)
        self.assertEqual(r.status, 200, r.raw)
        poll_until(lambda: s.get(sent["id"]).json["status"] == "delivered", 10,
                   lambda: "report not stored once allowed: " + s.get(sent["id"]).raw)
        self.assertEqual(s.metric('smis_store_errors_total{operation="report"}'), before + 1)

    def test_refused_report_is_logged_counted_and_moves_nothing(self):
        self.refused_report_moves_nothing("CREATE TRIGGER refuse BEFORE INSERT ON reports"
                                          " BEGIN SELECT RAISE(ABORT, 'report refused by the test'); END",
                                          "report refused by the test")

    def test_refused_status_update_takes_its_report_back(self):
        self.refused_report_moves_nothing("CREATE TRIGGER refuse BEFORE UPDATE OF status ON messages"
                                          " BEGIN SELECT RAISE(ABORT, 'status refused by the test'); END",
                                          "status refused by the test")


class MessageNotStorable(StackTestCase):
    """A message whose rows the store refuses partway for a reason a retry
    would not cure (a trigger on its third attempt here; a damaged database
    in life) is stored whole or not at all: its message row and first two
    attempts went into the commit. Logged and counted as not stored."""
    # No delivery reports: the SMS's would come for a message that is not
    # stored and be refused with a warning, whenever the simulator sends it.
    stack_kwargs = {"ringring_status_url": False}

    def test_refused_attempt_leaves_no_partial_record(self):
        s = self.stack
        s.expect_log(r"^message failed: constraint failed \(attempt refused by the test\)$",
                     r"^answered, but the record could not be stored$")
        con = sqlite3.connect(os.path.join(s.dir, "smis.db"), isolation_level=None)
        try:
            # The SMS, after the app's lookup and send: two attempts in before.
            con.execute("CREATE TRIGGER refuse_attempts BEFORE INSERT ON attempts WHEN NEW.seq = 2"
                        " BEGIN SELECT RAISE(ABORT, 'attempt refused by the test'); END")
            r = s.send(message(CITIZENS["app_nl"], "govapp_and_sms"))
            self.assertEqual((r.status, len(r.json["attempts"])), (201, 3), r.raw)
            s.wait_idle()  # its slot is given back after the commit
            self.assertEqual([con.execute("SELECT count(*) FROM %s WHERE %s = ?" % t, (r.json["id"],)).fetchone()[0]
                              for t in (("messages", "id"), ("attempts", "message_id"))], [0, 0])
            self.assertEqual(s.metric('smis_store_errors_total{operation="message"}'), 1)
            con.execute("DROP TRIGGER refuse_attempts")
        finally:
            con.close()
        self.assertEqual(s.get(r.json["id"]).status, 404)
        other = s.send(message(CITIZENS["no_app"], "sms_only"))
        s.wait_stored(other.json["id"])
        self.assertEqual(s.get(other.json["id"]).status, 200)


class BatchNotStorable(StackTestCase):
    """A batch that fails for a reason a retry would not cure (here a
    message's record cannot be deleted again after its third attempt was
    refused; a damaged database in life) is rolled back and given up: every
    message record in it is lost, and each is counted as not stored, not
    only the one that failed for itself (the others were logged alone, in
    no metric)."""
    stack_kwargs = {"ringring_status_url": False}

    def test_each_lost_message_is_counted(self):
        s = self.stack
        s.expect_log(r"^message failed: constraint failed \(attempt refused by the test\)$",
                     r"^commit failed \(constraint failed\): 2 message record\(s\) and 0 report\(s\) not stored$",
                     r"^answered, but the record could not be stored$")
        con = sqlite3.connect(os.path.join(s.dir, "smis.db"), isolation_level=None)
        try:
            con.execute("CREATE TRIGGER refuse_attempts BEFORE INSERT ON attempts WHEN NEW.seq = 2"
                        " BEGIN SELECT RAISE(ABORT, 'attempt refused by the test'); END")
            con.execute("CREATE TRIGGER refuse_undo BEFORE DELETE ON messages"
                        " BEGIN SELECT RAISE(ABORT, 'delete refused by the test'); END")
            # Queued while the writer is held on a batch before them: one
            # batch, however slowly they are answered (valgrind).
            fine, refused = one_batch(s, lambda: s.send(message(CITIZENS["no_app"], "sms_only")),
                                      lambda: s.send(message(CITIZENS["app_nl"], "govapp_and_sms")))
            self.assertEqual((fine.status, refused.status), (201, 201), fine.raw + refused.raw)
            s.wait_idle(timeout=30)
            self.assertEqual(con.execute("SELECT count(*) FROM messages WHERE id IN (?, ?)",
                                         (fine.json["id"], refused.json["id"])).fetchone()[0], 0)
            self.assertEqual(s.metric('smis_store_errors_total{operation="message"}'), 2)
            self.assertIsNone(s.metric('smis_store_errors_total{operation="report"}'))
            con.execute("DROP TRIGGER refuse_attempts")
            con.execute("DROP TRIGGER refuse_undo")
        finally:
            con.close()
        other = s.send(message(CITIZENS["no_app"], "sms_only"))
        s.wait_stored(other.json["id"])
        self.assertEqual(s.metric('smis_store_errors_total{operation="message"}'), 2)


class StoreFailsCase(StackTestCase):
    """Records refused by a trigger, while the store's writes fail or not
    (no tests of its own)."""

    @contextlib.contextmanager
    def refused(self, trigger):
        con = sqlite3.connect(os.path.join(self.stack.dir, "smis.db"), isolation_level=None)
        try:
            con.execute(trigger)
            yield con
        finally:
            con.execute("DROP TRIGGER refuse")
            con.close()

    def attempt_refused(self):
        """Expect what smisd logs of a message whose attempt the trigger
        refuses; how many messages were counted as not stored so far."""
        s = self.stack
        s.expect_log(r"^message failed: constraint failed \(attempt refused by the test\)$",
                     r"^answered, but the record could not be stored$")
        return s.metric('smis_store_errors_total{operation="message"}') or 0

    def tried_three_more_times(self, submit):
        """submit() with the store's writes failing, kept failing until its
        batch was tried three times more; what submit() returned."""
        s = self.stack
        s.expect_log(r"^cannot write \(disk I/O error\)", r"^written after \d+ retries$")
        retries = s.metric("smis_store_retries_total") or 0
        with s.store_writes_fail():
            answer = submit()
            poll_until(lambda: (s.metric("smis_store_retries_total") or 0) >= retries + 3, 20,
                       lambda: "batch not tried again: %s" % s.metric("smis_store_retries_total"))
        return answer


class RefusedWhileStoreFails(StoreFailsCase):
    """A message or report the store refuses for itself (a trigger here; a
    damaged database in life), in a batch whose commit then fails for a
    cause that passes (writes failing as on a full disk), is refused again
    at each try of the batch: it is counted once, not once a try."""
    stack_kwargs = {"ringring_status_url": False}

    def test_refused_message_is_counted_once(self):
        s = self.stack
        before = self.attempt_refused()
        with self.refused("CREATE TRIGGER refuse BEFORE INSERT ON attempts"
                          " BEGIN SELECT RAISE(ABORT, 'attempt refused by the test'); END"):
            r = self.tried_three_more_times(lambda: s.send(message(CITIZENS["no_app"], "sms_only")))
            self.assertEqual(r.status, 201, r.raw)
            s.wait_idle()  # its slot is given back after the commit
        self.assertEqual(s.metric('smis_store_errors_total{operation="message"}') - before, 1)
        self.assertEqual(s.get(r.json["id"]).status, 404)

    def test_refused_report_is_counted_once(self):
        s = self.stack
        s.expect_log(r"^report failed: constraint failed \(status refused by the test\)$")
        sent, provider_id = stored_sms(s)
        before = s.metric('smis_store_errors_total{operation="report"}') or 0
        # Its row goes in, then the status it brings is refused: the row
        # is taken back.
        with self.refused("CREATE TRIGGER refuse BEFORE UPDATE OF status ON messages"
                          " BEGIN SELECT RAISE(ABORT, 'status refused by the test'); END"):
            r = self.tried_three_more_times(lambda: ringring_dlr(s, sent["id"], provider_id))
            self.assertEqual((r.status, r.json), (200, {"accepted": 1}), r.raw)
            # Its batch is committed before a message sent after it.
            later = s.send(message(CITIZENS["no_app"], "sms_only"))
            s.wait_stored(later.json["id"], timeout=30)
        self.assertEqual(s.metric('smis_store_errors_total{operation="report"}') - before, 1)
        got = s.get(sent["id"]).json
        self.assertEqual((got["status"], got["reports"]), ("sent", []))


class OrphanNotStorable(StoreFailsCase):
    """A report that overtook its send's answer is kept as an orphan and
    adopted in the batch that writes the message. Refused for itself there
    (a trigger here), in a batch whose commit then fails for a cause that
    passes, it is refused again at each try: counted once, not once a try.
    Refused with the whole transaction (RAISE(ROLLBACK)), it is left out of
    the batch written again: the message is stored (RolledBackByRefusal)."""

    def refused_at_adoption(self, raised, answered):
        """The orphan refused with RAISE(raised); answered(result) returns
        the send's answer from its future's result."""
        s = self.stack
        s.expect_log(r"^report failed: constraint failed \(report refused by the test\)$")
        before = s.metric('smis_store_errors_total{operation="report"}') or 0
        # The simulator reports at once and answers the send 1.5 s later:
        # the report is kept (committed) well before the message is written.
        s.sim("ringring", "POST", "/_sim/faults", {"dlr_delay_ms": 0, "latency_ms": 1500})
        with self.refused("CREATE TRIGGER refuse BEFORE INSERT ON reports"
                          " BEGIN SELECT RAISE(%s, 'report refused by the test'); END" % raised), \
                concurrent.futures.ThreadPoolExecutor(1) as ex:
            sending = ex.submit(s.send, message(CITIZENS["no_app"], "sms_only"))
            poll_until(lambda: len(orphan_refs(s)) == 1, 10, lambda: "report not kept as an orphan")
            r = answered(sending.result)
            self.assertEqual(r.status, 201, r.raw)
            s.wait_idle(timeout=30)  # its slot is given back after the commit
        self.assertEqual(s.metric('smis_store_errors_total{operation="report"}') - before, 1)
        self.assertIsNone(s.metric('smis_store_errors_total{operation="message"}'))
        got = s.get(r.json["id"]).json
        self.assertEqual((got["status"], got["reports"], orphan_refs(s)), ("sent", [], []))

    def test_refused_orphan_is_counted_once(self):
        self.refused_at_adoption("ABORT", self.tried_three_more_times)

    def test_orphan_refused_with_the_transaction_leaves_the_message_stored(self):
        self.refused_at_adoption("ROLLBACK", lambda result: result())


class ManyOrphansRefused(StoreFailsCase):
    """Each orphan report refused with the whole transaction at adoption is
    left out of the batch written again, counted once, and deleted with the
    message's others, however many a message has. Past the 64th of one
    message (a bit each in a 64-bit word), all its orphans were left out,
    uncounted, to expire a day later."""
    stack_kwargs = {"ringring_status_url": False}
    ORPHANS = 70

    def test_each_of_more_than_64_refused_orphans_is_counted(self):
        s = self.stack
        s.expect_log(r"^report failed: constraint failed \(report refused by the test\)$")
        before = s.metric('smis_store_errors_total{operation="report"}') or 0
        seen = len(s.sim("ringring", "GET", "/_sim/requests").json)
        # The send is answered 1.5 s after RingRing took it: the reports
        # posted meanwhile are kept as orphans, the message in flight.
        s.sim("ringring", "POST", "/_sim/faults", {"latency_ms": 1500})
        with self.refused("CREATE TRIGGER refuse BEFORE INSERT ON reports"
                          " BEGIN SELECT RAISE(ROLLBACK, 'report refused by the test'); END"), \
                concurrent.futures.ThreadPoolExecutor(1) as ex:
            sending = ex.submit(s.send, message(CITIZENS["no_app"], "sms_only"))
            poll_until(lambda: len(s.sim("ringring", "GET", "/_sim/requests").json) > seen, 10,
                       lambda: "the send did not reach RingRing")
            taken = s.sim("ringring", "GET", "/_sim/requests").json[-1]
            for _ in range(self.ORPHANS):
                r = ringring_dlr(s, taken["reference"], taken["message_id"])
                self.assertEqual((r.status, r.json), (200, {"accepted": 1}), r.raw)
            poll_until(lambda: len(orphan_refs(s)) == self.ORPHANS, 10,
                       lambda: "%d reports kept as orphans" % len(orphan_refs(s)))
            self.assertFalse(sending.done(), "the message was answered before its reports were kept")
            r = sending.result()
            self.assertEqual((r.status, r.json["id"]), (201, taken["reference"]), r.raw)
            s.wait_idle(timeout=60)  # its slot is given back after the commit
        self.assertEqual(s.metric('smis_store_errors_total{operation="report"}') - before, self.ORPHANS)
        self.assertIsNone(s.metric('smis_store_errors_total{operation="message"}'))
        got = s.get(r.json["id"]).json
        self.assertEqual((got["status"], got["reports"], orphan_refs(s)), ("sent", [], []))


class OrphansCase(StackTestCase):
    """Reports for a reference not stored yet (orphans) are kept up to 100
    per (channel, reference) and 100,000 in all: anyone with an authentic
    webhook could add rows without bound while a message is in flight, for
    a day. Those past either are dropped (the webhook was answered
    already), counted, and logged once a second, not one by one."""
    # The send is held 1.5 s while the reports are posted: its timeout
    # leaves room for a slow run (under valgrind in CI, 15 s of latency
    # plus the posting went past the 20 s of the default timeout).
    stack_kwargs = {"ringring_status_url": False, "upstream_timeout_ms": 6000}
    DROPPED = r"^(\d+) report\(s\) for provider references not stored yet dropped: 100 kept for the reference" \
        r" or 100000 in all already$"

    KEPT = r"^(\d+) report\(s\) for provider references not stored yet kept, on channel ringring$"

    def logged(self, pattern):
        """The counts of the log lines matching `pattern`."""
        return [int(m.group(1)) for m in (re.search(pattern, json.loads(line).get("msg", ""))
                                          for line in self.stack.log_text().splitlines()) if m]

    def dropped_logged(self):
        """The counts of the drop log lines."""
        return self.logged(self.DROPPED)

    def in_flight(self, ex):
        """Send an SMS on `ex` that RingRing answers 1.5 s after it took it;
        the future of its answer, and the request RingRing took."""
        s = self.stack
        seen = len(s.sim("ringring", "GET", "/_sim/requests").json)
        # Well within the channel's timeout (stack_kwargs); sim() makes
        # both SLOW times longer.
        s.sim("ringring", "POST", "/_sim/faults", {"latency_ms": 1500})
        sending = ex.submit(s.send, message(CITIZENS["no_app"], "sms_only"))
        poll_until(lambda: len(s.sim("ringring", "GET", "/_sim/requests").json) > seen, 10,
                   lambda: "the send did not reach RingRing")
        return sending, s.sim("ringring", "GET", "/_sim/requests").json[-1]

    def post_while_in_flight(self, reports, dropped):
        """Post `reports` DLRs for a message whose send RingRing answers
        1.5 s after it took it (they are orphans meanwhile) and wait until
        `dropped` were dropped; how many orphans were kept then, and the
        message once stored."""
        s = self.stack
        s.expect_log(self.DROPPED)
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            sending, taken = self.in_flight(ex)
            posting = time.monotonic()
            for _ in range(reports):
                r = ringring_dlr(s, taken["reference"], taken["message_id"])
                self.assertEqual((r.status, r.json), (200, {"accepted": 1}), r.raw)
            self.posted_s = time.monotonic() - posting
            poll_until(lambda: (s.metric("smis_orphan_reports_dropped_total") or 0) >= dropped, 20,
                       lambda: "%s reports dropped" % s.metric("smis_orphan_reports_dropped_total"))
            kept = len(orphan_refs(s))
            self.assertFalse(sending.done(), "the message was answered before its reports were kept")
            r = sending.result()
            self.assertEqual((r.status, r.json["id"]), (201, taken["reference"]), r.raw)
            s.wait_idle(timeout=60)  # its slot is given back after the commit
        poll_until(lambda: sum(self.dropped_logged()) == dropped, 10,
                   lambda: "drops logged: %s" % self.dropped_logged())
        self.assertEqual(s.metric("smis_orphan_reports_dropped_total"), dropped)
        return kept, s.get(r.json["id"]).json


class OrphansBoundedPerReference(OrphansCase):
    def test_at_most_100_per_reference(self):
        kept, got = self.post_while_in_flight(103, 3)
        self.assertEqual(kept, 100)
        self.assertEqual(got["status"], "delivered")  # those kept are adopted
        self.assertEqual(orphan_refs(self.stack), [])
        # Those kept are counted, and logged once a second with how many:
        # a line each flooded the info log (100,000 lines at the bound).
        self.assertEqual(self.stack.metric("smis_orphan_reports_kept_total"), 100)
        kept_logged = self.logged(self.KEPT)
        self.assertEqual(sum(kept_logged), 100)
        self.assertLessEqual(len(kept_logged), int(self.posted_s) + 2, kept_logged)
        self.assertNotIn("report for a provider reference not stored yet on channel", self.stack.log_text())


class OrphansCountedOnceCommitted(OrphansCase):
    """An orphan report was counted toward the 100,000 in all when its row
    went in, before its batch committed: a batch rolled back and written
    again counted it at each try, and the bound then dropped reports early
    (until the once-a-second recount). Here the one that makes 100,000, in
    a batch whose commits fail three times, was dropped at its second try."""

    def test_a_batch_written_again_counts_its_orphan_once(self):
        s = self.stack
        s.expect_log(r"^cannot write \(disk I/O error\)", r"^written after \d+ retries$")
        now_ms = int(time.time() * 1000)
        restarted_with_orphans(self, (("filler-%d" % i, now_ms) for i in range(99999)))
        retries = s.metric("smis_store_retries_total") or 0
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            sending, taken = self.in_flight(ex)
            with s.store_writes_fail():
                r = ringring_dlr(s, taken["reference"], taken["message_id"])
                self.assertEqual((r.status, r.json), (200, {"accepted": 1}), r.raw)
                poll_until(lambda: (s.metric("smis_store_retries_total") or 0) >= retries + 3, 20,
                           lambda: "batch not tried again: %s" % s.metric("smis_store_retries_total"))
            r = sending.result()
            self.assertEqual((r.status, r.json["id"]), (201, taken["reference"]), r.raw)
            s.wait_idle(timeout=60)  # its slot is given back after the commit
        self.assertIsNone(s.metric("smis_orphan_reports_dropped_total"))
        self.assertEqual(s.metric("smis_orphan_reports_kept_total"), 1)  # once, for its commit
        got = s.get(r.json["id"]).json
        self.assertEqual(got["status"], "delivered")  # the orphan was kept, and adopted
        self.assertEqual(len(orphan_refs(s)), 99999)


class OrphansBoundedInAll(OrphansCase):
    def test_at_most_100000_in_all(self):
        s = self.stack
        now_ms = int(time.time() * 1000)
        restarted_with_orphans(self, (("filler-%d" % i, now_ms) for i in range(100000)))
        kept, got = self.post_while_in_flight(2, 2)
        self.assertEqual(kept, 100000)
        self.assertEqual((got["status"], got["reports"]), ("sent", []))
        self.assertEqual(len(orphan_refs(s)), 100000)


class OrphansOfTwoChannels(OrphansCase):
    """Orphan reports kept in the same second on several channels were
    logged as one line naming the first channel only ("on channel
    ringring and others"): a line per channel now says how many."""

    def test_each_channel_is_logged_with_its_count(self):
        s = self.stack
        # In one batch of the writer, while a message is in flight (so
        # that reports for unknown references are kept, not refused).
        answers = one_batch(s, lambda: ringring_dlr(s, "msg_orphan-1", "orphan-ref-1"),
                            lambda: govapp_callback(s, "gn_orphan-1"),
                            lambda: ringring_dlr(s, "msg_orphan-2", "orphan-ref-2"))
        self.assertEqual([r.status for r in answers], [200] * 3, [r.raw for r in answers])
        poll_until(lambda: s.metric("smis_orphan_reports_kept_total") == 3, 20,
                   lambda: "%s orphans kept" % s.metric("smis_orphan_reports_kept_total"))
        kept = r"^(\d+) report\(s\) for provider references not stored yet kept, on channel %s$"
        poll_until(lambda: sum(self.logged(kept % "govapp")) == 1, 10, lambda: s.log_text()[-1500:])
        self.assertEqual(sum(self.logged(kept % "ringring")), 2, s.log_text()[-1500:])
        self.assertNotIn("and others", s.log_text())


class OrphansOfManyChannels(OrphansCase):
    """Orphan reports kept in one second are logged with a line for each of
    the first 8 channels that kept some and one for all the others
    together (store.c, ORPHAN_TALLY_CHANNELS): as many lines a second as
    there are channels would not do with many."""
    stack_kwargs = dict(OrphansCase.stack_kwargs, ringring_copies=10)

    def test_channels_past_the_eighth_are_counted_together(self):
        s = self.stack
        # Reports per channel, in the order they reach the writer: the 9th
        # and 10th channels, past the first 8, are "other channels".
        first = [("ringring-%d" % i, 1) for i in range(1, 9)]
        past = [("ringring-9", 2), ("ringring-10", 3)]

        def post(channel, n):
            return [http("POST", "%s/v1/callbacks/%s/%s" % (s.base, channel, RINGRING_CALLBACK_TOKEN),
                         {"MessageId": "orphan-%s-%d" % (channel, k), "Reference": "msg_orphan", "StatusCode": "200"})
                    for k in range(n)]
        # In one batch of the writer, while a message is in flight (so
        # that reports for unknown references are kept, not refused).
        answers = sum(one_batch(s, *(lambda c=c, n=n: post(c, n) for c, n in first + past)), [])
        self.assertEqual([r.status for r in answers], [200] * 13, [r.raw for r in answers])
        others = r"^(\d+) report\(s\) for provider references not stored yet kept, on other channels$"
        poll_until(lambda: self.logged(others), 20, lambda: s.log_text()[-3000:])
        self.assertEqual(self.logged(others), [5])
        kept = r"^(\d+) report\(s\) for provider references not stored yet kept, on channel %s$"
        self.assertEqual([self.logged(kept % c) for c, _ in first + past], [[1]] * 8 + [[], []])
        self.assertEqual(s.metric("smis_orphan_reports_kept_total"), 13)


class RolledBackByRefusal(StoreFailsCase):
    """A record refused with RAISE(ROLLBACK) (a trigger here; an interrupt
    or a damaged database in life) ends the batch's whole transaction, not
    only its statement. The batch went on as if the transaction were open:
    what came before was lost, what came after was committed statement by
    statement, and the failing COMMIT then counted the whole batch as not
    stored, the records written included. The batch is now written again
    without the record refused, which alone is counted."""
    stack_kwargs = {"ringring_status_url": False}

    def test_the_messages_around_a_refused_one_are_stored(self):
        s = self.stack
        before = self.attempt_refused()
        # The SMIS's attempt of govapp_and_sms, the third: after two rows of its own.
        with self.refused("CREATE TRIGGER refuse BEFORE INSERT ON attempts WHEN NEW.seq = 2"
                          " BEGIN SELECT RAISE(ROLLBACK, 'attempt refused by the test'); END") as con:
            sent = one_batch(s, *(lambda body=body: s.send(body) for body in (
                message(CITIZENS["no_app"], "sms_only"), message(CITIZENS["app_nl"], "govapp_and_sms"),
                message(CITIZENS["no_app"], "sms_only"))))
            self.assertEqual([r.status for r in sent], [201] * 3, [r.raw for r in sent])
            s.wait_idle(timeout=30)
            ids = [r.json["id"] for r in sent]
            self.assertEqual([con.execute("SELECT count(*) FROM messages WHERE id = ?", (i,)).fetchone()[0]
                              for i in ids], [1, 0, 1])
            self.assertEqual(con.execute("SELECT count(*) FROM attempts WHERE message_id = ?",
                                         (ids[1],)).fetchone()[0], 0)
        self.assertEqual(s.metric('smis_store_errors_total{operation="message"}') - before, 1)
        self.assertEqual([s.get(i).status for i in ids], [200, 404, 200])

    def test_the_message_beside_a_refused_report_is_stored(self):
        s = self.stack
        s.expect_log(r"^report failed: constraint failed \(report refused by the test\)$")
        before = s.metric('smis_store_errors_total{operation="report"}') or 0
        stored, provider_id = stored_sms(s)
        with self.refused("CREATE TRIGGER refuse BEFORE INSERT ON reports"
                          " BEGIN SELECT RAISE(ROLLBACK, 'report refused by the test'); END"):
            # Jobs are written before reports: the message, then the report.
            sent, dlr = one_batch(s, lambda: s.send(message(CITIZENS["no_app"], "sms_only")),
                                  lambda: ringring_dlr(s, stored["id"], provider_id))
            self.assertEqual((sent.status, dlr.status), (201, 200), sent.raw + dlr.raw)
            poll_until(lambda: (s.metric('smis_store_errors_total{operation="report"}') or 0) - before == 1, 30,
                       lambda: "refused report not counted: " + s.log_text()[-1500:])
            s.wait_stored(sent.json["id"], timeout=30)
        s.wait_idle(timeout=30)
        self.assertIsNone(s.metric('smis_store_errors_total{operation="message"}'))
        self.assertEqual(s.metric('smis_store_errors_total{operation="report"}') - before, 1)
        got = s.get(stored["id"]).json
        self.assertEqual((got["status"], got["reports"]), ("sent", []))


class FileSizeLimitReached(StackTestCase):
    """A file-size limit (systemd's LimitFSIZE=, ulimit -f) reached by the
    log or the database makes the write fail with EFBIG, and the store
    retries its batch as on a full disk. smisd left SIGXFSZ's default
    action in place, so the first such write killed it (and dumped core),
    losing the records of the messages answered and not written yet.
    Started here as systemd starts it: SIGXFSZ not ignored."""
    stack_kwargs = {"ringring_status_url": False}

    def test_writes_fail_and_the_record_is_stored_once_lifted(self):
        s = self.stack
        s.expect_log(r"^cannot write \(disk I/O error\)", r"^written after \d+ retries$")
        retries = s.metric("smis_store_retries_total") or 0
        with s.store_writes_fail():
            r = s.send(message(CITIZENS["no_app"], "sms_only"))
            self.assertEqual(r.status, 201, r.raw)
            poll_until(lambda: s.smisd.poll() is not None or (s.metric("smis_store_retries_total") or 0) > retries,
                       20, lambda: "batch not tried again")
            self.assertIsNone(s.smisd.poll(), "smisd died at a failing write")
        s.wait_stored(r.json["id"], timeout=30)
        self.assertIsNone(s.smisd.poll())
        self.assertEqual(s.get(r.json["id"]).json["status"], "sent")


class ReportLookupFails(StackTestCase):
    """While no message is in flight, a report is checked against the
    stored sends. When that read fails (a damaged database), the webhook is
    answered 503 store_unavailable, so that the provider retries: it was
    404 unknown_message, which refused a real report for good. A column
    renamed by another process makes the read fail here."""
    stack_kwargs = {"ringring_status_url": False}

    def test_failed_lookup_is_retried_not_refused(self):
        s = self.stack
        # The writer's status polls read the column too, once a second.
        s.expect_log(r"^report lookup failed: no such column: channel$", r": 503 store_unavailable$",
                     r"^poll failed: .*no such column")
        sent, provider_id = stored_sms(s)
        with s.column_hidden("attempts", "channel"):
            r = ringring_dlr(s, sent["id"], provider_id)
            self.assertEqual((r.status, r.json["code"], r.headers["Retry-After"]),
                             (503, "store_unavailable", "1"), r.raw)
        r = ringring_dlr(s, sent["id"], provider_id)
        self.assertEqual((r.status, r.json), (200, {"accepted": 1}), r.raw)
        poll_until(lambda: s.get(sent["id"]).json["status"] == "delivered", 10,
                   lambda: "report not stored on the retry: " + s.get(sent["id"]).raw)


class MessageReadFails(StackTestCase):
    """GET /v1/messages/{id} when the store cannot be read (a damaged
    database; a column renamed by another process here): 503
    store_unavailable, so that the client retries. It was 404 not_found,
    which says the message does not exist, and a failed read of its
    reports answered 200 without them."""

    def test_failed_read_is_503_not_404(self):
        s = self.stack
        s.expect_log(r"^reading a message('s reports)? failed: no such column: (response|device)$",
                     r": 503 store_unavailable$")
        sent, _ = stored_sms(s)
        # Its delivery report stored first: not one that comes while the
        # column is hidden (under valgrind it can be that late).
        poll_until(lambda: s.get(sent["id"]).json["status"] == "delivered", 10, lambda: "no delivery report")
        for table, column in (("messages", "response"), ("reports", "device")):
            with self.subTest(hidden=column), s.column_hidden(table, column):
                r = s.get(sent["id"])
                self.assertEqual((r.status, r.json["code"], r.headers["Retry-After"]),
                                 (503, "store_unavailable", "1"), r.raw)
        self.assertEqual(s.get(sent["id"]).status, 200)


class StoreUnderLoad(StackTestCase):
    """The WAL is copied into the database and started over while the
    writes go on: without that it grows for as long as the load lasts."""

    @staticmethod
    def wal_restarts(wal):
        # WAL header: the checkpoint sequence number (big-endian, bytes
        # 12-15) counts the times SQLite started the WAL over.
        try:
            with open(wal, "rb") as f:
                head = f.read(16)
        except FileNotFoundError:
            return 0
        return int.from_bytes(head[12:16], "big") if len(head) == 16 else 0

    def test_wal_is_checkpointed_and_restarted_under_load(self):
        db = os.path.join(self.stack.dir, "smis.db")
        # The WAL as the first message left it (starting smisd may have
        # started it over already).
        first = self.stack.send(message(CITIZENS["no_app"], "sms_only"))
        self.assertEqual(first.status, 201)
        self.stack.wait_stored(first.json["id"])
        start = self.wal_restarts(db + "-wal")
        with background_load(lambda: self.stack.send(message(CITIZENS["no_app"], "sms_only"))) as answers:
            # A restart needs a full copy first (16 MiB of WAL, ~1000
            # messages sent one at a time): wait for it while the load runs.
            deadline = time.time() + 240
            while self.wal_restarts(db + "-wal") <= start and time.time() < deadline:
                time.sleep(0.2)
            restarted = self.wal_restarts(db + "-wal") > start
            # The rows are in the database file itself, not only in the
            # WAL (immutable=1 reads the file and ignores the WAL).
            con = sqlite3.connect("file:%s?immutable=1" % db, uri=True)
            try:
                in_file = con.execute("SELECT count(*) FROM messages").fetchone()[0]
            except sqlite3.OperationalError:  # not even the schema was copied
                in_file = 0
            finally:
                con.close()
        self.assertTrue(restarted, "the WAL was not started over after %d messages" % len(answers))
        self.assertGreater(in_file, 0)
        self.assertEqual([r.status for r in answers if r.status != 201], [])


class Retention(StackTestCase):
    """store.retention_s: messages older than it are deleted with their
    attempts and reports, and their Idempotency-Keys with them. The stack
    starts with retention off (0); the test turns it on by a reload, so
    that which messages are old enough does not hang on the timing of a
    once-a-second purge."""
    stack_kwargs = {"store_extra": "retention_s = 0;"}

    def rows(self, msg_id):
        con = sqlite3.connect("file:%s?mode=ro" % os.path.join(self.stack.dir, "smis.db"), uri=True)
        try:
            return {t: con.execute("SELECT count(*) FROM %s WHERE %s = ?" % (t, col), (msg_id,)).fetchone()[0]
                    for t, col in (("messages", "id"), ("attempts", "message_id"), ("reports", "message_id"))}
        finally:
            con.close()

    def purged_total(self):
        return self.stack.metric("smis_store_purged_messages_total") or 0.0

    def test_old_messages_are_deleted_and_young_ones_kept(self):
        idem = {"Idempotency-Key": "retention-0001"}
        body = message(CITIZENS["no_app"], "sms_only")
        old = self.stack.send(body, headers=idem)
        self.assertEqual((old.status, old.json["status"]), (201, "sent"), old.raw)
        old_id = old.json["id"]
        # Its delivery report (ringring-sim calls back after 100 ms) is stored too.
        poll_until(lambda: self.rows(old_id)["reports"] > 0, 10, lambda: "no report stored for the old message")
        time.sleep(6)
        young = self.stack.send(message(CITIZENS["no_app"], "sms_only"))
        self.assertEqual(young.status, 201, young.raw)
        young_id = young.json["id"]
        self.stack.wait_stored(young_id)
        # Retention off: six seconds later, both are there.
        self.assertEqual(self.stack.get(old_id).status, 200)
        self.assertEqual(self.purged_total(), 0)

        self.stack.store_extra = "retention_s = 4;"
        self.stack.write_conf()
        self.stack.reload()
        poll_until(lambda: self.stack.get(old_id).status == 404, 10,
                   lambda: "message %s older than retention_s still served" % old_id)
        self.assertEqual(self.rows(old_id), {"messages": 0, "attempts": 0, "reports": 0})
        # The young message (about a second old) is kept: the purge
        # deletes by creation time, not everything.
        got = self.stack.get(young_id)
        self.assertEqual((got.status, got.json["id"]), (200, young_id), got.raw)
        self.assertEqual(self.rows(young_id)["messages"], 1)
        self.assertEqual(self.purged_total(), 1)
        # The deleted message's Idempotency-Key went with it: the same
        # request is a new message (documented: keys live as long as their
        # message).
        sent_before = len(self.stack.sim("ringring", "GET", "/_sim/requests").json)
        again = self.stack.send(body, headers=idem)
        self.assertEqual(again.status, 201, again.raw)
        self.assertNotEqual(again.json["id"], old_id)
        self.assertEqual(len(self.stack.sim("ringring", "GET", "/_sim/requests").json), sent_before + 1)
        # And the young one goes once it is old enough.
        poll_until(lambda: self.stack.get(young_id).status == 404, 10,
                   lambda: "message %s not deleted once older than retention_s" % young_id)
        self.assertEqual(self.rows(young_id), {"messages": 0, "attempts": 0, "reports": 0})


class RetentionFails(StackTestCase):
    """A retention purge that fails (here its prepare: a column renamed by
    another process) is logged and counted, then tried again a second
    later; it was logged only, and a failed read of what to delete passed
    for "nothing to delete" (unit test: test_core's retention test). While
    it lasts it is logged and counted once, not every second, and its end
    is logged once."""

    def test_failed_purge_is_counted(self):
        s = self.stack
        errors = 'smis_store_errors_total{operation="retention"}'
        s.expect_log(r"^retention: prepare read failed: no such column: id$", r"^poll failed: .*no such column",
                     r"^retention: prepare read works again, after \d+ failed tries in ")
        with s.column_hidden("messages", "id"):
            poll_until(lambda: (s.metric(errors) or 0) >= 1, 10,
                       lambda: "failed purge not counted: " + s.log_text()[-1500:])
            time.sleep(ms(2500) / 1000)  # two more purges, at least
            self.assertEqual(s.metric(errors), 1)
        poll_until(lambda: "retention: prepare read works again" in s.log_text(), 10,
                   lambda: "end of the failure not logged: " + s.log_text()[-1500:])
        self.assertEqual(s.log_text().count("retention: prepare read failed"), 1)


class OrphanReportsExpire(StackTestCase):
    """Reports kept for a message never stored (orphans) go after a day,
    also with status polling off (after_s = 0): their expiry is the store
    writer's own once-a-second chore, not part of a poll round."""
    stack_kwargs = {"extra_conf": "status_poll = { after_s = 0; };"}

    def test_day_old_orphans_are_deleted_without_polling(self):
        s = self.stack
        now_ms = int(time.time() * 1000)
        restarted_with_orphans(self, (("old-ref", now_ms - 2 * 86400000), ("young-ref", now_ms - 60000)))
        poll_until(lambda: orphan_refs(s) == ["young-ref"], 10,
                   lambda: "orphan reports left: %s" % orphan_refs(s))


class Observability(StackTestCase):
    def test_metrics(self):
        self.stack.send(message(CITIZENS["app_nl"], "govapp_first"))
        self.stack.send(message(CITIZENS["no_app"], "govapp_first"))
        self.stack.send(b"{")
        # An answer is counted once MHD has written it whole, just after
        # its last byte left: the client may ask first.
        poll_until(lambda: self.stack.metric('smis_http_requests_total{route="send",status="400"}'), 5,
                   lambda: "the 400 not counted")
        m = http("GET", self.stack.base + "/metrics")
        self.assertEqual(m.status, 200)
        self.assertTrue(m.headers["Content-Type"].startswith("text/plain"))
        t = m.raw
        self.assertIn("# TYPE smis_messages_total counter", t)
        self.assertRegex(t, r'smis_messages_total\{institution="inst-a",strategy="govapp_first",status="sent",channel="govapp"\} \d')
        self.assertRegex(t, r'smis_messages_total\{institution="inst-a",strategy="govapp_first",status="sent",channel="ringring"\} \d')
        self.assertRegex(t, r'smis_http_requests_total\{route="send",status="400"\} \d')
        self.assertRegex(t, r'smis_upstream_duration_seconds_bucket\{channel="govapp",operation="lookup",le="\+Inf"\} \d')
        self.assertRegex(t, r'smis_upstream_requests_total\{channel="ringring",operation="send",outcome="sent"\} \d')
        self.assertRegex(t, r"smis_in_flight \d")
        self.assertNotIn(CITIZENS["app_nl"], t)

    def test_overhead_leaves_out_the_upstream_wait(self):
        """smis_message_overhead_seconds is what SMIS adds: each message here
        waits 1.5 s on RingRing, and its overhead still lands at or under 1 s
        (it would be above if the upstream wait were not taken out)."""
        def series():
            t = http("GET", self.stack.base + "/metrics").raw
            got = {}
            for name, value in re.findall(r'^(smis_message_overhead_seconds_\w+\{strategy="sms_only"[^}]*\}|'
                                          r'smis_upstream_duration_seconds_sum\{channel="ringring",operation="send"\})'
                                          r' (\S+)$', t, re.M):
                got[name] = float(value)
            return got

        count = 'smis_message_overhead_seconds_count{strategy="sms_only"}'
        under_1s = 'smis_message_overhead_seconds_bucket{strategy="sms_only",le="1"}'
        upstream = 'smis_upstream_duration_seconds_sum{channel="ringring",operation="send"}'
        before = series()
        self.stack.sim("ringring", "POST", "/_sim/faults", {"latency_ms": 1500})
        for _ in range(2):
            r = self.stack.send(message(CITIZENS["no_app"], "sms_only"))
            self.assertEqual(r.status, 201, r.raw)
        after = series()
        self.assertEqual(after[count] - before.get(count, 0), 2)
        self.assertEqual(after[under_1s] - before.get(under_1s, 0), 2)
        self.assertGreaterEqual(after[upstream] - before.get(upstream, 0), 3.0)

    def test_logs_are_json_with_request_ids(self):
        r = self.stack.send(b"{", headers={})
        rid = r.headers["X-Request-Id"]
        self.assertEqual(r.json["request_id"], rid)
        r2 = self.stack.send(message(CITIZENS["no_app"], "sms_only"))
        rid2 = r2.headers["X-Request-Id"]
        # The access line is written once the answer has gone out (MHD's
        # completion callback), by the loop that served it: wait for both.
        poll_until(lambda: rid in self.stack.log_text() and rid2 in self.stack.log_text(), 5,
                   lambda: "access lines of %s and %s not logged" % (rid, rid2))
        entries = [json.loads(line) for line in self.stack.log_text().splitlines()]
        for entry in entries:
            self.assertIn(entry["level"], ("debug", "info", "warn", "error"))
            self.assertIn("ts", entry)
        access = {e["request_id"]: e for e in entries if e.get("component") == "access"}
        self.assertIn("400", access[rid]["msg"])
        self.assertIn("201", access[rid2]["msg"])
        self.assertEqual(access[rid2]["message_id"], r2.json["id"])
        self.assertIn("institution=inst-a", access[rid2]["msg"])
        text = self.stack.log_text()
        self.assertNotIn(CITIZENS["no_app"][3:], text)  # no phone numbers
        self.assertNotIn("Bericht in nl", text)         # no content

    def test_access_lines_name_the_institution_of_every_authenticated_route(self):
        """Not only a send's access line names its caller: a read of a
        message and a lookup of device keys do too, whatever they answer;
        a request without a valid key names none."""
        s = self.stack
        sent = s.send(message(CITIZENS["no_app"], "sms_only"))
        self.assertEqual(sent.status, 201, sent.raw)
        got = s.get(sent.json["id"])
        missing = s.get("msg_nothing", inst="inst-b")
        keys = http("POST", s.base + "/v1/recipients/keys", {"recipient": CITIZENS["app_nl"]},
                    {"Authorization": "Bearer " + KEYS["inst-a"]})
        anonymous = http("GET", s.base + "/v1/messages/" + sent.json["id"])
        self.assertEqual((got.status, missing.status, anonymous.status), (200, 404, 401))
        rids = {r.headers["X-Request-Id"]: inst
                for r, inst in ((got, "inst-a"), (missing, "inst-b"), (keys, "inst-a"), (anonymous, None))}
        poll_until(lambda: all(rid in s.log_text() for rid in rids), 5,
                   lambda: "access lines of %s not all logged" % sorted(rids))
        access = {e["request_id"]: e["msg"] for e in map(json.loads, s.log_text().splitlines())
                  if e.get("component") == "access"}
        for rid, inst in rids.items():
            if inst:
                self.assertTrue(access[rid].endswith(" institution=" + inst), access[rid])
            else:
                self.assertNotIn("institution=", access[rid])

    def test_access_lines_name_long_methods_whole(self):
        """A method of 8 characters or more (WebDAV's PROPFIND,
        VERSION-CONTROL) is named whole in its access line, not cut; up to
        31 characters. A longer one is cut and marked so, with "..." (it
        was cut at 31 characters without a mark, as if it were whole)."""
        s = self.stack
        rids = {}
        for method, logged in (("PROPFIND", "PROPFIND"), ("VERSION-CONTROL", "VERSION-CONTROL"),
                               ("M" * 31, "M" * 31), ("L" * 32, "L" * 28 + "..."),
                               ("ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJKLMN", "ABCDEFGHIJKLMNOPQRSTUVWXYZAB...")):
            r = http(method, s.base + "/healthz")
            self.assertEqual(r.status, 501, r.raw)
            rids[r.headers["X-Request-Id"]] = logged
        poll_until(lambda: all(rid in s.log_text() for rid in rids), 5,
                   lambda: "access lines of %s not all logged" % sorted(rids))
        access = {e["request_id"]: e["msg"] for e in map(json.loads, s.log_text().splitlines())
                  if e.get("component") == "access"}
        for rid, method in rids.items():
            self.assertTrue(access[rid].startswith(method + " unknown_method 501 "), access[rid])


# The longest names the configuration takes for every label value of
# /metrics: institution 64 bytes, channel and strategy 48 of [a-z0-9_-].
LONG_INSTITUTION = ("institution of the longest name allowed, " + "i" * 64)[:64]
LONG_CHANNEL = ("ringring-" + "c" * 48)[:48]
LONG_STRATEGY = ("sms-only-" + "s" * 48)[:48]


class LongNamesStack(Stack):
    """inst-b, the ringring channel and the sms_only strategy renamed to the
    longest names allowed (the plugins keep theirs)."""

    def write_conf(self, extra_strategy="", path=None):
        super().write_conf(extra_strategy, path)
        with open(path or self.conf) as f:
            conf = f.read()
        for old, new in (('name = "inst-b"', 'name = "%s"' % LONG_INSTITUTION),
                         ('"sms_only"', '"%s"' % LONG_STRATEGY),
                         ('plugin = "%s"' % LONG_STRATEGY, 'plugin = "sms_only"'),
                         ('name = "ringring"', 'name = "%s"' % LONG_CHANNEL),
                         ('channel = "ringring"', 'channel = "%s"' % LONG_CHANNEL),
                         ('sms = "ringring"', 'sms = "%s"' % LONG_CHANNEL),
                         ("/v1/callbacks/ringring/", "/v1/callbacks/%s/" % LONG_CHANNEL)):
            assert old in conf, old
            conf = conf.replace(old, new)
        with open(path or self.conf, "w") as f:
            f.write(conf)


class LongestNames(StackTestCase):
    """/metrics renders every label value of the longest names whole: a
    series whose labels would not fit is not made at all (it would be cut
    into a broken line), and the buffers hold the longest by arithmetic
    only (job.c asserts the longest set at compile time)."""

    @classmethod
    def setUpClass(cls):
        cls.stack = LongNamesStack().start()

    def test_longest_names_rendered_whole(self):
        s = self.stack
        self.assertEqual((len(LONG_INSTITUTION.encode()), len(LONG_CHANNEL), len(LONG_STRATEGY)), (64, 48, 48))
        r = s.send(message(CITIZENS["no_app"], LONG_STRATEGY), inst="inst-b")
        self.assertEqual((r.status, r.json["status"], r.json["channel"]), (201, "sent", LONG_CHANNEL), r.raw)
        # RingRing's delivery report comes to the channel's webhook.
        accepted = 'smis_callbacks_total{channel="%s",result="accepted"}' % LONG_CHANNEL
        poll_until(lambda: s.metric(accepted) == 1, 10,
                   lambda: "no callback series: " + http("GET", s.base + "/metrics").raw[-3000:])
        for series in ('smis_messages_total{institution="%s",strategy="%s",status="sent",channel="%s"}'
                       % (LONG_INSTITUTION, LONG_STRATEGY, LONG_CHANNEL),
                       'smis_upstream_requests_total{channel="%s",operation="send",outcome="sent"}' % LONG_CHANNEL,
                       'smis_upstream_duration_seconds_count{channel="%s",operation="send"}' % LONG_CHANNEL,
                       'smis_message_overhead_seconds_count{strategy="%s"}' % LONG_STRATEGY):
            self.assertEqual(s.metric(series), 1, series)
        self.assertEqual(s.metric("smis_metrics_series_dropped_total"), 0)


class SecondInstance(StackTestCase):
    """The loops listen on one socket each (SO_REUSEPORT, so that the kernel
    spreads the connections over them); a second smisd on the same port must
    still fail to start rather than share the traffic."""

    def test_second_smisd_on_the_same_port_is_refused(self):
        conf2 = os.path.join(self.stack.dir, "second.conf")
        with open(self.stack.conf) as f:
            text = f.read().replace(os.path.join(self.stack.dir, "smis.db"),
                                    os.path.join(self.stack.dir, "second.db"))
        with open(conf2, "w") as f:
            f.write(text)
        r = run_wrapped([os.path.join(BUILD, "smisd"), "-c", conf2], timeout=30)
        self.assertNotEqual(r.returncode, 0, r.stderr[-2000:])
        self.assertIn("cannot listen on 127.0.0.1:%d" % self.stack.smisd_port, r.stderr)
        self.assertIn("Address already in use", r.stderr)
        # The first one serves on, alone.
        for _ in range(20):
            self.assertEqual(self.stack.send(message(CITIZENS["no_app"], "sms_only")).status, 201)


class GracefulStop(unittest.TestCase):
    def test_sigterm_finishes_in_flight(self):
        stack = Stack().start()
        try:
            stack.sim("govapp", "POST", "/_sim/faults", {"latency_ms": 700})
            with concurrent.futures.ThreadPoolExecutor(20) as ex:
                futs = [ex.submit(stack.send, message(CITIZENS["app_nl"], "govapp_only")) for _ in range(20)]
                stack.wait_in_flight(20)
                stack.smisd.send_signal(signal.SIGTERM)
                results = [f.result() for f in futs]
            self.assertTrue(all(r.status == 201 and r.json["status"] == "sent" for r in results),
                            [r.raw for r in results][:3])
            self.assertEqual(stack.smisd.wait(timeout=30), 0)
        finally:
            rc, problems, log = stack.stop()
        self.assertEqual(problems, [])
        self.assertIn("draining", log)

    def test_second_signal_stops_at_once(self):
        stack = Stack().start()
        stack.expect_log(r"second stop signal: not waiting for the 1 message\(s\) still in flight")
        stack.expect_log(r"closing 1 connection\(s\) whose message was not answered")
        try:
            stack.sim("ringring", "POST", "/_sim/faults", {"latency_ms": 1900})
            with concurrent.futures.ThreadPoolExecutor(1) as ex:
                slow = ex.submit(stack.send, message(CITIZENS["no_app"], "sms_only"))
                stack.wait_in_flight(1)
                stack.start_draining()
                stack.smisd.send_signal(signal.SIGINT)
                self.assertEqual(stack.smisd.wait(timeout=30), 0)
                # Not answered: the drain did not wait for it.
                with self.assertRaises(OSError):
                    slow.result()
        finally:
            rc, problems, log = stack.stop()
        self.assertEqual(problems, [])
        self.assertIn("second stop signal", log)

    @unittest.skipUnless(valgrind(), "needs valgrind (configure found none, or a sanitizer build)")
    def test_abandoned_jobs_are_freed_at_exit(self):
        # Messages still in flight when the stop stops waiting (a second
        # signal; the end of the drain window alike) are abandoned: their
        # connections closed unanswered. Their jobs, with the curl easy
        # handle of the upstream call, stayed allocated to the exit:
        # "still reachable" in valgrind's report, which the suite does not
        # count as an error, so this test runs smisd under valgrind itself
        # and reads the report.
        stack = Stack(upstream_timeout_ms=30000, job_timeout_ms=60000)
        report = os.path.join(stack.dir, "valgrind.log")
        stack.smisd_wrapper = [valgrind(), "--leak-check=full", "--show-leak-kinds=reachable",
                               "--errors-for-leak-kinds=definite", "--error-exitcode=99", "--num-callers=30",
                               "--suppressions=" + os.path.join(SRC, "tests/valgrind.supp"),
                               "--log-file=" + report]
        stack.expect_log(r"second stop signal: not waiting for the 3 message\(s\) still in flight")
        stack.expect_log(r"closing 3 connection\(s\) whose message was not answered")
        try:
            stack.start()
            for sim in ("ringring", "govapp"):
                stack.sim(sim, "POST", "/_sim/faults", {"latency_ms": ms(6000)})
            with concurrent.futures.ThreadPoolExecutor(2) as ex:
                waiting = [ex.submit(stack.send, message(CITIZENS[who], strategy))
                           for who, strategy in (("no_app", "sms_only"), ("app_nl", "govapp_only"))]
                # And one whose client went away while the upstream call ran.
                body = json.dumps(message(CITIZENS["no_app"], "sms_only")).encode()
                with socket.create_connection(("127.0.0.1", stack.smisd_port)) as gone:
                    gone.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                                 % (KEYS["inst-a"].encode(), len(body), body))
                    stack.wait_in_flight(3, timeout=30)
                stack.start_draining(timeout=30)
                stack.smisd.send_signal(signal.SIGINT)
                self.assertEqual(stack.smisd.wait(timeout=120), 0)
                for f in waiting:
                    with self.assertRaises(OSError):
                        f.result()
            with open(report) as f:
                records = re.split(r"\n(?===\d+== [\d,]+ (?:\([\d,]+ direct, [\d,]+ indirect\) )?bytes in)",
                                   f.read())
        finally:
            rc, problems, log = stack.stop()
        self.assertEqual(problems, [])
        self.assertIn("still in flight", log)
        ours = [r for r in records if "are still reachable" in r and
                re.search(r"curl_easy_init|\((?:http_server|dispatcher|job)\.c:", r)]
        self.assertFalse(ours, "still reachable at exit:\n" + "\n".join(ours)[:6000])

    def test_stop_waits_for_the_writer_done_with_a_loop(self):
        # store.commit_before_answer: the store writer resumes the
        # connection of a message it committed, then has the loop run it.
        # libmicrohttpd wakes the loop itself: the answer can go out, the
        # drain end and the loops be freed before the writer's second step,
        # which then wrote to a freed loop (ThreadSanitizer's report, or
        # ASan's). A preloaded library holds the writer between the two.
        env = dict(preloading("slowresume"), SMIS_TEST_SLOW_RESUME_MS=str(ms(1000)))
        stack = Stack(store_extra="commit_before_answer = true;", smisd_env=env).start()
        try:
            r = stack.send(message(CITIZENS["no_app"], "sms_only"))
            stack.smisd.send_signal(signal.SIGTERM)
            rc = stack.smisd.wait(timeout=30 * SLOW)
        finally:
            problems = stack.stop()[1]
        self.assertEqual(problems, [])
        self.assertEqual(rc, 0)
        self.assertEqual((r.status, r.json["status"]), (201, "sent"), r.raw)

    def test_drain_waits_for_messages_of_a_longer_timeout(self):
        # A message runs on the generation it was admitted under. After a
        # reload that shortens limits.job_timeout_ms, a SIGTERM drained for
        # the new, shorter time only, and stopped the loops under a message
        # of the old generation: sent upstream, never answered nor stored.
        stack = Stack().start()

        def reload_to(job_timeout_ms):
            stack.job_timeout_ms = job_timeout_ms
            stack.write_conf()
            with open(stack.conf) as f:  # RingRing may take 3 s here
                text = f.read().replace("timeout_ms = %d;" % ms(2000), "timeout_ms = %d;" % ms(6000))
            with open(stack.conf, "w") as f:
                f.write(text)
            stack.reload_and_wait()
        try:
            reload_to(8000)
            stack.sim("ringring", "POST", "/_sim/faults", {"latency_ms": 1500})
            with concurrent.futures.ThreadPoolExecutor(1) as ex:
                slow = ex.submit(stack.send, message(CITIZENS["no_app"], "sms_only"))
                stack.wait_in_flight(1)
                reload_to(100)
                stack.smisd.send_signal(signal.SIGTERM)
                slow = slow.result()
            self.assertEqual((slow.status, slow.json["status"]), (201, "sent"), slow.raw)
            self.assertEqual(stack.smisd.wait(timeout=30), 0)
            self.assertEqual(stack.stored_status(slow.json["id"]), "sent")
        finally:
            rc, problems, log = stack.stop()
        self.assertEqual(problems, [])
        self.assertNotIn("still in flight after the drain window", log)


if __name__ == "__main__":
    unittest.main(verbosity=2)
