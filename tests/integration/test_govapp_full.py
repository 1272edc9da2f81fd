"""
test_govapp_full.py - end-to-end proof of the GovApp issue: smisd, the
GovApp simulator (which plays the citizens' devices: it holds their private
keys and opens every envelope) and the RingRing simulator on loopback, over
real HTTP. Run by `make check`; standard library only.

What it proves, against the issue's words:
  * an HTML message in four languages, encrypted per device, reaches both
    devices of a citizen: they decrypt all four languages (sanitised HTML),
    while the GovApp backend only ever saw the titles;
  * a device marks it delivered then read; the simulator's signed callback
    reaches smisd, and GET /v1/messages/{id} shows the per-device reports
    and the overall status `read`; SMIS also gets statuses by polling;
  * forged callbacks (bad signature, old or future timestamp, no header)
    are refused with 401 and logged without personal data; a callback for
    an unknown notification changes nothing;
  * institution-side encryption (smis-encrypt): the device decrypts what the
    institution sealed, SMIS forwards the envelopes unchanged; with one bit
    of one ciphertext flipped, that device fails to decrypt and SMIS reports
    it, while the other device reads the message;
  * GovApp 5xx, timeout, slowness, throttling, garbage, unreachable, a
    citizen without a usable key or without a device: each maps to its
    documented error, govapp_first falls back to SMS, govapp_only fails;
  * the SMS fallback uses the citizen's language.
"""
import base64
import hashlib
import hmac
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
from http.client import HTTPConnection

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (CITIZENS, GOVAPP_CALLBACK_SECRET, IDEMPOTENCY_KEYS, KEYS, SEND_REFUSED,  # noqa: E402
                     SEND_TAKEN, Stack, StackTestCase, free_port, http)

APP, SMS = "govapp", "ringring"
SUITE = "HPKE-Base-X25519-SHA256-AES128GCM"
SMIS_ENCRYPT = os.path.join(harness.BUILD, "tools/smis-encrypt/smis-encrypt")
LANGS = ("nl", "fr", "de", "en")  # also inst-a's language order

# Per language: a title (the only text GovApp may see) and an HTML body
# with a word found nowhere else, so that any leak of a body is visible.
TEXTS = {
    "nl": {"title": "Nieuw document", "secret": "aanslagbiljet-NL-7731",
           "body": "<p>Uw <b>aanslagbiljet-NL-7731</b> staat klaar.</p><script>alert('nl')</script>"},
    "fr": {"title": "Nouveau document", "secret": "avertissement-FR-7732",
           "body": "<p>Votre <b>avertissement-FR-7732</b> est prêt.</p><script>alert('fr')</script>"},
    "de": {"title": "Neues Dokument", "secret": "Steuerbescheid-DE-7733",
           "body": "<p>Ihr <b>Steuerbescheid-DE-7733</b> ist fertig.</p><script>alert('de')</script>"},
    "en": {"title": "New document", "secret": "assessment-EN-7734",
           "body": "<p>Your <b>assessment-EN-7734</b> is ready.</p><script>alert('en')</script>"},
}
SECRETS = [t["secret"] for t in TEXTS.values()]
NO_DEVICE = "+32470000006"  # registered, notifications on, no device at all


def four_languages(recipient, strategy, html=True, **extra):
    content = {}
    for lang in LANGS:
        t = TEXTS[lang]
        if html:
            content[lang] = {"title": t["title"], "body": t["body"], "format": "html"}
        else:
            content[lang] = {"title": t["title"], "body": "Uw bericht %s." % t["secret"]}
    body = {"recipient": recipient, "strategy": strategy, "content": content}
    body.update(extra)
    return body


def wait_for(fetch, done, what, timeout=15.0):
    """Call fetch() until done(value) holds; bounded (longer under a
    wrapper such as valgrind, as the harness's waits), no fixed sleep."""
    deadline = time.monotonic() + timeout * harness.SLOW
    pause = 0.02
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s; last value: %r" % (what, value))
        time.sleep(pause)
        pause = min(pause * 2, 0.25)


def b64u_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64u_encode(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def flip_one_bit(ct_b64u, bit=3):
    raw = bytearray(b64u_decode(ct_b64u))
    raw[len(raw) // 2] ^= 1 << bit
    return b64u_encode(bytes(raw))


def signature(body, t, secret=GOVAPP_CALLBACK_SECRET):
    mac = hmac.new(secret.encode(), str(t).encode() + b"." + body, hashlib.sha256).hexdigest()
    return "t=%d,v1=%s" % (t, mac)


def iso_now():
    ms = int(time.time() * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + ".%03dZ" % (ms % 1000)


class GovAppCase(StackTestCase):
    """Helpers over the stack shared by a class."""

    def setUp(self):
        super().setUp()
        # Registered with notifications on, but no device: not reachable.
        r = self.stack.sim("govapp", "POST", "/_sim/citizens",
                           {"phone": NO_DEVICE, "installed": True, "notifications": True,
                            "language": "nl", "devices": []})
        self.assertEqual(r.status, 200, r.raw)

    def sim_requests(self, path=None, method=None):
        reqs = self.stack.sim("govapp", "GET", "/_sim/requests").json
        return [q for q in reqs if (path is None or q["path"] == path) and (method is None or q["method"] == method)]

    def sends(self):
        return self.sim_requests("/v1/notifications", "POST")

    def sms(self):
        return self.stack.sim("ringring", "GET", "/_sim/requests").json

    def inbox(self, phone, message_id=None):
        r = self.stack.sim("govapp", "GET", "/_sim/inbox?phone=" + urllib.parse.quote(phone, safe=""))
        self.assertEqual(r.status, 200, r.raw)
        msgs = r.json["messages"]
        return [m for m in msgs if message_id is None or m["message_id"] == message_id]

    def mark(self, nid, device, status, expect=200):
        r = self.stack.sim("govapp", "POST", "/_sim/mark",
                           {"notification_id": nid, "device_id": device, "status": status})
        self.assertEqual(r.status, expect, r.raw)
        return r.json

    def callbacks(self, nid):
        return [c for c in self.stack.sim("govapp", "GET", "/_sim/callbacks").json if c["notification_id"] == nid]

    def wait_message(self, mid, done, what, timeout=15.0):
        return wait_for(lambda: self.stack.get(mid).json, done, what, timeout)

    def encrypt(self, *args, key=KEYS["inst-a"], check=None, env_extra=None):
        """Run smis-encrypt against this stack; returns the CompletedProcess."""
        argv = [SMIS_ENCRYPT, "--url", self.stack.base] + list(args)
        # Under the harness's wrapper (SMIS_TEST_WRAPPER, SMIS_VALGRIND_DAEMON=1)
        # or, alone, with SMIS_VALGRIND_TOOLS=1 under valgrind: a leak or
        # memory error fails.
        if harness.WRAPPER:
            argv = harness.WRAPPER + argv
        elif os.environ.get("SMIS_VALGRIND_TOOLS") and os.environ.get("VALGRIND"):
            argv = [os.environ["VALGRIND"]] + harness.VALGRIND_ARGV + argv
        env = dict(os.environ, SMIS_API_KEY=key, **(env_extra or {}))
        p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
        if check is not None:
            self.assertEqual(p.returncode, check, "exit %d\nstdout: %s\nstderr: %s" % (
                p.returncode, p.stdout[-2000:], p.stderr[-2000:]))
        return p

    def assert_no_body_leak(self, text):
        for secret in SECRETS:
            self.assertNotIn(secret, text)
        self.assertNotIn("<script", text)
        self.assertNotIn("<p>", text)

    def assert_log_has_no_personal_data(self):
        log = self.stack.log_text()
        for phone in list(CITIZENS.values()) + [NO_DEVICE]:
            self.assertNotIn(phone[3:], log)  # 470000001: national digits, any format
        self.assertNotIn(GOVAPP_CALLBACK_SECRET, log)
        for secret in SECRETS:
            self.assertNotIn(secret, log)


class EndToEnd(GovAppCase):
    def test_html_four_languages_encrypted_delivered_and_read(self):
        s = self.stack
        r = s.send(four_languages(CITIZENS["app_fr"], "govapp_only", reference="e2e-0001"))
        self.assertEqual(r.status, 201, r.raw)
        self.assertEqual((r.json["status"], r.json["channel"], r.json["channels"]), ("sent", APP, [APP]), r.raw)
        mid = r.json["id"]
        lookup, send = r.json["attempts"]
        self.assertEqual((lookup["operation"], lookup["outcome"], lookup["reachability"], lookup["language"],
                          lookup["devices"]), ("lookup", "ok", "reachable", "fr", 2))
        self.assertEqual((send["operation"], send["outcome"]), ("send", "sent"))
        nid = send["provider_reference"]
        self.assertTrue(nid.startswith("gn_"), nid)

        # What the GovApp backend received: titles in clear, bodies nowhere.
        sends = self.sends()
        self.assertEqual(len(sends), 1)
        body = sends[0]["body"]
        self.assertEqual(body["message_id"], mid)
        self.assertEqual(body["phone"], CITIZENS["app_fr"])
        self.assertEqual(body["reference"], "e2e-0001")
        self.assertEqual(body["title"], {lang: TEXTS[lang]["title"] for lang in LANGS})
        self.assertEqual(body["languages"], list(LANGS))
        self.assertEqual(body["encryption"], SUITE)
        self.assertEqual(sorted(e["device_id"] for e in body["envelopes"]), ["fr-phone", "fr-tablet"])
        self.assertNotEqual(body["envelopes"][0]["enc"], body["envelopes"][1]["enc"])
        self.assert_no_body_leak(json.dumps(self.sim_requests(), ensure_ascii=False))

        # Both devices decrypted all four languages; the HTML is sanitised.
        inbox = self.inbox(CITIZENS["app_fr"], mid)
        self.assertEqual(sorted(m["device_id"] for m in inbox), ["fr-phone", "fr-tablet"])
        for m in inbox:
            self.assertTrue(m["decrypt_ok"], m)
            self.assertIsNone(m["decrypt_error"])
            self.assertEqual((m["notification_id"], m["status"], m["reference"]), (nid, "accepted", "e2e-0001"))
            self.assertEqual(set(m["content"]), set(LANGS))
            for lang in LANGS:
                c = m["content"][lang]
                self.assertEqual(c["title"], TEXTS[lang]["title"])
                self.assertEqual(c["format"], "html")
                self.assertIn("<b>%s</b>" % TEXTS[lang]["secret"], c["body"])
                self.assertTrue(c["body"].startswith("<p>"), c["body"])
                self.assertNotIn("<script", c["body"].lower())
                self.assertNotIn("alert", c["body"])
                self.assertIn(TEXTS[lang]["secret"], c["body_text"])
                self.assertNotIn("<", c["body_text"])
                self.assertNotIn("alert", c["body_text"])

        # The phone shows it, then the citizen opens it: signed callbacks.
        self.assertEqual(self.mark(nid, "fr-phone", "delivered")["callback"], "queued")
        wait_for(lambda: self.callbacks(nid), lambda cbs: len(cbs) == 1 and cbs[0]["http_status"] == 200,
                 "the delivered callback to be answered 200")
        g = self.wait_message(mid, lambda m: m["status"] == "delivered", "status delivered")
        self.mark(nid, "fr-phone", "read")
        cbs = wait_for(lambda: self.callbacks(nid), lambda cbs: len(cbs) == 2 and all(c["ok"] for c in cbs),
                       "the read callback to be answered 200")
        self.assertEqual([(c["device_id"], c["status"], c["http_status"]) for c in cbs],
                         [("fr-phone", "delivered", 200), ("fr-phone", "read", 200)])
        g = self.wait_message(mid, lambda m: m["status"] == "read", "status read")
        phone = {m["device_id"]: m for m in self.inbox(CITIZENS["app_fr"], mid)}["fr-phone"]
        self.assertEqual(phone["status"], "read")
        reports = [(x["channel"], x.get("device"), x["status"], x.get("detail")) for x in g["reports"]]
        self.assertEqual(reports, [(APP, "fr-phone", "delivered", "govapp_callback_delivered"),
                                   (APP, "fr-phone", "read", "govapp_callback_read")])
        # The times are the device's, not SMIS's reception time.
        self.assertEqual([x["at"] for x in g["reports"]], [phone["delivered_at"], phone["read_at"]])
        self.assertIn("updated_at", g)

        # A device's status never goes back either: marking the phone
        # delivered (or read) again changes nothing and calls nobody back.
        for status in ("delivered", "read"):
            self.assertEqual({k: v for k, v in self.mark(nid, "fr-phone", status).items() if k in ("status", "callback")},
                             {"status": "read", "callback": "none"})

        # Per device: the tablet reports too; the overall status never goes back.
        self.mark(nid, "fr-tablet", "delivered")
        g = self.wait_message(mid, lambda m: len(m["reports"]) == 3, "the tablet's report")
        self.assertEqual(g["status"], "read")
        self.assertIn((APP, "fr-tablet", "delivered"), [(x["channel"], x.get("device"), x["status"]) for x in g["reports"]])
        # Callbacks go out in order: the tablet's comes after all of the phone's.
        cbs = wait_for(lambda: self.callbacks(nid), lambda cbs: cbs[-1]["device_id"] == "fr-tablet",
                       "the tablet's callback")
        self.assertEqual([(c["device_id"], c["status"]) for c in cbs],
                         [("fr-phone", "delivered"), ("fr-phone", "read"), ("fr-tablet", "delivered")])
        self.assert_log_has_no_personal_data()

    def test_sms_fallback_speaks_the_citizens_language(self):
        # app_off: GovApp installed, notifications off, language de.
        r = self.stack.send(four_languages(CITIZENS["app_off"], "govapp_first"))
        self.assertEqual((r.json["status"], r.json["channel"]), ("sent", SMS), r.raw)
        self.assertEqual((r.json["attempts"][0]["reachability"], r.json["attempts"][0]["language"]),
                         ("notifications_off", "de"))
        self.assertEqual(self.sends(), [])
        sms = self.sms()
        self.assertEqual(len(sms), 1)
        text = sms[0]["message"]
        self.assertTrue(text.startswith(TEXTS["de"]["title"] + "\n"), text)
        self.assertIn(TEXTS["de"]["secret"], text)
        self.assertNotIn("<", text)
        self.assertNotIn("alert", text)
        for lang in ("nl", "fr", "en"):
            self.assertNotIn(TEXTS[lang]["secret"], text)
        # No GovApp language known: the request's `language`, else the
        # institution's first language.
        for language, expect in (("en", "en"), (None, "nl")):
            with self.subTest(language=language):
                self.stack.sim("ringring", "POST", "/_sim/reset", {})
                extra = {"language": language} if language else {}
                r = self.stack.send(four_languages(CITIZENS["no_app"], "govapp_first", **extra))
                self.assertEqual(r.json["channel"], SMS, r.raw)
                self.assertIn(TEXTS[expect]["secret"], self.sms()[0]["message"])

    def test_smis_encrypt_the_device_reads_what_the_institution_sealed(self):
        p = self.encrypt("--to", "0470 00 00 02", "--html", "--strategy", "govapp_only", "--reference", "pt-0001",
                         "--lang", "nl", "--title", TEXTS["nl"]["title"], "--body", TEXTS["nl"]["body"],
                         "--lang", "fr", "--title", TEXTS["fr"]["title"], "--body", TEXTS["fr"]["body"], check=0)
        answer = json.loads(p.stdout)
        self.assertEqual((answer["status"], answer["channel"], answer["reference"]), ("sent", APP, "pt-0001"), p.stdout)
        mid = answer["id"]
        sends = self.sends()
        self.assertEqual(len(sends), 1)
        self.assertEqual(sends[0]["body"]["message_id"], mid)
        self.assertEqual(sends[0]["body"]["title"], {"nl": TEXTS["nl"]["title"], "fr": TEXTS["fr"]["title"]})
        self.assertEqual(len(sends[0]["body"]["envelopes"]), 2)
        # Neither GovApp nor SMIS saw a body: SMIS's log and store have none.
        self.assert_no_body_leak(json.dumps(self.sim_requests(), ensure_ascii=False))
        self.assert_log_has_no_personal_data()
        inbox = self.inbox(CITIZENS["app_fr"], mid)
        self.assertEqual(len(inbox), 2)
        for m in inbox:
            self.assertTrue(m["decrypt_ok"], m)
            self.assertEqual(set(m["content"]), {"nl", "fr"})
            for lang in ("nl", "fr"):
                c = m["content"][lang]
                self.assertIn("<b>%s</b>" % TEXTS[lang]["secret"], c["body"])
                self.assertNotIn("script", c["body"])  # sanitised by smis-encrypt
                self.assertEqual(c["format"], "html")
        # And the status flows back as for any message.
        self.mark(inbox[0]["notification_id"], inbox[0]["device_id"], "read")
        self.wait_message(mid, lambda m: m["status"] == "read", "status read")

    def test_smis_encrypt_envelopes_reach_govapp_unchanged(self):
        p = self.encrypt("--dry-run", "--to", CITIZENS["app_fr"], "--strategy", "govapp_only",
                         "--title", "Bericht", "--body", "Geheime inhoud 4242", check=0)
        request = json.loads(p.stdout)
        self.assertEqual(set(request), {"recipient", "message_id", "encrypted", "content", "strategy"})
        self.assertEqual(request["content"], {"nl": {"title": "Bericht"}})
        self.assertNotIn("4242", p.stdout)
        self.assertEqual(self.sends(), [])  # a dry run sends nothing
        idem = {"Idempotency-Key": "pt-retry-0001"}
        r = self.stack.send(request, headers=idem)
        self.assertEqual(r.status, 201, r.raw)
        self.assertEqual((r.json["id"], r.json["status"]), (request["message_id"], "sent"), r.raw)
        sent = self.sends()[0]["body"]
        self.assertEqual(sent["envelopes"], request["encrypted"]["envelopes"])
        self.assertEqual(sent["encryption"], request["encrypted"]["encryption"])
        for m in self.inbox(CITIZENS["app_fr"], request["message_id"]):
            self.assertTrue(m["decrypt_ok"], m)
            self.assertEqual(m["content"]["nl"]["body"], "Geheime inhoud 4242")
        # A retry of the same body with its Idempotency-Key replays the
        # answer; without it, the message id has served already.
        replay = self.stack.send(request, headers=idem)
        self.assertEqual((replay.status, replay.headers["Idempotent-Replayed"]), (200, "true"), replay.raw)
        again = self.stack.send(request)
        self.assertEqual((again.status, again.json["code"]), (409, "message_id_used"), again.raw)
        self.assertEqual(len(self.sends()), 1)

    def test_smis_encrypt_rerun_and_changed_devices(self):
        args = ("--to", CITIZENS["app_nl"], "--strategy", "govapp_only", "--title", "t", "--body", "b",
                "--idempotency-key", "rerun-0001")
        self.encrypt(*args, check=0)
        # A rerun seals a new message id: another body under the same key.
        p = self.encrypt(*args, check=3)
        self.assertIn("422 idempotency_key_reused", p.stderr)
        self.assertEqual(len(self.sends()), 1)
        # A device removed between the keys call and the send: GovApp
        # refuses the envelope set and SMIS cannot re-seal it.
        phone = "+32470000007"
        citizen = {"phone": phone, "language": "nl", "devices": [{"device_id": "old"}, {"device_id": "new"}]}
        self.assertEqual(self.stack.sim("govapp", "POST", "/_sim/citizens", citizen).status, 200)
        request = json.loads(self.encrypt("--dry-run", "--to", phone, "--strategy", "govapp_only",
                                          "--title", "t", "--body", "b", check=0).stdout)
        self.assertEqual(len(request["encrypted"]["envelopes"]), 2)
        citizen["devices"] = [{"device_id": "new"}]
        self.assertEqual(self.stack.sim("govapp", "POST", "/_sim/citizens", citizen).status, 200)
        m = self.stack.send(request).json
        self.assertEqual((m["status"], m["error"]), ("failed", "govapp_rejected"), m)
        self.assertEqual(self.inbox(phone), [])

    def test_smis_encrypt_outcomes_and_exit_codes(self):
        base = ("--title", TEXTS["de"]["title"], "--body", "Geheim 5151", "--lang", "de")
        # No app device to encrypt to: nothing is sent, exit 1.
        for who in ("no_app", "bad_key"):
            with self.subTest(who=who):
                p = self.encrypt("--to", CITIZENS[who], "--strategy", "govapp_only", *base, check=1)
                self.assertIn("nothing sent", p.stderr)
        p = self.encrypt("--to", NO_DEVICE, "--strategy", "govapp_only", *base, check=1)
        self.assertEqual(self.sends(), [])
        # Passthrough with an SMS fallback: SMIS cannot read the body, so
        # the SMS is sms_text when given, else the title alone.
        p = self.encrypt("--to", CITIZENS["app_off"], "--strategy", "govapp_first", *base,
                         "--sms-text", "Neues Dokument in der App", check=0)
        self.assertEqual(json.loads(p.stdout)["channel"], SMS, p.stdout)
        p = self.encrypt("--to", CITIZENS["app_off"], "--strategy", "govapp_first", *base, check=0)
        self.assertEqual([m["message"] for m in self.sms()], ["Neues Dokument in der App", TEXTS["de"]["title"]])
        self.assertNotIn("5151", json.dumps(self.sms()))
        # govapp_only to a citizen whose notifications are off: failed, exit 1.
        p = self.encrypt("--to", CITIZENS["app_off"], "--strategy", "govapp_only", *base, check=1)
        self.assertEqual(json.loads(p.stdout)["status"], "failed")
        # Errors and usage.
        p = self.encrypt("--to", CITIZENS["app_fr"], *base, key="wrong-key-0123456789", check=3)
        self.assertIn("401 unauthorized", p.stderr)
        p = self.encrypt("--to", "+31612345678", *base, check=3)
        self.assertIn("country_not_allowed", p.stderr)
        self.encrypt("--to", CITIZENS["app_fr"], "--title", "t", "--body", "b", "--lang", "es", check=2)
        self.encrypt("--title", "t", "--body", "b", check=2)
        self.encrypt("--to", CITIZENS["app_fr"], "--title", "t", check=2)
        self.encrypt("--to", CITIZENS["app_fr"], "--html", "--title", "t", "--body", "<script>x</script>", check=2)
        # A body that is not UTF-8 (a Latin-1 file) is not sealed: the app
        # could not read the plaintext. Nor a title or SMS text that is not:
        # a usage error, found before any request (none could be served by
        # the closed port given last).
        closed = "http://127.0.0.1:%d" % free_port()
        with tempfile.NamedTemporaryFile(suffix=".txt") as f:
            f.write(b"Caf\xe9 5151")
            f.flush()
            p = self.encrypt("--to", CITIZENS["app_fr"], "--title", "t", "--body-file", f.name, "--url", closed,
                             check=2)
            self.assertIn("not UTF-8", p.stderr)
        for latin1 in (("--title", "Caf\udce9", "--body", "b"), ("--title", "t", "--body", "Caf\udce9"),
                       ("--title", "t", "--body", "b", "--sms-text", "Caf\udce9")):
            with self.subTest(latin1=latin1):
                p = self.encrypt("--to", CITIZENS["app_fr"], *latin1, "--url", closed, check=2)
                self.assertIn("not UTF-8", p.stderr)
        self.assertIn("Usage:", self.encrypt("--help", check=0).stdout)
        self.assertEqual(len(self.sends()), 0)

    def test_smis_encrypt_refuses_what_smisd_refuses_by_syntax_before_any_request(self):
        # As smisctl send (test_smisctl.py, which also posts each to smisd):
        # a title with a control character was refused by smisd only after
        # the keys had been fetched, exit 3. Now exit 2, with no request.
        # The body is sealed, smisd never sees it: UTF-8 is all it must be.
        options = {"--to": CITIZENS["app_fr"], "--strategy": "govapp_only", "--lang": "fr", "--title": "t",
                   "--body": "b"}
        for opt, value, _, _, says in SEND_REFUSED:
            if opt in ("--body", "--lang"):
                continue
            with self.subTest(opt=opt, value=value[:20]):
                p = self.encrypt(*sum(dict(options, **{opt: value}).items(), ()), check=2)
                self.assertEqual(p.stderr, "smis-encrypt: %s\n" % says)
                self.assertEqual(self.sim_requests(), [])
        for opt, value in SEND_TAKEN + (("--body", "a\x07b"), ("--body", "")):
            with self.subTest(opt=opt, value=value[:20]):
                p = self.encrypt(*sum(dict(options, **{opt: value}).items(), ()), check=0)
                self.assertEqual(json.loads(p.stdout)["status"], "sent")

    def test_smis_encrypt_idempotency_key_syntax_is_a_usage_error(self):
        # As smisctl's (test_smisctl.py): refused before any request.
        closed = "http://127.0.0.1:%d" % free_port()
        for key, want in IDEMPOTENCY_KEYS:
            with self.subTest(key=key):
                p = self.encrypt("--to", CITIZENS["app_fr"], "--title", "t", "--body", "b", "--url", closed,
                                 "--idempotency-key", key, check=want)
                self.assertEqual("--idempotency-key" in p.stderr, want == 2, p.stderr)


    def test_smis_encrypt_strategy_must_be_a_strategy_name(self):
        # As smisctl's (test_smisctl.py, which also posts each to smisd):
        # a strategy name is 1-48 of [a-z0-9_-], any other --strategy
        # is refused before any request (exit 2, where the closed port
        # makes it 3).
        closed = "http://127.0.0.1:%d" % free_port()
        says = "smis-encrypt: --strategy must name a strategy: 1-48 characters of a-z, 0-9, '_' and '-'\n"
        for strategy, want in (("", 2), ("Govapp_only", 2), ("govapp only", 2), ("caf\u00e9", 2), ("s" * 48, 3)):
            with self.subTest(strategy=strategy):
                p = self.encrypt("--to", CITIZENS["app_fr"], "--title", "t", "--body", "b", "--url", closed,
                                 "--strategy", strategy, check=want)
                self.assertEqual(p.stderr == says, want == 2, p.stderr)

    def test_smis_encrypt_channel_must_be_a_channel_name(self):
        # smisd answers a channel that names none of its app channels 422
        # unknown_channel, and every channel name is 1-48 of [a-z0-9_-]
        # (its configuration check): any other --channel is refused before
        # any request (exit 2, where the closed port makes it 3).
        closed = "http://127.0.0.1:%d" % free_port()
        says = "smis-encrypt: --channel must name a channel: 1-48 characters of a-z, 0-9, '_' and '-'\n"
        keys = {"Authorization": "Bearer " + KEYS["inst-a"]}
        for channel in ("", "govapp\x1b[2J", "gov\napp", "g" * 49, "GovApp", "gov app", "gov.app", "caf\u00e9"):
            with self.subTest(channel=channel):
                p = self.encrypt("--to", CITIZENS["app_fr"], "--title", "t", "--body", "b", "--url", closed,
                                 "--channel", channel, check=2)
                self.assertEqual(p.stderr, says)
                r = http("POST", self.stack.base + "/v1/recipients/keys",
                         {"recipient": CITIZENS["app_fr"], "channel": channel}, keys)
                self.assertEqual((r.status, r.json["code"], r.json["field"]), (422, "unknown_channel", "/channel"),
                                 r.raw)
        for channel in ("g" * 48, "ringring", "a-b_9"):
            with self.subTest(channel=channel):
                self.encrypt("--to", CITIZENS["app_fr"], "--title", "t", "--body", "b", "--url", closed,
                             "--channel", channel, check=3)
        p = self.encrypt("--dry-run", "--to", CITIZENS["app_fr"], "--title", "t", "--body", "b",
                         "--channel", "govapp", check=0)
        self.assertIn("message_id", json.loads(p.stdout))


    def test_smis_encrypt_out_of_memory_fails_rather_than_send_less(self):
        # json-c out of memory while the requests are built (a preloaded
        # library fails json_object_new_string of "nomem-..." and the
        # json_object_object_add of a "nomem-add-..." string): the lost
        # member made a request without it, which smisd took for an option
        # not given (the message sent without its reference, SMS text,
        # title; the keys asked of the default channel). Now exit 3, out of
        # memory, and nothing sent.
        env = harness.preloading("nomem_json")
        base = ("--to", CITIZENS["app_fr"], "--strategy", "govapp_first", "--lang", "fr")
        for extra in (("--title", "nomem-title", "--body", "b"), ("--title", "nomem-add-title", "--body", "b"),
                      ("--title", "t", "--body", "nomem-body"),
                      ("--html", "--title", "t", "--body", "<p>nomem-add-html</p>"),
                      ("--title", "t", "--body", "b", "--reference", "nomem-1"),
                      ("--title", "t", "--body", "b", "--reference", "nomem-add-1"),
                      ("--title", "t", "--body", "b", "--sms-text", "nomem-add-sms"),
                      ("--title", "t", "--body", "b", "--channel", "nomem-channel"),
                      ("--title", "t", "--body", "b", "--channel", "nomem-add-channel")):
            with self.subTest(extra=extra):
                p = self.encrypt(*base, *extra, env_extra=env, check=3)
                self.assertEqual((p.stdout, p.stderr), ("", "smis-encrypt: out of memory\n"))
                self.assertEqual(self.sends(), [])
        # The library fails nothing else.
        p = self.encrypt(*base, "--title", "t", "--body", "b", "--reference", "ref-nomem", env_extra=env, check=0)
        self.assertEqual(json.loads(p.stdout)["reference"], "ref-nomem")


class PassthroughPastRetention(GovAppCase):
    """A passthrough message_id older than store.retention_s is refused as
    used: its message may have been deleted by then, so whether it was sent
    can no longer be told (and a captured request cannot be replayed once
    its record is gone)."""
    stack_kwargs = {"store_extra": "retention_s = 4;"}

    def dry_run(self):
        return json.loads(self.encrypt("--dry-run", "--to", CITIZENS["app_fr"], "--strategy", "govapp_only",
                                       "--title", "Bericht", "--body", "Inhoud 31", check=0).stdout)

    def test_message_id_older_than_retention_refused(self):
        stale = self.dry_run()
        fresh = self.dry_run()
        r = self.stack.send(fresh)
        self.assertEqual((r.status, r.json["id"]), (201, fresh["message_id"]), r.raw)
        time.sleep(4.5)
        for request in (stale, fresh):
            with self.subTest(sent_before=request is fresh):
                r = self.stack.send(request)
                self.assertEqual((r.status, r.json["code"], r.json["field"]), (409, "message_id_used", "/message_id"),
                                 r.raw)
                if request is stale:
                    self.assertIn("older than the store keeps messages", r.json["detail"])
        self.assertEqual(len(self.sends()), 1)

    def test_message_id_dated_ahead_refused(self):
        # An id SMIS never gave, dated ten minutes ahead: it would outlive
        # the retention, which deletes by the ids' dates.
        t, stamp = int(time.time() * 1000) + 600000, ""
        for _ in range(10):
            stamp, t = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"[t & 31] + stamp, t >> 5
        request = self.dry_run()
        request["message_id"] = "msg_" + stamp + request["message_id"][14:]
        r = self.stack.send(request)
        self.assertEqual((r.status, r.json["code"], r.json["field"]), (400, "invalid_value", "/message_id"), r.raw)
        self.assertEqual(self.sends(), [])


class PassthroughBeforeTheCommit(GovAppCase):
    """An institution-encrypted message's id is taken from the moment its
    send is answered, before the store commits it (answers come first by
    default; a 1000 ms commit delay, and the database's write lock held
    meanwhile, keep the window open for the test however slowly it runs)."""
    stack_kwargs = {"store_extra": "commit_delay_ms = 1000;"}

    def test_message_id_reuse_refused_before_the_commit(self):
        p = self.encrypt("--dry-run", "--to", CITIZENS["app_fr"], "--strategy", "govapp_only",
                         "--title", "Bericht", "--body", "Inhoud 77", check=0)
        request = json.loads(p.stdout)
        idem = {"Idempotency-Key": "pt-window-0001"}
        with self.stack.store_locked():
            r = self.stack.send(request, headers=idem)
            self.assertEqual((r.status, r.json["id"]), (201, request["message_id"]), r.raw)
            again = self.stack.send(request)
            self.assertEqual((again.status, again.json["code"]), (409, "message_id_used"), again.raw)
            replay = self.stack.send(request, headers=idem)
            self.assertEqual((replay.status, replay.json), (200, r.json), replay.raw)
            self.assertEqual(len(self.sends()), 1)
            # All of that while the record was in memory only.
            self.assertIsNone(self.stack.stored_status(request["message_id"]))
        self.stack.wait_stored(request["message_id"])
        after = self.stack.send(request)
        self.assertEqual((after.status, after.json["code"]), (409, "message_id_used"), after.raw)
        self.assertEqual(len(self.sends()), 1)


class PassthroughIdLookupFails(GovAppCase):
    """When the store cannot tell whether a message_id was used (the read
    fails: a damaged database), the send is refused with 503
    store_unavailable: taking the id as unused sent the message a second
    time, and its record then failed on the duplicate key. A column renamed
    by another process makes the read fail here."""

    def test_failed_lookup_sends_nothing(self):
        s = self.stack
        s.expect_log(r"^message id lookup failed: no such column: id$")
        s.expect_log(r": 503 store_unavailable$")
        # The writer's own chores read the column too, once a second.
        s.expect_log(r"^(poll failed|retention): .*no such column")
        request = json.loads(self.encrypt("--dry-run", "--to", CITIZENS["app_fr"], "--strategy", "govapp_only",
                                          "--title", "Bericht", "--body", "Inhoud 88", check=0).stdout)
        r = s.send(request)
        self.assertEqual((r.status, r.json["id"]), (201, request["message_id"]), r.raw)
        s.wait_stored(request["message_id"])
        s.wait_idle()
        with s.column_hidden("messages", "id"):
            again = s.send(request)
            self.assertEqual((again.status, again.json["code"], again.headers["Retry-After"]),
                             (503, "store_unavailable", "1"), again.raw)
        self.assertEqual(len(self.sends()), 1)
        after = s.send(request)
        self.assertEqual((after.status, after.json["code"]), (409, "message_id_used"), after.raw)
        self.assertEqual(len(self.sends()), 1)


class InlineSealing(GovAppCase):
    """limits.prepare_threads = 0: the dispatcher seals itself instead of
    handing the sealing to worker threads (the default); same outcome."""
    stack_kwargs = {"prepare_threads": 0}
    test_html_four_languages_encrypted_delivered_and_read = \
        EndToEnd.test_html_four_languages_encrypted_delivered_and_read


class Callbacks(GovAppCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stack.expect_log(r"GovApp callback from \S+ refused")
        cls.stack.expect_log(r"callback refused \(not authentic\)")
        cls.stack.expect_log(r"callback malformed")
        cls.stack.expect_log(r"callback for an unknown message refused")

    def post(self, body, header=None):
        h = {"Content-Type": "application/json"}
        if header is not None:
            h["X-GovApp-Signature"] = header
        return http("POST", self.stack.base + "/v1/callbacks/govapp", body, h)

    def test_forged_callbacks_are_refused(self):
        r = self.stack.send(four_languages(CITIZENS["app_nl"], "govapp_only"))
        self.assertEqual(r.json["status"], "sent", r.raw)
        mid, nid = r.json["id"], r.json["attempts"][1]["provider_reference"]
        event = json.dumps({"notification_id": nid, "message_id": mid, "device_id": "nl-phone",
                            "status": "read", "at": iso_now()}, separators=(",", ":")).encode()
        now = int(time.time())
        forged = {
            "no signature header": (event, None),
            "signed with another secret": (event, signature(event, now, "another-secret-0123456789")),
            "signature of another body": (event.replace(b'"read"', b'"delivered"'), signature(event, now)),
            "old timestamp": (event, signature(event, now - 3600)),
            "timestamp from the future": (event, signature(event, now + 3600)),
            "malformed header": (event, "t=abc," + signature(event, now).split(",")[1]),
            "no v1 item": (event, "t=%d" % now),
        }
        for why, (body, header) in forged.items():
            with self.subTest(why=why):
                f = self.post(body, header)
                self.assertEqual((f.status, f.json["code"]), (401, "callback_rejected"), f.raw)
        g = self.stack.get(mid).json
        self.assertEqual((g["status"], g["reports"]), ("sent", []))
        log = self.stack.log_text()
        for reason in ("missing signature header", "signature mismatch", "outside the allowed clock skew",
                       "malformed signature header"):
            self.assertIn(reason, log)

        # An authentic callback for a notification SMIS does not know, with
        # no message in flight: refused, and nothing changes.
        self.stack.wait_idle()
        unknown = json.dumps({"notification_id": "gn_01M8GXVR9FEZ1CD0WAGQC63PJ0", "device_id": "nl-phone",
                              "status": "read"}).encode()
        u = self.post(unknown, signature(unknown, int(time.time())))
        self.assertEqual((u.status, u.json["code"]), (404, "unknown_message"), u.raw)
        g = self.stack.get(mid).json
        self.assertEqual((g["status"], g["reports"]), ("sent", []))

        # Authentic but not the documented object: 400.
        bad = json.dumps({"notification_id": nid, "device_id": "nl-phone", "status": "exploded"}).encode()
        b = self.post(bad, signature(bad, int(time.time())))
        self.assertEqual((b.status, b.json["code"]), (400, "callback_malformed"), b.raw)
        # So is a device_id outside docs/govapp-protocol.md section 1's
        # printable ASCII: it would be stored and answered as it came (a
        # C1 control drives a terminal, a stray byte is no UTF-8).
        for device in ("nl\u009b[2Jphone", "nl\x1b[2Jphone", "nl phone"):
            with self.subTest(device=device):
                bad = json.dumps({"notification_id": nid, "device_id": device, "status": "read"}).encode()
                b = self.post(bad, signature(bad, int(time.time())))
                self.assertEqual((b.status, b.json["code"]), (400, "callback_malformed"), b.raw)
        stray = b'{"notification_id":"%s","device_id":"nl\x9b[2Jphone","status":"read"}' % nid.encode()
        b = self.post(stray, signature(stray, int(time.time())))
        self.assertEqual((b.status, b.json["code"]), (400, "callback_malformed"), b.raw)
        self.assertEqual(self.stack.get(mid).json["reports"], [])

        # Control: the same event, rightly signed, is taken, so the refusals
        # above were for the reasons tested and not a wrong test signature.
        ok = self.post(event, signature(event, int(time.time())))
        self.assertEqual((ok.status, ok.json), (200, {"accepted": 1}), ok.raw)
        g = self.wait_message(mid, lambda m: m["status"] == "read", "status read")
        self.assertEqual([(x["device"], x["status"], x["detail"]) for x in g["reports"]],
                         [("nl-phone", "read", "govapp_callback_read")])
        # A replay inside the skew window adds nothing.
        again = self.post(event, signature(event, int(time.time())))
        self.assertEqual(again.status, 200, again.raw)
        self.assertEqual(len(self.stack.get(mid).json["reports"]), 1)
        # The plugin reads the header without the whitespace after it
        # (RFC 9110 5.5): still authentic, still nothing added.
        for ows in (" ", "\t "):
            with self.subTest(ows=ows):
                spaced = self.post(event, signature(event, int(time.time())) + ows)
                self.assertEqual(spaced.status, 200, spaced.raw)
        self.assertEqual(len(self.stack.get(mid).json["reports"]), 1)
        self.assert_log_has_no_personal_data()


class ErrorMapping(GovAppCase):
    """Every GovApp failure maps to a documented attempt error; govapp_first
    falls back to SMS, govapp_only reports the failure."""

    # name -> (fault or None, citizen, the GovApp attempts [(operation, outcome, error)],
    #          the message error under govapp_only)
    CASES = {
        "lookup 5xx": ({"http_status": 500, "path": "lookup"}, "app_nl",
                       [("lookup", "temporary_failure", "upstream_5xx")], "upstream_5xx"),
        "send 5xx": ({"http_status": 503, "path": "send"}, "app_nl",
                     [("lookup", "ok", None), ("send", "temporary_failure", "upstream_5xx")], "upstream_5xx"),
        "send timeout": ({"timeout": True, "path": "send", "count": 1}, "app_nl",
                         [("lookup", "ok", None), ("send", "temporary_failure", "upstream_timeout")],
                         "upstream_timeout"),
        "slow lookup": ({"latency_ms": 2600, "path": "lookup", "count": 1}, "app_nl",
                        [("lookup", "temporary_failure", "upstream_timeout")], "upstream_timeout"),
        "send throttled": ({"http_status": 429, "path": "send"}, "app_nl",
                           [("lookup", "ok", None), ("send", "temporary_failure", "upstream_throttled")],
                           "upstream_throttled"),
        "send garbage": ({"garbage": True, "path": "send"}, "app_nl",
                         [("lookup", "ok", None), ("send", "temporary_failure", "upstream_bad_response")],
                         "upstream_bad_response"),
        "send 401": ({"http_status": 401, "path": "send"}, "app_nl",
                     [("lookup", "ok", None), ("send", "permanent_failure", "govapp_unauthorized")],
                     "govapp_unauthorized"),
        "invalid X25519 key": (None, "bad_key",
                               [("lookup", "ok", None), ("send", "permanent_failure", "govapp_no_device_key")],
                               "govapp_no_device_key"),
        "no device": (None, "no_device", [("lookup", "ok", None)], "recipient_not_reachable"),
    }

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stack.expect_log(r"upstream (lookup|send) failed")

    def run_case(self, strategy, fault, who):
        self.stack.sim("govapp", "POST", "/_sim/reset", {})
        self.stack.sim("ringring", "POST", "/_sim/reset", {})
        if fault:
            self.assertEqual(self.stack.sim("govapp", "POST", "/_sim/faults", fault).status, 200)
        phone = NO_DEVICE if who == "no_device" else CITIZENS[who]
        r = self.stack.send(four_languages(phone, strategy, html=False))
        self.assertEqual(r.status, 201, r.raw)
        return r.json

    def test_each_failure_maps_and_strategies_react(self):
        for name, (fault, who, app_attempts, error) in self.CASES.items():
            with self.subTest(case=name, strategy="govapp_first"):
                m = self.run_case("govapp_first", fault, who)
                got = [(a["operation"], a["outcome"], a.get("error")) for a in m["attempts"] if a["channel"] == APP]
                self.assertEqual(got, app_attempts, m)
                self.assertEqual((m["status"], m["channel"], m["channels"]), ("sent", SMS, [SMS]), m)
                self.assertEqual(m["attempts"][-1]["channel"], SMS)
                self.assertEqual(len(self.sms()), 1)
                for a in m["attempts"]:
                    self.assertEqual("error" in a, a["outcome"] not in ("ok", "sent"), a)
            with self.subTest(case=name, strategy="govapp_only"):
                m = self.run_case("govapp_only", fault, who)
                got = [(a["operation"], a["outcome"], a.get("error")) for a in m["attempts"]]
                self.assertEqual(got, app_attempts, m)
                self.assertEqual((m["status"], m["channel"], m["channels"], m["error"]),
                                 ("failed", None, [], error), m)
                self.assertEqual(self.sms(), [])
                self.assertEqual(self.stack.get(m["id"]).json["status"], "failed")
        self.assert_log_has_no_personal_data()

    def test_slow_send_may_still_be_delivered(self):
        # The backend processes a slow send after SMIS gave up on it: the
        # documented ambiguity of upstream_timeout. govapp_first then also
        # sends the SMS; the app copy exists.
        m = self.run_case("govapp_first", {"latency_ms": 2600, "path": "send", "count": 1}, "app_nl")
        self.assertEqual([a.get("error") for a in m["attempts"]], [None, "upstream_timeout", None], m)
        self.assertEqual(m["channel"], SMS)
        wait_for(lambda: self.inbox(CITIZENS["app_nl"], m["id"]), lambda x: len(x) == 1,
                 "the late send to be stored by the backend")

    def test_keys_of_a_citizen_without_usable_key(self):
        r = http("POST", self.stack.base + "/v1/recipients/keys", {"recipient": CITIZENS["bad_key"]},
                 {"Authorization": "Bearer " + KEYS["inst-a"]})
        self.assertEqual(r.status, 200, r.raw)
        self.assertEqual((r.json["reachability"], r.json["devices"], r.json["encryption"]),
                         ("reachable", [], SUITE), r.raw)
        r = http("POST", self.stack.base + "/v1/recipients/keys", {"recipient": CITIZENS["app_fr"]},
                 {"Authorization": "Bearer " + KEYS["inst-a"]})
        self.assertEqual(sorted(d["device_id"] for d in r.json["devices"]), ["fr-phone", "fr-tablet"])
        self.assertTrue(all(d["key_alg"] == "X25519" and len(d["public_key"]) == 43 for d in r.json["devices"]))


    def test_device_whose_key_alg_is_no_string_is_unusable(self):
        # A key_alg of null or a number is malformed backend data: that
        # device is skipped like one with a bad key, not sealed to as if
        # the member were absent (X25519). The log says which is wrong,
        # without the values.
        phone, mixed = "+32470000008", "+32470000009"
        bad_key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        bad = [{"device_id": "null-alg", "key_alg": None}, {"device_id": "num-alg", "key_alg": 25519},
               {"device_id": "p256-alg", "key_alg": "P-256"}, {"device_id": "bad-key", "public_key": bad_key}]
        for who, devices in ((phone, bad), (mixed, bad + [{"device_id": "good"}])):
            r = self.stack.sim("govapp", "POST", "/_sim/citizens", {"phone": who, "devices": devices})
            self.assertEqual(r.status, 200, r.raw)
        self.stack.sim("govapp", "POST", "/_sim/reset", {})
        m = self.stack.send(four_languages(phone, "govapp_only", html=False)).json
        self.assertEqual([(a["operation"], a["outcome"], a.get("error")) for a in m["attempts"]],
                         [("lookup", "ok", None), ("send", "permanent_failure", "govapp_no_device_key")], m)
        self.assertEqual(self.sends(), [])
        self.assertEqual(self.inbox(phone), [])
        m = self.stack.send(four_languages(mixed, "govapp_only", html=False)).json
        self.assertEqual((m["status"], m["attempts"][-1]["detail"]), ("sent", "accepted by GovApp for 1 device(s)"), m)
        self.assertEqual([(e["device_id"], e["decrypt_ok"]) for e in self.inbox(mixed)], [("good", True)])
        r = http("POST", self.stack.base + "/v1/recipients/keys", {"recipient": mixed},
                 {"Authorization": "Bearer " + KEYS["inst-a"]})
        self.assertEqual([d["device_id"] for d in r.json["devices"]], ["good"], r.raw)
        log = self.stack.log_text()
        for device, why in (("null-alg", "its key_alg is malformed (not a string)"),
                            ("num-alg", "its key_alg is malformed (not a string)"),
                            ("p256-alg", "its key_alg is not X25519"),
                            ("bad-key", "it has no valid X25519 public key")):
            self.assertIn('"GovApp device %s skipped: %s"' % (device, why), log)
        for secret in (bad_key, phone[3:], mixed[3:], "P-256"):
            self.assertNotIn(secret, log)


class Unreachable(GovAppCase):
    """The GovApp backend cannot be reached at all (connection refused)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        s = cls.stack
        s.expect_log(r"upstream (lookup|send) failed")
        s.expect_log(r"502 upstream_unavailable")
        # Point the govapp channel at a closed port and reload.
        real, s.govapp = s.govapp, "http://127.0.0.1:%d" % free_port()
        s.write_conf()
        s.govapp = real
        s.reload_and_wait()

    def test_unreachable_maps_to_upstream_unreachable(self):
        m = self.stack.send(four_languages(CITIZENS["app_nl"], "govapp_first", html=False)).json
        self.assertEqual([(a["channel"], a["operation"], a["outcome"], a.get("error")) for a in m["attempts"]],
                         [(APP, "lookup", "temporary_failure", "upstream_unreachable"), (SMS, "send", "sent", None)])
        self.assertEqual(m["status"], "sent")
        m = self.stack.send(four_languages(CITIZENS["app_nl"], "govapp_only", html=False)).json
        self.assertEqual((m["status"], m["error"]), ("failed", "upstream_unreachable"), m)
        self.assertEqual(len(self.sms()), 1)
        # Institution-side encryption cannot get keys: an error, nothing sent.
        p = self.encrypt("--to", CITIZENS["app_nl"], "--title", "t", "--body", "b", check=3)
        self.assertIn("502 upstream_unavailable", p.stderr)
        self.assertEqual(len(self.sms()), 1)


class TamperingAndPolling(GovAppCase):
    """SMIS polls GovApp quickly here, so statuses that are never called
    back (a device that cannot decrypt) reach the institution too."""
    stack_kwargs = {"extra_conf": "status_poll = { after_s = 1; interval_s = 1; max_polls = 6; };"}

    def dry_run(self, *extra):
        p = self.encrypt("--dry-run", "--to", CITIZENS["app_fr"], "--strategy", "govapp_only",
                         "--lang", "nl", "--title", TEXTS["nl"]["title"], "--body", "Inhoud 6161",
                         "--lang", "fr", "--title", TEXTS["fr"]["title"], "--body", "Contenu 6161", *extra, check=0)
        return json.loads(p.stdout)

    def test_one_flipped_bit_fails_on_that_device_only(self):
        request = self.dry_run()
        envs = {e["device_id"]: e for e in request["encrypted"]["envelopes"]}
        envs["fr-phone"]["ciphertext"] = flip_one_bit(envs["fr-phone"]["ciphertext"])
        r = self.stack.send(request)
        # The backend cannot look inside envelopes: it accepts the message.
        self.assertEqual((r.status, r.json["status"]), (201, "sent"), r.raw)
        mid, nid = r.json["id"], r.json["attempts"][-1]["provider_reference"]
        self.assertEqual(self.sends()[0]["body"]["envelopes"], request["encrypted"]["envelopes"])
        inbox = {m["device_id"]: m for m in self.inbox(CITIZENS["app_fr"], mid)}
        phone, tablet = inbox["fr-phone"], inbox["fr-tablet"]
        self.assertEqual((phone["decrypt_ok"], phone["decrypt_error"], phone["status"], phone["content"]),
                         (False, "authentication_failed", "failed", None))
        self.assertTrue(tablet["decrypt_ok"], tablet)
        self.assertEqual(tablet["content"]["fr"]["body"], "Contenu 6161")
        # The device that could not open it cannot show it.
        self.mark(nid, "fr-phone", "read", expect=409)
        # SMIS learns the failure by polling (no callback for it).
        g = self.wait_message(mid, lambda m: any(x.get("device") == "fr-phone" for x in m["reports"]),
                              "the failed device's report")
        self.assertEqual([(x.get("device"), x["status"], x.get("detail")) for x in g["reports"]],
                         [("fr-phone", "undelivered", "govapp_failed")])
        self.assertEqual(g["status"], "undelivered")
        self.assertTrue(any(q["method"] == "GET" and q["path"] == "/v1/notifications/" + nid
                            for q in self.sim_requests()))
        # The untampered device reads it, and the institution sees `read`.
        self.mark(nid, "fr-tablet", "read")
        g = self.wait_message(mid, lambda m: m["status"] == "read", "status read")
        self.assertIn(("fr-tablet", "read"), [(x.get("device"), x["status"]) for x in g["reports"]])

    def test_envelopes_are_bound_to_their_message_id(self):
        first, second = self.dry_run(), self.dry_run()
        self.assertNotEqual(first["message_id"], second["message_id"])
        second["encrypted"] = first["encrypted"]  # moved to another message
        r = self.stack.send(second)
        self.assertEqual(r.json["status"], "sent", r.raw)
        inbox = self.inbox(CITIZENS["app_fr"], second["message_id"])
        self.assertEqual(len(inbox), 2)
        for m in inbox:
            self.assertEqual((m["decrypt_ok"], m["decrypt_error"], m["content"]),
                             (False, "authentication_failed", None), m)
        g = self.wait_message(second["message_id"], lambda m: m["status"] == "undelivered", "status undelivered")
        self.assertIn(("govapp_failed"), [x.get("detail") for x in g["reports"]])


class PollingBothChannels(GovAppCase):
    """govapp_and_sms sends on both channels, and each status poll round
    asks both and counts one poll of the message. The SMS's poll was made
    for message "(null)": the first send's count, written while the rows
    were read, blanked the message's id in the next row, so its delivery
    report never reached the message. The SMS's final report ends the
    polling of the SMS only: it ended the message's, and the app
    notification, whose devices may still report, was never asked again."""
    # Rounds SLOW times further apart where everything is slower (valgrind):
    # the first round's SMS report is then stored before the last round.
    stack_kwargs = {"extra_conf": "status_poll = { after_s = 1; interval_s = %d; max_polls = 3; };"
                    % max(1, round(harness.SLOW)), "ringring_status_url": False}

    def stored_polls(self, mid):
        con = sqlite3.connect("file:%s?mode=ro" % os.path.join(self.stack.dir, "smis.db"), uri=True)
        try:
            return con.execute("SELECT polls, next_poll_ms FROM messages WHERE id = ?", (mid,)).fetchone()
        finally:
            con.close()

    def test_a_round_asks_both_and_counts_once(self):
        s = self.stack
        s.sim("ringring", "POST", "/_sim/faults", {"dlr_status": "200"})
        with s.polls_when_reported(SMS) as reported:
            r = s.send(four_languages(CITIZENS["app_nl"], "govapp_and_sms"))
            self.assertEqual((r.status, r.json["channels"]), (201, [APP, SMS]), r.raw)
            self.stack.sim('ringring', 'POST', '/_sim/faults', {"dlr_status": "200", "latency_ms": 1300})  # EXPERIMENT
            mid = r.json["id"]
            nid = [a for a in r.json["attempts"] if a["channel"] == APP and a["operation"] == "send"][0][
                "provider_reference"]
            # The SMS's final report, found by the first poll, ends the SMS's
            # polling; the app notification is asked max_polls (3) times.
            g = self.wait_message(mid, lambda m: any(x["channel"] == SMS for x in m["reports"]), "the SMS report")
            self.assertEqual([(x["status"], x["detail"]) for x in g["reports"] if x["channel"] == SMS],
                             [("delivered", "ringring_status_200")])
            wait_for(lambda: self.stored_polls(mid), lambda p: p == (3, None), "the message's three polls",
                     15 * harness.SLOW)
            wait_for(lambda: len(self.sim_requests("/v1/notifications/" + nid, "GET")), lambda n: n == 3,
                     "three polls of the app notification", 5)
            # Each round before the report was stored asked for the SMS (on
            # a slow machine the first poll's report may be stored after the
            # second round began), none after it.
            [(reported_mid, rounds)] = reported()
        self.assertEqual(reported_mid, mid)
        self.assertLess(rounds, 3, "the SMS's report came after the last round: its polling was not seen to end")
        self.assertEqual(s.sim("ringring", "GET", "/_sim/stats").json["status_requests"], rounds)


class BigBodyStack(Stack):
    """smisd takes API bodies up to 1 MiB (limits.max_body_bytes), so that a
    send may carry every language at the longest title and body."""

    def write_conf(self, extra_strategy="", path=None):
        super().write_conf(extra_strategy, path)
        with open(path or self.conf) as f:
            conf = f.read()
        with open(path or self.conf, "w") as f:
            f.write(conf.replace("limits = {", "limits = { max_body_bytes = 1048576;", 1))


class LongestSend(GovAppCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = BigBodyStack().start()

    def test_longest_send_and_long_heads_reach_the_simulator(self):
        # govapp-sim keeps a smaller connection memory pool than MHD's
        # default (it is zeroed for every request). The longest send smisd
        # makes that GovApp's 1 MiB limit lets in: four languages of the
        # longest title and text body (the plaintext carries body and
        # body_text, 281 KB), sealed for two devices (a third would pass
        # 1 MiB); every byte must arrive for both devices to open it.
        phone = "+32470000010"
        citizen = {"phone": phone, "language": "nl", "devices": [{"device_id": "a"}, {"device_id": "b"}]}
        self.assertEqual(self.stack.sim("govapp", "POST", "/_sim/citizens", citizen).status, 200)
        content = {lang: {"title": ((lang + " titel ") * 32)[:256],
                          "body": ("%s regel %05d\n" % (lang, i) * 2185)[:32768]}
                   for i, lang in enumerate(LANGS)}
        self.assertTrue(all((len(c["title"]), len(c["body"])) == (256, 32768) for c in content.values()))
        r = self.stack.send({"recipient": phone, "strategy": "govapp_only", "content": content})
        self.assertEqual((r.status, r.json["status"]), (201, "sent"), r.raw[:500])
        send = self.sends()[-1]
        self.assertEqual(len(send["body"]["envelopes"]), 2)
        self.assertGreater(len(json.dumps(send["body"])), 700000)
        inbox = self.inbox(phone, r.json["id"])
        self.assertEqual(sorted((m["device_id"], m["decrypt_ok"]) for m in inbox), [("a", True), ("b", True)])
        for m in inbox:
            self.assertEqual({k: (c["title"], c["body"]) for k, c in m["content"].items()},
                             {k: (c["title"], c["body"]) for k, c in content.items()})
        # A head of 14 KiB, more than common servers take, gets the normal
        # answer too.
        r = http("POST", self.stack.govapp + "/v1/citizens/lookup", {"phone": phone},
                 {"Authorization": "Bearer " + self.stack.govapp_token, "X-Padding": "p" * 14000})
        self.assertEqual((r.status, r.json["registered"], len(r.json["devices"])), (200, True, 2), r.raw)
        # Bodies up to 1 MiB are read (JSON's whitespace pads this one), one
        # byte more is too large.
        lookup = json.dumps({"phone": phone}).encode()
        auth = {"Authorization": "Bearer " + self.stack.govapp_token}
        for size, status in ((1 << 20, 200), ((1 << 20) + 1, 413)):
            with self.subTest(size=size):
                r = http("POST", self.stack.govapp + "/v1/citizens/lookup",
                         lookup + b" " * (size - len(lookup)), auth)
                self.assertEqual(r.status, status, r.raw[:300])
        self.assertEqual(r.json["error"], "too_large", r.raw)


class SimulatorBodies(GovAppCase):
    """govapp-sim reads a body as GovApp's parser would: one JSON value,
    with JSON's whitespace around it and nothing else."""

    def lookup(self, body, conn=None):
        """(status, answer) of a lookup with this raw body, on `conn` when given."""
        auth = {"Authorization": "Bearer " + self.stack.govapp_token, "Content-Type": "application/json"}
        if conn is None:
            r = http("POST", self.stack.govapp + "/v1/citizens/lookup", body, auth)
            return r.status, r.json
        conn.request("POST", "/v1/citizens/lookup", body, auth)
        r = conn.getresponse()
        return r.status, json.loads(r.read())

    def test_whitespace_after_the_value_and_nothing_else(self):
        good = json.dumps({"phone": CITIZENS["app_nl"]}).encode()
        for tail in (b"\r\n", b" \t\r\n "):
            with self.subTest(tail=tail):
                status, answer = self.lookup(good + tail)
                self.assertEqual((status, answer.get("registered")), (200, True), answer)
        for tail in (b"x", b"{}", b" 1", b"\x00", b"\r\n\x00", b"\x0b", b"\x0c"):
            with self.subTest(tail=tail):
                self.assertEqual(self.lookup(good + tail), (400, {"error": "bad_json"}))

    def test_each_body_parsed_afresh(self):
        # govapp-sim keeps one JSON tokener per thread: on one kept-alive
        # connection (one thread), nothing a refused body left in it may
        # leak into the next one's parse (json-c's reset keeps a pending
        # high surrogate: the next \u escape would get a U+FFFD before it, and
        # this citizen's number would be unknown).
        u = urllib.parse.urlsplit(self.stack.govapp)
        conn = HTTPConnection(u.hostname, u.port, timeout=10)
        self.addCleanup(conn.close)
        good = ('{"phone":"\\u002b%s"}' % CITIZENS["app_nl"][1:]).encode()
        for bad in (b'{"phone":"\\ud83d', b'{"phone":"\\ud83d\\', b'{"phone":"\\uD83D\\u',
                    b'{"phone":"\\u00', b'{"phone":[', good + b"x"):
            with self.subTest(bad=bad):
                self.assertEqual(self.lookup(bad, conn), (400, {"error": "bad_json"}))
                status, answer = self.lookup(good, conn)
                self.assertEqual((status, answer.get("registered")), (200, True), answer)


class WrongSecretStack(Stack):
    """smisd expects another callback secret than the simulator signs with,
    so every callback is refused and statuses can only come by polling."""

    def write_conf(self, extra_strategy="", path=None):
        super().write_conf(extra_strategy, path)
        with open(path or self.conf) as f:
            conf = f.read()
        with open(path or self.conf, "w") as f:
            f.write(conf.replace('callback_secret = "%s"' % GOVAPP_CALLBACK_SECRET,
                                 'callback_secret = "not-the-simulators-secret-42"'))


class PollingOnly(GovAppCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = WrongSecretStack(
            extra_conf="status_poll = { after_s = 1; interval_s = 1; max_polls = 6; };").start()
        cls.stack.expect_log(r"GovApp callback from \S+ refused: signature mismatch")
        cls.stack.expect_log(r"callback refused \(not authentic\)")

    def test_statuses_arrive_by_polling_when_callbacks_fail(self):
        r = self.stack.send(four_languages(CITIZENS["app_nl"], "govapp_only"))
        mid, nid = r.json["id"], r.json["attempts"][1]["provider_reference"]
        self.mark(nid, "nl-phone", "delivered")
        self.mark(nid, "nl-phone", "read")
        cbs = wait_for(lambda: self.callbacks(nid), lambda c: len(c) == 2, "both callbacks to be attempted")
        self.assertEqual([c["http_status"] for c in cbs], [401, 401])
        g = self.wait_message(mid, lambda m: m["status"] == "read", "status read by polling")
        # A poll between the two marks would add a "delivered" report.
        reports = [(x["device"], x["status"], x["detail"]) for x in g["reports"]]
        self.assertEqual(reports[-1], ("nl-phone", "read", "govapp_read"), reports)
        self.assertTrue(set(reports) <= {("nl-phone", "delivered", "govapp_delivered"),
                                         ("nl-phone", "read", "govapp_read")}, reports)
        phone = self.inbox(CITIZENS["app_nl"], mid)[0]
        self.assertEqual(g["reports"][-1]["at"], phone["read_at"])
        self.assert_log_has_no_personal_data()


if __name__ == "__main__":
    unittest.main(verbosity=2)
