#!/usr/bin/env python3
"""
Answer before commit (store.commit_before_answer = false, the default):
the POST is answered as soon as its strategy ends and the store writer
commits the rows up to store.commit_delay_ms later. Whatever a client does
right after the answer must find the message anyway: GET, a retry with the
same Idempotency-Key, another institution's GET (refused), a graceful stop
(which commits before it exits). Here the delay is 1000 ms, and the
database's write lock is held meanwhile (Stack.store_locked), so that these
run while the row is provably not in the SQLite file yet however slowly
(valgrind). And with commit_before_answer = true the row is there when the
answer arrives.
"""
import concurrent.futures
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import CITIZENS, SLOW, Stack, StackTestCase, http, message, poll_until  # noqa: E402


def sms_requests(stack):
    return stack.sim("ringring", "GET", "/_sim/requests").json


class BeforeTheCommit(StackTestCase):
    stack_kwargs = {"store_extra": "commit_delay_ms = 1000;"}

    def test_reads_find_the_answered_message_before_its_commit(self):
        with self.stack.store_locked():
            body = message(CITIZENS["no_app"], "sms_only", reference="before-commit")
            r = self.stack.send(body, headers={"Idempotency-Key": "answer-first-1"})
            self.assertEqual(r.status, 201, r.raw)
            self.assertEqual(r.json["status"], "sent", r.raw)
            msg_id = r.json["id"]

            # GET: the same answer, with status, updated_at and (no) reports.
            g = self.stack.get(msg_id)
            self.assertEqual(g.status, 200, g.raw)
            self.assertEqual(g.json["id"], msg_id)
            self.assertEqual(g.json["status"], "sent")
            self.assertEqual(g.json["attempts"], r.json["attempts"])
            self.assertEqual(g.json["reference"], "before-commit")
            self.assertIn("updated_at", g.json)
            self.assertEqual(g.json["reports"], [])
            # Another institution does not see it, committed or not.
            self.assertEqual(self.stack.get(msg_id, inst="inst-b").status, 404)

            # The retry replays the first answer and sends nothing.
            again = self.stack.send(body, headers={"Idempotency-Key": "answer-first-1"})
            self.assertEqual(again.status, 200, again.raw)
            self.assertEqual(again.headers["Idempotent-Replayed"], "true")
            self.assertEqual(again.json, r.json)
            other = dict(body, reference="another-body")
            reused = self.stack.send(other, headers={"Idempotency-Key": "answer-first-1"})
            self.assertEqual((reused.status, reused.json.get("code")), (422, "idempotency_key_reused"), reused.raw)
            self.assertEqual(len(sms_requests(self.stack)), 1)

            # All of that was answered from memory: the row is not on disk yet.
            self.assertIsNone(self.stack.stored_status(msg_id))

        # Committed once the lock goes; the reads then come from the file,
        # and the delivery report that came meanwhile (the simulator sends
        # it after 100 ms) was kept and is attached now.
        self.stack.wait_stored(msg_id)
        poll_until(lambda: self.stack.get(msg_id).json.get("status") == "delivered", 10,
                   lambda: "report not attached: " + self.stack.get(msg_id).raw)
        g2 = self.stack.get(msg_id)
        self.assertEqual(g2.json["attempts"], r.json["attempts"])
        self.assertEqual([x["status"] for x in g2.json["reports"]], ["delivered"])
        replay = self.stack.send(body, headers={"Idempotency-Key": "answer-first-1"})
        self.assertEqual((replay.status, replay.json), (200, r.json), replay.raw)
        self.assertEqual(len(sms_requests(self.stack)), 1)

    def test_metrics_count_answered_messages(self):
        with self.stack.store_locked():
            r = self.stack.send(message(CITIZENS["no_app"], "sms_only"))
            self.assertEqual(r.status, 201, r.raw)
            m = http("GET", self.stack.base + "/metrics").raw
            self.assertRegex(m, r'smis_messages_total\{institution="inst-a",strategy="sms_only",'
                                r'status="sent",channel="ringring"\} [1-9]')
            self.assertIsNone(self.stack.stored_status(r.json["id"]))
        self.stack.wait_stored(r.json["id"])


class StopCommitsWhatWasAnswered(unittest.TestCase):
    def test_sigterm_commits_answered_messages_before_exit(self):
        # No delivery reports (no status_url): a slow run (valgrind) would
        # otherwise see some rows already moved on to "delivered".
        stack = Stack(store_extra="commit_delay_ms = 1000;", ringring_status_url=False).start()
        try:
            # Held back until the stop has begun.
            with stack.store_locked():
                with concurrent.futures.ThreadPoolExecutor(8) as ex:
                    futs = [ex.submit(stack.send, message(CITIZENS["no_app"], "sms_only")) for _ in range(8)]
                    answers = [f.result() for f in futs]
                self.assertEqual([a.status for a in answers], [201] * 8, [a.raw for a in answers][:2])
                ids = [a.json["id"] for a in answers]
                self.assertEqual([stack.stored_status(i) for i in ids], [None] * 8)
                stack.start_draining()
            self.assertEqual(stack.smisd.wait(timeout=30 * SLOW), 0)
            self.assertEqual([stack.stored_status(i) for i in ids], ["sent"] * 8)
        finally:
            rc, problems, log = stack.stop()
        self.assertEqual(problems, [])


class CommitBeforeAnswer(StackTestCase):
    # The delay only ever applies to messages answered already.
    # No delivery reports: one that overtakes a slow (valgrind) commit would
    # be stored with it, and the row read "delivered".
    stack_kwargs = {"store_extra": "commit_before_answer = true; commit_delay_ms = 1000;",
                    "ringring_status_url": False}

    def test_the_row_is_committed_when_the_answer_arrives(self):
        for i in range(3):
            r = self.stack.send(message(CITIZENS["no_app"], "sms_only"))
            self.assertEqual(r.status, 201, r.raw)
            self.assertEqual(self.stack.stored_status(r.json["id"]), "sent")
            g = self.stack.get(r.json["id"])
            self.assertEqual((g.status, g.json["attempts"]), (200, r.json["attempts"]), g.raw)


if __name__ == "__main__":
    unittest.main(verbosity=2)
