"""
Privacy by observation: one stack with smisd at its most verbose log level
(debug) runs a representative flow (every strategy, numbers in every
accepted form, HTML and SMS texts, idempotency, device keys, gateway
tokens, delivery reports and read receipts by webhook, forged webhooks,
refused credentials, error answers), then everything smisd wrote is
scanned: its log, its SQLite files, /metrics and the answers it gave to
requests that failed. None may hold a secret of the configuration, a
bearer credential, a phone number in any form, or a message's title or
body; the store keeps the recipient only as a keyed hash.
"""
import hashlib
import hmac
import json
import os
import re
import socket
import sqlite3
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (CITIZENS, GOVAPP_CALLBACK_SECRET, GOVAPP_TOKEN, KEYS, PHONE_HASH_KEY,  # noqa: E402
                     RINGRING_CALLBACK_TOKEN, RINGRING_KEY, StackTestCase, http, poll_until)
from test_gateway_tokens import EXTRA, claims, sign  # noqa: E402

SECRETS = dict(KEYS, govapp_token=GOVAPP_TOKEN, govapp_callback_secret=GOVAPP_CALLBACK_SECRET,
               ringring_key=RINGRING_KEY, ringring_callback_token=RINGRING_CALLBACK_TOKEN,
               phone_hash_key=PHONE_HASH_KEY)
TITLE = "Privacy title Zq7"
BODY = "Privacy body Xk9"
SMS_TEXT = "Privacy sms Wm4"
REFERENCE = "privacy-ref-Jd2"

# A Belgian mobile in any form a log or a column could hold it: E.164,
# digits only (with or without 00), national, subscriber part, in groups.
SEP = r"[\s./-]?"
PHONE = re.compile(r"(?<![0-9A-Za-z*])(?:\+|00)?(?:32%s)?0?4[5-9]\d(?:%s\d){6}(?![0-9A-Za-z])" % (SEP, SEP))
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")


def forms(e164):
    """The forms of one number the tests send: +32470000001 etc."""
    sub = e164[3:]
    return [e164, e164[1:], "00" + e164[1:], "0" + sub, sub,
            "0%s %s %s %s" % (sub[:3], sub[3:5], sub[5:7], sub[7:]),
            "+32 %s %s %s %s" % (sub[:3], sub[3:5], sub[5:7], sub[7:])]


def leaks(name, text):
    """What of the secrets, numbers and contents `text` holds."""
    found = ["%s: secret %s" % (name, k) for k, v in SECRETS.items() if v in text]
    found += ["%s: number %s" % (name, m.group(0)) for m in PHONE.finditer(text)]
    found += ["%s: token %s" % (name, m.group(0)[:40]) for m in JWT.finditer(text)]
    found += ["%s: content %r" % (name, c) for c in (TITLE, BODY, SMS_TEXT) if c in text]
    return found


def accepted_forms(e164):
    """The forms of it that POST /v1/messages accepts."""
    f = forms(e164)
    return [f[0], f[2], f[3], f[5], f[6]]


class PrivacyAtDebug(StackTestCase):
    stack_kwargs = {"log_level": "debug", "extra_conf": EXTRA}

    def content(self, html=False):
        body = "<p>%s <b>bold</b></p>" % BODY if html else BODY
        c = {"title": TITLE, "body": body, "sms_text": SMS_TEXT}
        if html:
            c["format"] = "html"
        return {"nl": c}

    def send(self, recipient, strategy, inst="inst-a", **kw):
        body = {"recipient": recipient, "strategy": strategy, "reference": REFERENCE,
                "content": self.content(kw.pop("html", False))}
        return self.stack.send(body, inst=inst, **kw)

    def flow(self):
        """Everything the scan looks at afterwards; returns the error answers."""
        s, answers, ids = self.stack, [], []
        for i, (who, strategy) in enumerate([("app_nl", "govapp_first"), ("app_fr", "govapp_and_sms"),
                                             ("app_off", "govapp_first"), ("no_app", "sms_only"),
                                             ("bad_key", "app_then_sms")]):
            recipient = accepted_forms(CITIZENS[who])[i]
            r = self.send(recipient, strategy, html=i % 2 == 0,
                          headers={"Idempotency-Key": "privacy-%d" % i})
            self.assertIn(r.status, (201, 502), r.raw)
            ids.append((r.json["id"], "inst-a"))
            again = self.send(recipient, strategy, html=i % 2 == 0,
                              headers={"Idempotency-Key": "privacy-%d" % i})
            self.assertEqual(again.json["id"], r.json["id"], again.raw)
        # Forms the tests send, each accepted, through the SMS channel.
        for f in forms(CITIZENS["no_app"])[1:]:
            r = self.send(f, "sms_only", inst="inst-b")
            self.assertIn(r.status, (201, 422), r.raw)
            if r.status == 201:
                ids.append((r.json["id"], "inst-b"))
            else:
                answers.append(r.raw)
        for mid, inst in ids:
            self.assertEqual(s.get(mid, inst).status, 200)
        # Device keys for an institution that encrypts itself.
        r = http("POST", s.base + "/v1/recipients/keys", {"recipient": CITIZENS["app_fr"]},
                 {"Authorization": "Bearer " + KEYS["inst-a"]})
        self.assertEqual(r.status, 200, r.raw)
        # A gateway token, good and bad; a wrong API key.
        good = sign("RS256", claims(), header_extra={"kid": "rsa-1"})
        bad = sign("RS256", claims(aud="someone-else"), header_extra={"kid": "rsa-1"})
        SECRETS["good_jwt"], SECRETS["bad_jwt"] = good, bad
        for token, want in ((good, 201), (bad, 401), ("not-" + KEYS["inst-a"], 401)):
            r = http("POST", s.base + "/v1/messages",
                     {"recipient": CITIZENS["no_app"], "strategy": "sms_only", "content": self.content()},
                     {"Authorization": "Bearer " + token})
            self.assertEqual(r.status, want, r.raw)
            if want != 201:
                answers.append(r.raw)
        # Error answers that name the recipient's field or a content field.
        for body in ({"recipient": "+32 470 00 00 0", "content": self.content()},
                     {"recipient": "+32 2 555 12 12", "content": self.content()},
                     {"recipient": CITIZENS["app_nl"], "content": {"xx": {"title": TITLE, "body": BODY}}},
                     {"recipient": CITIZENS["app_nl"], "content": {"nl": {"title": TITLE * 40, "body": BODY}}}):
            r = s.send(body)
            self.assertIn(r.status, (400, 422), r.raw)
            answers.append(r.raw)
        # Read receipt (GovApp webhook) and delivery reports (RingRing).
        inbox = s.sim("govapp", "GET", "/_sim/inbox?phone=%2B32470000001").json["messages"]
        for m in inbox:
            s.sim("govapp", "POST", "/_sim/mark", {"notification_id": m["notification_id"],
                                                   "device_id": "nl-phone", "status": "read"})
        self.assertTrue(inbox)
        poll_until(lambda: len(s.sim("govapp", "GET", "/_sim/callbacks").json) >= len(inbox), 30,
                   lambda: "no read receipt posted")
        poll_until(lambda: s.sim("ringring", "GET", "/_sim/stats").json["dlr_sent"] >= 2, 30,
                   lambda: "no delivery report posted")
        # Forged webhooks: a wrong path token (it is a secret), a bad signature.
        r = http("POST", s.base + "/v1/callbacks/ringring/not-" + RINGRING_CALLBACK_TOKEN,
                 {"MessageId": "x", "StatusCode": 200, "To": CITIZENS["no_app"][1:]})
        answers.append(r.raw)
        event = json.dumps({"notification_id": "gn_x", "device_id": "d", "status": "read",
                            "phone": CITIZENS["app_nl"]}).encode()
        t = int(time.time())
        mac = hmac.new(b"wrong", str(t).encode() + b"." + event, hashlib.sha256).hexdigest()
        r = http("POST", s.base + "/v1/callbacks/govapp", event,
                 {"Content-Type": "application/json", "X-GovApp-Signature": "t=%d,v1=%s" % (t, mac)})
        answers.append(r.raw)
        s.expect_log(r"callback refused", r"GovApp callback from .* refused")
        s.wait_idle()
        for mid, _ in ids:
            s.wait_stored(mid)
        return ids, answers

    def test_nothing_personal_nor_secret_leaves_smisd(self):
        ids, answers = self.flow()
        s = self.stack
        found = []
        for i, a in enumerate(answers):
            found += leaks("error answer %d" % i, a)
        found += leaks("/metrics", http("GET", s.base + "/metrics").raw)
        log = s.log_text()
        self.assertIn('"level":"debug"', log)     # the level did apply
        self.assertIn(ids[0][0], log)
        found += leaks("log", log)
        self.assertNotIn(REFERENCE, log)        # documented as stored, not logged
        db = os.path.join(s.dir, "smis.db")
        for f in (db, db + "-wal"):
            if os.path.exists(f):
                with open(f, "rb") as raw:
                    found += leaks(os.path.basename(f), raw.read().decode("latin-1"))
        con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
        try:
            dump = "\n".join(con.iterdump())
            hashes = {h for (h,) in con.execute("SELECT recipient_hash FROM messages")}
        finally:
            con.close()
        found += leaks("store rows", dump)
        self.assertEqual(found, [], "\n".join(found))
        # The recipient is stored only as HMAC-SHA256(phone_hash_key, E.164).
        key = bytes.fromhex(PHONE_HASH_KEY)
        keyed = {hmac.new(key, c.encode(), hashlib.sha256).hexdigest() for c in CITIZENS.values()}
        self.assertTrue(hashes and hashes <= keyed, hashes - keyed)


class AbortedCallbacks(StackTestCase):
    def test_aborted_callback_does_not_log_its_path_token(self):
        # libmicrohttpd names the request's path when it cannot send the
        # answer (the caller hung up); RingRing's callback path carries the
        # callback token. Callers that reset the connection at once make
        # some of those answers fail; their log lines must not hold it.
        s = self.stack
        s.expect_log(r"^Failed to send|^Connection socket is closed|^Error processing request",
                     r"^callback malformed")
        body = json.dumps({"MessageId": "x", "StatusCode": 200}).encode()
        req = ("POST /v1/callbacks/ringring/%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\n\r\n" % (RINGRING_CALLBACK_TOKEN, len(body))).encode() + body
        deadline = time.time() + 30
        while "/v1/callbacks/ringring/" not in s.log_text() and time.time() < deadline:
            for i in range(50):
                c = socket.create_connection(("127.0.0.1", s.smisd_port))
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.sendall(req)
                time.sleep(0.0005 * (i % 5))
                c.close()
            time.sleep(0.2)
        log = s.log_text()
        if "/v1/callbacks/ringring/" not in log:
            self.skipTest("no answer failed to be sent in 30 s: nothing to look at")
        self.assertEqual(leaks("log", log), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
