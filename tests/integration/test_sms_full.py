"""
End-to-end proof of the SMS issue: smisd, ringring-sim and govapp-sim on
loopback, real HTTP. Run by `make check`.

- encoding and segments: GSM-7 (extension characters cost two septets) and
  UCS-2 (emoji cost two units) at every boundary length; what the API
  answers, what is stored and what the simulated RingRing counted agree;
- the SMS text: explicit sms_text, or title + plain text of the (HTML) body
  with links kept; the language chosen (citizen's, then requested, then the
  institution's order); the sender;
- the per-institution segment cap (refused, never truncated);
- delivery reports: delivered / undelivered through the webhook, forged
  reports refused, the source allow-list, polling when no report comes;
- RingRing's throttling as a temporary failure, the per-recipient limit
  (429 + Retry-After), a bad sender id refused at config load.
"""
import json
import os
import random
import re
import signal
import socket
import sqlite3
import sys
import threading
import time
import unittest
import urllib.request
from http.client import HTTPConnection
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (BUILD, CITIZENS, RINGRING_CALLBACK_TOKEN, RINGRING_KEY,  # noqa: E402
                     SLOW, StackTestCase, http, run_wrapped)

NO_APP = CITIZENS["no_app"]
SIM_ENCODING = {"GSM-7": "TEXT", "UCS-2": "UNICODE"}

# GSM 03.38 default alphabet (both Ç and ç are 0x09) and extension table,
# from shared/reference/gsm-03.38-and-segments.md. An independent model
# of the counting rules, used to cross-check the tables below and the
# random texts.
GSM_BASIC = set("@£$¥èéùìòÇç\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
                "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM_EXT = set("\f^{}\\[~]|€")
EXT_CHARS = "€[]{}^~|\\"


def model_count(text):
    """(encoding, characters, segments) by TS 23.040: 160/153 septets or
    70/67 UTF-16 units, never splitting an escape or a surrogate pair."""
    if all(c in GSM_BASIC or c in GSM_EXT for c in text):
        enc, single, multi = "GSM-7", 160, 153
        costs = [2 if c in GSM_EXT else 1 for c in text]
    else:
        enc, single, multi = "UCS-2", 70, 67
        costs = [2 if ord(c) > 0xFFFF else 1 for c in text]
    if sum(costs) <= single:
        return enc, len(text), 1
    parts, used = 1, 0
    for cost in costs:
        if used + cost > multi:
            parts, used = parts + 1, 0
        used += cost
    return enc, len(text), parts


def gsm_text(n):
    """n GSM-7 default-alphabet characters, several of them 2 bytes of UTF-8
    (counting is in characters, not bytes); no extension character."""
    base = "Uw dossier é@£Δ ßñ Ü 0123 klaar! "
    s = (base * (n // len(base) + 1))[:n]
    return s[:-1] + "x" if s.endswith(" ") else s


def ucs_text(n):
    """n BMP characters, not all GSM-7 (ê, œ, Cyrillic, lowercase Greek) and
    none that a look-alike rewrite would touch."""
    base = "Uw aanvraag is klaar: êœЖλ "
    s = (base * (n // len(base) + 1))[:n]
    return s[:-1] + "x" if s.endswith(" ") else s


EMOJI = "\U0001F600"  # outside the BMP: a surrogate pair in UCS-2

# (label, text, encoding, characters, segments); computed by hand.
CASES = [
    ("gsm 1", "a", "GSM-7", 1, 1),
    ("gsm 159", gsm_text(159), "GSM-7", 159, 1),
    ("gsm 160", gsm_text(160), "GSM-7", 160, 1),
    ("gsm 161", gsm_text(161), "GSM-7", 161, 2),
    ("gsm 306", gsm_text(306), "GSM-7", 306, 2),
    ("gsm 307", gsm_text(307), "GSM-7", 307, 3),
    ("gsm 459", gsm_text(459), "GSM-7", 459, 3),
    ("gsm 460", gsm_text(460), "GSM-7", 460, 4),
    # An extension character fills a lone SMS to 160 septets, not 161.
    ("ext 158+1", "a" * 158 + "€", "GSM-7", 159, 1),
    ("ext 159+1", "a" * 159 + "€", "GSM-7", 160, 2),
    ("ext only 80", "€" * 80, "GSM-7", 80, 1),
    ("ext only 81", "€" * 81, "GSM-7", 81, 2),
    ("ucs 70", ucs_text(70), "UCS-2", 70, 1),
    ("ucs 71", ucs_text(71), "UCS-2", 71, 2),
    ("ucs 134", ucs_text(134), "UCS-2", 134, 2),
    ("ucs 135", ucs_text(135), "UCS-2", 135, 3),
    ("ucs 201", ucs_text(201), "UCS-2", 201, 3),
    ("ucs 202", ucs_text(202), "UCS-2", 202, 4),
    # The surrogate pair of an emoji is never split: 66 units + emoji
    # leaves part 1 at 66 units; 67 + emoji fits parts of 67 exactly.
    ("emoji at 66", ucs_text(66) + EMOJI + "a" * 66, "UCS-2", 133, 3),
    ("emoji at 67", ucs_text(67) + EMOJI + "a" * 65, "UCS-2", 133, 2),
    ("emoji 68+1 = 70 units", ucs_text(68) + EMOJI, "UCS-2", 69, 1),
    ("emoji 69+1 = 71 units", ucs_text(69) + EMOJI, "UCS-2", 70, 2),
    ("35 emoji", EMOJI * 35, "UCS-2", 35, 1),
    ("36 emoji", EMOJI * 36, "UCS-2", 36, 2),
    ("67 emoji", EMOJI * 67, "UCS-2", 67, 3),
]
# Every extension character at the 152/153 boundary of part 1: the same
# 306 septets are 3 segments when the escape pair would straddle it, 2
# when it starts part 2.
for _c in EXT_CHARS:
    CASES.append(("ext %r at 152" % _c, "a" * 152 + _c + "a" * 152, "GSM-7", 305, 3))
    CASES.append(("ext %r at 153" % _c, "a" * 153 + _c + "a" * 151, "GSM-7", 305, 2))


def wait_until(fn, timeout=10.0, interval=0.05):
    """Poll fn() until it returns something true or timeout passes; returns
    its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def rcpt(n):
    return "+32471%06d" % n


def sms_body(text=None, recipient=NO_APP, strategy="sms_only", content=None, **extra):
    body = {"recipient": recipient,
            "content": content or {"nl": {"title": "Titel", "body": "Tekst", "sms_text": text}}}
    if strategy:
        body["strategy"] = strategy
    body.update(extra)
    return body


class SmsCase(StackTestCase):
    """Helpers shared by the classes below (each has its own stack)."""

    def send_attempt(self, answer):
        sends = [a for a in answer["attempts"] if a["channel"] == "ringring" and a["operation"] == "send"]
        self.assertEqual(len(sends), 1, answer)
        return sends[0]

    def sim_record(self, msg_id):
        recs = [q for q in self.stack.sim("ringring", "GET", "/_sim/requests").json
                if q["reference"] == msg_id]
        self.assertLessEqual(len(recs), 1, recs)
        return recs[0] if recs else None

    def stored_sms(self, msg_id):
        self.stack.wait_stored(msg_id)
        con = sqlite3.connect("file:%s?mode=ro" % os.path.join(self.stack.dir, "smis.db"), uri=True)
        try:
            return con.execute("SELECT sms_encoding, sms_chars, sms_parts FROM attempts"
                               " WHERE message_id = ? AND channel = 'ringring' AND operation = 'send'",
                               (msg_id,)).fetchone()
        finally:
            con.close()

    def sent_sms(self, body, inst="inst-a"):
        """Send; the message must be sent by SMS. Returns (answer, sim record)."""
        r = self.stack.send(body, inst=inst)
        self.assertEqual(r.status, 201, r.raw)
        self.assertEqual(r.json["status"], "sent", r.raw)
        self.assertEqual(r.json["channel"], "ringring", r.raw)
        rec = self.sim_record(r.json["id"])
        self.assertIsNotNone(rec, "ringring-sim has no message for " + r.json["id"])
        return r.json, rec

    def assert_counts(self, text, enc, chars, segs, inst="inst-a", recipient=NO_APP):
        answer, rec = self.sent_sms(sms_body(text, recipient), inst)
        want = {"encoding": enc, "characters": chars, "segments": segs}
        self.assertEqual(self.send_attempt(answer)["sms"], want)
        # What RingRing received and counted (lib/gsm7 in the simulator,
        # after its own "Auto" handling).
        self.assertEqual(rec["message"], text)
        self.assertEqual((rec["encoding"], rec["chars"], rec["parts"]), (SIM_ENCODING[enc], chars, segs))
        # Stored: in the GET answer and in the attempts table.
        g = self.stack.get(answer["id"], inst)
        self.assertEqual(g.status, 200, g.raw)
        self.assertEqual(self.send_attempt(g.json)["sms"], want)
        self.assertEqual(self.stored_sms(answer["id"]), (enc, chars, segs))
        return answer, rec

    def wait_status(self, msg_id, status, timeout=10.0, inst="inst-a"):
        got = wait_until(lambda: self.stack.get(msg_id, inst).json["status"] == status, timeout)
        g = self.stack.get(msg_id, inst)
        self.assertTrue(got, "status of %s is %r, not %r: %s" % (msg_id, g.json["status"], status, g.raw))
        return g.json

    def wait_dlr(self, provider_ref, timeout=10.0):
        def find():
            return [d for d in self.stack.sim("ringring", "GET", "/_sim/dlrs").json
                    if d["message_id"] == provider_ref]
        dlrs = wait_until(find, timeout)
        self.assertEqual(len(dlrs), 1, "ringring-sim did not post the report of " + provider_ref)
        return dlrs[0]


class Segments(SmsCase):
    def test_model_agrees_with_the_tables(self):
        # A wrong expectation below would otherwise be a wrong test.
        for label, text, enc, chars, segs in CASES:
            with self.subTest(label):
                self.assertEqual(model_count(text), (enc, chars, segs))

    def test_boundary_lengths(self):
        for label, text, enc, chars, segs in CASES:
            with self.subTest(label):
                self.assert_counts(text, enc, chars, segs)
        # Every message reached RingRing once, as one SMS request.
        self.assertEqual(len(self.stack.sim("ringring", "GET", "/_sim/requests").json), len(CASES))

    def test_random_texts_near_boundaries(self):
        rnd = random.Random(20261128)
        basic = sorted(GSM_BASIC - {"\r"})
        for i in range(30):
            ucs = i % 2 == 1
            target = rnd.choice((66, 67, 68, 69, 70, 71, 132, 133, 134, 135, 136, 199, 200, 201, 202) if ucs else
                                (150, 152, 153, 154, 159, 160, 161, 304, 305, 306, 307, 458, 459, 460, 461))
            chars = []
            for _ in range(target):
                roll = rnd.random()
                if roll < 0.12:
                    chars.append(rnd.choice(EXT_CHARS))
                elif ucs and roll < 0.22:
                    chars.append(rnd.choice((EMOJI, "\U0001F1E7", "\U0001D11E")))
                elif ucs and roll < 0.30:
                    chars.append(rnd.choice("êœЖλ中"))
                else:
                    chars.append(rnd.choice(basic))
            if ucs and all(c in GSM_BASIC or c in GSM_EXT for c in chars):
                chars[rnd.randrange(len(chars))] = "ê"
            text = "x" + "".join(chars).strip() + "x"
            with self.subTest(i=i, text=text):
                self.assert_counts(text, *model_count(text))

    def test_lookalikes_untouched_by_default(self):
        # Replacement is off by default: the text travels as written, as
        # UCS-2, and RingRing must not remap it on its side either.
        text = "Uw \u2018dossier\u2019 \u2013 klaar\u2026"
        answer, rec = self.assert_counts(text, "UCS-2", 21, 1)
        self.assertEqual(rec["messageEncoding"], "Unicode")
        # A text that is GSM-7 anyway keeps "Auto".
        answer, rec = self.assert_counts("Uw dossier is klaar", "GSM-7", 19, 1)
        self.assertEqual(rec["messageEncoding"], "Auto")


class LookalikesOn(SmsCase):
    stack_kwargs = {"channels_extra": {"ringring": {"replace_lookalikes": True}}}

    def test_typography_rewritten_to_gsm7(self):
        answer, rec = self.sent_sms(sms_body("Uw \u2018dossier\u2019 \u2013 klaar\u2026\u00a0ok"))
        self.assertEqual(rec["message"], "Uw 'dossier' - klaar... ok")
        self.assertEqual(self.send_attempt(answer)["sms"], {"encoding": "GSM-7", "characters": 26, "segments": 1})
        self.assertEqual((rec["encoding"], rec["chars"], rec["parts"]), ("TEXT", 26, 1))
        # All or nothing: a real non-GSM character keeps the text as is.
        text = "For\u00eat \u2013 ok"
        answer, rec = self.sent_sms(sms_body(text))
        self.assertEqual(rec["message"], text)
        self.assertEqual(self.send_attempt(answer)["sms"], {"encoding": "UCS-2", "characters": 10, "segments": 1})
        self.assertEqual((rec["encoding"], rec["chars"], rec["parts"]), ("UNICODE", 10, 1))


class TextAndLanguage(SmsCase):
    def test_derived_from_title_and_html_body(self):
        body = ('<h1>Goedgekeurd</h1><p>Beste burger,<br>uw aanvraag is <strong>goedgekeurd</strong>.</p>'
                '<p>Meer info: <a href="https://www.belgium.be/nl">belgium.be</a> of '
                '<a href="https://www.belgium.be/nl/contact">bel ons</a><script>alert(1)</script></p>')
        content = {"nl": {"title": "Uw aanvraag", "body": body, "format": "html"}}
        answer, rec = self.sent_sms(sms_body(content=content))
        want = ("Uw aanvraag\nGoedgekeurd\n\nBeste burger,\nuw aanvraag is goedgekeurd.\n\n"
                "Meer info: belgium.be (https://www.belgium.be/nl) of bel ons (https://www.belgium.be/nl/contact)")
        self.assertEqual(rec["message"], want)
        enc, chars, segs = model_count(want)
        self.assertEqual(self.send_attempt(answer)["sms"], {"encoding": enc, "characters": chars, "segments": segs})
        self.assertEqual((rec["chars"], rec["parts"]), (chars, segs))
        self.assertNotIn("alert", rec["message"])
        self.assertNotIn("<", rec["message"])

    def test_derived_from_plain_text(self):
        content = {"nl": {"title": "Titel", "body": "Tekst met \u20ac 5 [ref]"}}
        answer, rec = self.sent_sms(sms_body(content=content))
        self.assertEqual(rec["message"], "Titel\nTekst met \u20ac 5 [ref]")
        self.assertEqual(self.send_attempt(answer)["sms"], {"encoding": "GSM-7", "characters": 25, "segments": 1})
        # An empty sms_text is no text: derived as well.
        content["nl"]["sms_text"] = ""
        answer, rec = self.sent_sms(sms_body(content=content))
        self.assertEqual(rec["message"], "Titel\nTekst met \u20ac 5 [ref]")

    def test_explicit_sms_text_per_language(self):
        content = {"nl": {"title": "Titel", "body": "Lange tekst", "sms_text": "Kort: zie de app"},
                   "fr": {"title": "Titre", "body": "Long texte"}}
        answer, rec = self.sent_sms(sms_body(content=content))
        self.assertEqual(rec["message"], "Kort: zie de app")
        # The French text has no sms_text of its own: derived, not the Dutch one.
        answer, rec = self.sent_sms(sms_body(content=content, language="fr"))
        self.assertEqual(rec["message"], "Titre\nLong texte")

    def test_citizen_language_beats_requested(self):
        content = {l: {"title": "T-" + l, "body": "B-" + l} for l in ("nl", "fr", "de", "en")}
        # app_off: the lookup says "de" (notifications off, so SMS).
        answer, rec = self.sent_sms(sms_body(recipient=CITIZENS["app_off"], strategy="govapp_first",
                                             content=content, language="nl"))
        lookup = answer["attempts"][0]
        self.assertEqual((lookup["operation"], lookup["language"]), ("lookup", "de"), answer)
        self.assertEqual(rec["message"], "T-de\nB-de")
        # bad_key: "en" learnt by the lookup, the app send fails, SMS in en.
        answer, rec = self.sent_sms(sms_body(recipient=CITIZENS["bad_key"], strategy="govapp_first",
                                             content=content, language="fr"))
        self.assertEqual(rec["message"], "T-en\nB-en")
        # The citizen's language has no text: the requested one.
        two = {l: content[l] for l in ("nl", "fr")}
        answer, rec = self.sent_sms(sms_body(recipient=CITIZENS["app_off"], strategy="govapp_first",
                                             content=two, language="fr"))
        self.assertEqual(rec["message"], "T-fr\nB-fr")
        # Without a lookup (sms_only) nothing is known of the citizen.
        answer, rec = self.sent_sms(sms_body(recipient=CITIZENS["app_off"], content=content, language="fr"))
        self.assertEqual(rec["message"], "T-fr\nB-fr")

    def test_requested_language_beats_institution_order(self):
        content = {l: {"title": "T-" + l, "body": "B-" + l} for l in ("en", "fr", "nl")}
        answer, rec = self.sent_sms(sms_body(content=content, language="fr"))
        self.assertEqual(rec["message"], "T-fr\nB-fr")
        # No preference: the institution's order (inst-a: nl, fr, de, en),
        # not the order of the request's JSON.
        answer, rec = self.sent_sms(sms_body(content=content))
        self.assertEqual(rec["message"], "T-nl\nB-nl")
        # A requested language without a text falls back to that order.
        answer, rec = self.sent_sms(sms_body(content={l: content[l] for l in ("en", "fr")}, language="de"))
        self.assertEqual(rec["message"], "T-fr\nB-fr")

    def test_sender(self):
        answer, rec = self.sent_sms(sms_body("Hallo"))
        self.assertEqual((rec["senderId"], rec["from"]), ("SMISTest", None))
        answer, rec = self.sent_sms(sms_body("Hallo", rcpt(1)), inst="inst-b")
        self.assertEqual((rec["senderId"], rec["from"]), (None, "32470999999"))


class SegmentCap(SmsCase):
    """inst-b: at most 2 segments, languages de, en, fr, nl; inst-a: no cap."""
    stack_kwargs = {"institutions_extra": {"inst-b": {"max_sms_segments": 2,
                                                      "languages": ["de", "en", "fr", "nl"]}}}

    def assert_refused(self, text, enc, chars, segs, n):
        r = self.stack.send(sms_body(text, rcpt(n)), inst="inst-b")
        self.assertEqual(r.status, 201, r.raw)
        self.assertEqual(r.json["status"], "failed", r.raw)
        self.assertEqual(r.json["error"], "sms_too_many_segments", r.raw)
        a = self.send_attempt(r.json)
        self.assertEqual(a["outcome"], "permanent_failure")
        self.assertEqual(a["sms"], {"encoding": enc, "characters": chars, "segments": segs})
        self.assertIn("%d segments" % segs, a["detail"])
        self.assertIn("allows 2", a["detail"])
        # Refused, not truncated: RingRing never saw it.
        self.assertIsNone(self.sim_record(r.json["id"]))
        g = self.stack.get(r.json["id"], "inst-b")
        self.assertEqual((g.json["status"], g.json["reports"]), ("failed", []))

    def test_cap(self):
        pairs = [
            (gsm_text(306), "GSM-7", 306, gsm_text(307), 307, 3),
            (ucs_text(134), "UCS-2", 134, ucs_text(135), 135, 3),
            ("a" * 153 + "€" + "a" * 151, "GSM-7", 305, "a" * 152 + "€" + "a" * 152, 305, 3),
            (ucs_text(67) + EMOJI + "a" * 65, "UCS-2", 133, ucs_text(66) + EMOJI + "a" * 66, 133, 3),
        ]
        n = 0
        for ok_text, enc, ok_chars, bad_text, bad_chars, bad_segs in pairs:
            with self.subTest(enc=enc, chars=ok_chars):
                n += 1
                self.assert_counts(ok_text, enc, ok_chars, 2, inst="inst-b", recipient=rcpt(n))
                n += 1
                self.assert_refused(bad_text, enc, bad_chars, bad_segs, n)
        # inst-a has no cap.
        self.assert_counts(gsm_text(460), "GSM-7", 460, 4)

    def test_institution_language_order(self):
        content = {l: {"title": "T-" + l, "body": "B-" + l} for l in ("nl", "fr", "de")}
        answer, rec = self.sent_sms(sms_body(recipient=rcpt(100), content=content), inst="inst-b")
        self.assertEqual(rec["message"], "T-de\nB-de")
        answer, rec = self.sent_sms(sms_body(recipient=rcpt(101), content=content, language="nl"), inst="inst-b")
        self.assertEqual(rec["message"], "T-nl\nB-nl")
        answer, rec = self.sent_sms(sms_body(recipient=rcpt(102), content=content))
        self.assertEqual(rec["message"], "T-nl\nB-nl")


class DeliveryReports(SmsCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stack.expect_log(r"callback refused \(not authentic\)")
        cls.stack.expect_log(r"callback malformed")

    def callback(self, path, body, method="POST"):
        return http(method, self.stack.base + "/v1/callbacks/" + path, body)

    def test_delivered_and_undelivered(self):
        for code, status in (("200", "delivered"), ("201", "delivered"), ("300", "undelivered"),
                             ("350", "undelivered"), ("450", "undelivered"), ("850", "undelivered")):
            with self.subTest(code=code):
                self.stack.sim("ringring", "POST", "/_sim/faults", {"dlr_status": code})
                answer, rec = self.sent_sms(sms_body("Uw dossier " + code))
                ref = self.send_attempt(answer)["provider_reference"]
                self.assertEqual(ref, rec["message_id"])
                g = self.wait_status(answer["id"], status)
                self.assertEqual(len(g["reports"]), 1, g)
                rep = g["reports"][0]
                self.assertEqual((rep["channel"], rep["status"], rep["detail"]),
                                 ("ringring", status, "ringring_status_" + code))
                self.assertTrue(rep["at"].endswith("Z"))
                dlr = self.wait_dlr(ref)
                self.assertEqual((dlr["status_code"], dlr["http_status"], dlr["ok"]), (code, 200, True))
                self.assertTrue(dlr["url"].endswith("/v1/callbacks/ringring/" + RINGRING_CALLBACK_TOKEN))

    def test_pending_codes_change_nothing(self):
        for code in ("100", "950"):
            with self.subTest(code=code):
                self.stack.sim("ringring", "POST", "/_sim/faults", {"dlr_status": code})
                answer, rec = self.sent_sms(sms_body("Uw dossier " + code))
                dlr = self.wait_dlr(rec["message_id"])
                self.assertEqual(dlr["http_status"], 200)
                # Then a final report on the same message still applies.
                r = self.callback("ringring/" + RINGRING_CALLBACK_TOKEN,
                                  {"MessageId": rec["message_id"], "Reference": answer["id"], "StatusCode": "200"})
                self.assertEqual(r.status, 200, r.raw)
                g = self.wait_status(answer["id"], "delivered")
                self.assertEqual([x["status"] for x in g["reports"]], ["delivered"])

    def test_report_overtaking_the_answer(self):
        self.stack.sim("ringring", "POST", "/_sim/faults", {"dlr_delay_ms": 0})
        answer, rec = self.sent_sms(sms_body("Snel"))
        self.wait_status(answer["id"], "delivered")

    def test_head_records_nothing(self):
        """A HEAD is not a webhook: 405 with the methods a callback takes,
        and the report its query carries is not recorded, where the same
        query by GET is (statusMethod GET)."""
        self.stack.sim("ringring", "POST", "/_sim/faults", {"dlr_delay_ms": 600000})
        answer, rec = self.sent_sms(sms_body("Kopje"))
        path = "ringring/%s?MessageId=%s&Reference=%s&StatusCode=200" % (
            RINGRING_CALLBACK_TOKEN, rec["message_id"], answer["id"])
        r = self.callback(path, None, method="HEAD")
        self.assertEqual((r.status, r.headers["Allow"]), (405, "GET, POST"))
        g = self.stack.get(answer["id"])
        self.assertEqual((g.json["status"], g.json["reports"]), ("sent", []))
        r = self.callback(path, None, method="GET")
        self.assertEqual(r.status, 200, r.raw)
        self.wait_status(answer["id"], "delivered")

    def test_forged_reports_refused(self):
        # The simulator's own report must not come during this test.
        self.stack.sim("ringring", "POST", "/_sim/faults", {"dlr_delay_ms": 600000})
        answer, rec = self.sent_sms(sms_body("Echt"))
        forged = {"MessageId": rec["message_id"], "Reference": answer["id"], "StatusCode": "200",
                  "StatusDescription": "Delivered"}
        tok = RINGRING_CALLBACK_TOKEN
        for path in ("ringring/" + "x" * len(tok), "ringring/" + tok[:-1], "ringring/" + tok + "x",
                     "ringring/" + tok + "/", "ringring/" + tok.upper(), "ringring", "ringring/",
                     "ringring/" + tok[::-1]):
            with self.subTest(path=path):
                r = self.callback(path, forged)
                self.assertEqual(r.status, 401, r.raw)
                self.assertEqual(r.json["code"], "callback_rejected")
        r = self.callback("ringring/wrong-token-000000?MessageId=%s&Reference=%s&StatusCode=200"
                          % (rec["message_id"], answer["id"]),
                          None, method="GET")
        self.assertEqual(r.status, 401, r.raw)
        r = self.callback("nosuchchannel/" + tok, forged)
        self.assertEqual(r.status, 404, r.raw)
        # Authentic but not a report: 400, nothing stored.
        r = self.callback("ringring/" + tok, {"From": "32470000004", "Message": "STOP"})
        self.assertEqual((r.status, r.json["code"]), (400, "callback_malformed"), r.raw)
        g = self.stack.get(answer["id"])
        self.assertEqual((g.json["status"], g.json["reports"]), ("sent", []))
        # The authentic "300" now makes it undelivered. Had any forged
        # "200" been queued before it, the message would be delivered
        # (status only moves forward) with a delivered report.
        # Reports name the message by the Reference SMIS sent (its id): one
        # without it, or naming no message of SMIS's, changes nothing.
        r = self.callback("ringring/" + tok, {"MessageId": rec["message_id"], "Reference": None, "StatusCode": "200"})
        self.assertEqual((r.status, r.json["code"]), (400, "callback_malformed"), r.raw)
        r = self.callback("ringring/" + tok, {"MessageId": rec["message_id"], "StatusCode": "200"})
        self.assertEqual((r.status, r.json["code"]), (400, "callback_malformed"), r.raw)
        self.stack.expect_log(r"callback for an unknown message refused")
        self.stack.wait_idle()  # else it is kept as an orphan (harness.py)
        r = self.callback("ringring/" + tok, {"MessageId": rec["message_id"], "Reference": "msg_" + "0" * 26,
                                              "StatusCode": "200"})
        self.assertEqual((r.status, r.json["code"]), (404, "unknown_message"), r.raw)
        r = self.callback("ringring/" + tok, {"MessageId": rec["message_id"], "Reference": answer["id"],
                                              "StatusCode": "300"})
        self.assertEqual((r.status, r.json), (200, {"accepted": 1}), r.raw)
        g = self.wait_status(answer["id"], "undelivered")
        self.assertEqual([(x["status"], x["detail"]) for x in g["reports"]],
                         [("undelivered", "ringring_status_300")])
        self.assertEqual(self.stack.sim("ringring", "GET", "/_sim/dlrs").json, [])


class StoreBeforeLookupRef(SmsCase):
    """A database written before attempts.lookup_ref (reports matched through an
    index on provider_ref) is brought forward at start, and a report for a
    message stored then still finds it."""

    def test_old_database_migrated(self):
        self.stack.sim("ringring", "POST", "/_sim/faults", {"dlr_delay_ms": 600000})
        answer, rec = self.sent_sms(sms_body("Oud"))
        self.stack.smisd.send_signal(signal.SIGTERM)
        self.assertEqual(self.stack.smisd.wait(timeout=60), 0)
        db = os.path.join(self.stack.dir, "smis.db")
        con = sqlite3.connect(db)
        try:
            # The schema as it was: no lookup_ref, the index on provider_ref.
            con.executescript("DROP INDEX attempts_lookup; ALTER TABLE attempts DROP COLUMN lookup_ref;"
                              " CREATE INDEX attempts_provider ON attempts(channel, provider_ref)"
                              " WHERE provider_ref IS NOT NULL;")
        finally:
            con.close()
        self.stack.start_smisd()
        self.assertRegex(self.stack.log_text(), r"attempts\.lookup_ref added")
        con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
        try:
            indexes = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
            row = con.execute("SELECT provider_ref, lookup_ref FROM attempts WHERE message_id = ?"
                              " AND operation = 'send'", (answer["id"],)).fetchone()
        finally:
            con.close()
        self.assertIn("attempts_lookup", indexes)
        self.assertNotIn("attempts_provider", indexes)
        self.assertEqual(row, (rec["message_id"], rec["message_id"]))
        # RingRing reports by the message's id: found by its primary key.
        r = http("POST", self.stack.base + "/v1/callbacks/ringring/" + RINGRING_CALLBACK_TOKEN,
                 {"MessageId": rec["message_id"], "Reference": answer["id"], "StatusCode": "200"})
        self.assertEqual((r.status, r.json), (200, {"accepted": 1}), r.raw)
        self.wait_status(answer["id"], "delivered")
        # A message stored now has no lookup key: nothing random to index.
        answer2, rec2 = self.sent_sms(sms_body("Nieuw"))
        self.stack.wait_stored(answer2["id"])
        con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
        try:
            row = con.execute("SELECT provider_ref, lookup_ref FROM attempts WHERE message_id = ?"
                              " AND operation = 'send'", (answer2["id"],)).fetchone()
        finally:
            con.close()
        self.assertEqual(row, (rec2["message_id"], None))


class ThrottlingAndLimits(SmsCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stack.expect_log(r"upstream send failed")

    def test_throttling_is_temporary(self):
        for faults in ({"http_status": 403, "result_code": 30}, {"http_status": 403},
                       {"result_code": 30, "http_status": 200}):
            with self.subTest(faults=faults):
                self.stack.sim("ringring", "POST", "/_sim/faults", faults)
                r = self.stack.send(sms_body("Hallo"))
                self.assertEqual(r.status, 201, r.raw)
                self.assertEqual((r.json["status"], r.json["error"]), ("failed", "ringring_throttled"), r.raw)
                a = self.send_attempt(r.json)
                self.assertEqual((a["outcome"], a["error"]), ("temporary_failure", "ringring_throttled"))
                self.assertNotIn("provider_reference", a)
                self.assertEqual(self.stack.get(r.json["id"]).json["status"], "failed")
        self.assertEqual(self.stack.sim("ringring", "GET", "/_sim/requests").json, [])
        # Contrast: a blacklisted number is permanent.
        self.stack.sim("ringring", "POST", "/_sim/faults", {"result_code": 32})
        a = self.send_attempt(self.stack.send(sms_body("Hallo")).json)
        self.assertEqual((a["outcome"], a["error"]), ("permanent_failure", "ringring_result_32"))
        # Once RingRing accepts again, so does SMIS.
        self.stack.sim("ringring", "DELETE", "/_sim/faults")
        self.sent_sms(sms_body("Hallo"))

    def test_per_recipient_limit(self):
        # inst-c: 3 messages per recipient per hour. The same number written
        # three ways is one recipient.
        for form in ("+32471234567", "0471 23 45 67", "0032471234567"):
            r = self.stack.send(sms_body("Hallo", form), inst="inst-c")
            self.assertEqual((r.status, r.json["status"]), (201, "sent"), r.raw)
        for _ in range(2):
            r = self.stack.send(sms_body("Hallo", "+32 471 23 45 67"), inst="inst-c")
            self.assertEqual(r.status, 429, r.raw)
            self.assertTrue(r.headers["Content-Type"].startswith("application/problem+json"))
            self.assertEqual(r.json["code"], "recipient_rate_limited")
            self.assertTrue(re.fullmatch(r"[0-9]+", r.headers["Retry-After"]), r.headers["Retry-After"])
            self.assertTrue(3000 < int(r.headers["Retry-After"]) <= 3600, r.headers["Retry-After"])
        sent = [q for q in self.stack.sim("ringring", "GET", "/_sim/requests").json if q["to"] == "32471234567"]
        self.assertEqual(len(sent), 3)
        # Another recipient of the same institution still gets through.
        r = self.stack.send(sms_body("Hallo", "+32471234568"), inst="inst-c")
        self.assertEqual((r.status, r.json["status"]), (201, "sent"), r.raw)

    def test_simulator_refuses_bad_keys_and_trailing_bytes(self):
        # ringring-sim answers as RingRing would: the key must be the whole
        # key (no prefix, no extension), the body one JSON value.
        url = self.stack.ringring + "/v1/message"
        good = ('{"apiKey":"%s","to":"32470123456","message":"Hallo"}' % RINGRING_KEY).encode()
        for key in (RINGRING_KEY[:-1], RINGRING_KEY + "x", "", RINGRING_KEY.upper()):
            with self.subTest(key=key):
                r = http("POST", url, good.replace(RINGRING_KEY.encode(), key.encode()))
                self.assertEqual((r.status, r.json["ResultCode"]), (400, 12), r.raw)
        for tail in (b"x", b"{}", b" 1", b"\x00"):
            with self.subTest(tail=tail):
                r = http("POST", url, good + tail)
                self.assertEqual((r.status, r.json["ResultCode"]), (400, 13), r.raw)
        self.assertEqual(self.stack.sim("ringring", "GET", "/_sim/requests").json, [])
        r = http("POST", url, good + b"\r\n")  # JSON's own whitespace is fine
        self.assertEqual((r.status, r.json["ResultCode"]), (200, 0), r.raw)

    def test_simulator_parses_each_body_afresh(self):
        # ringring-sim keeps one JSON tokener per thread: on one kept-alive
        # connection (one thread), nothing a refused body left in it may
        # leak into the next one's parse (json-c's reset keeps a pending
        # high surrogate: the next \u escape got a U+FFFD before it).
        # Nesting deeper than 15 levels is refused, as before.
        u = urlsplit(self.stack.ringring)
        conn = HTTPConnection(u.hostname, u.port, timeout=10)
        self.addCleanup(conn.close)
        good = '{"apiKey":"%s","to":"32470123456","message":"Hallo","reference":"\\u0041\\u00e9"}' % RINGRING_KEY

        def post(body):
            conn.request("POST", "/v1/message", body.encode(), {"Content-Type": "application/json"})
            r = conn.getresponse()
            answer = json.loads(r.read())
            return r.status, answer["ResultCode"], answer.get("Reference")

        bad = [good[:-1] + ',"x":' + "[" * 16 + "]" * 16 + "}", '{"apiKey":"', good[:30],
               good + "x", good + "{}", "[", '{"a":[1,', '"abc', '{"apiKey":"\\ud83d',
               '{"apiKey":"\\ud83d\\', '{"apiKey":"\\ud83d\\u00', '{"apiKey":"\\u00']
        for body in [good[:-1] + ',"x":' + "[" * 15 + "]" * 15 + "}"] + bad:
            with self.subTest(body=body[:60]):
                self.assertEqual(post(body), (200, 0, "A\u00e9") if body not in bad else (400, 13, None))
                self.assertEqual(post(good), (200, 0, "A\u00e9"))

    def test_simulator_takes_long_heads_and_bodies(self):
        # ringring-sim keeps a smaller connection memory pool than MHD's
        # default (it is zeroed for every request): a head of 14 KiB, more
        # than common servers take, and the longest send (1000 recipients,
        # 758 characters each a \u-escaped surrogate pair) still get the
        # normal answer.
        url = self.stack.ringring + "/v1/message"
        to = ",".join(str(32470000000 + i) for i in range(1000))
        text = "\U0001F600" * 758
        body = json.dumps({"apiKey": RINGRING_KEY, "to": to, "message": text}).encode()
        self.assertGreater(len(body), 20000)
        r = http("POST", url, body, headers={"X-Padding": "p" * 14000})
        self.assertEqual((r.status, r.json["ResultCode"], r.json["MessageCount"]), (200, 0, 1000),
                         r.raw[:300])
        rec = self.stack.sim("ringring", "GET", "/_sim/requests?limit=1").json[0]
        self.assertEqual((rec["message"], rec["chars"], rec["encoding"]), (text, 758, "UNICODE"))
        # Bodies up to 64 KiB are read (JSON's whitespace pads this one), one
        # byte more is too large.
        for size, status, code in ((65536, 200, 0), (65537, 413, 13)):
            with self.subTest(size=size):
                r = http("POST", url, body + b" " * (size - len(body)))
                self.assertEqual((r.status, r.json["ResultCode"]), (status, code), r.raw[:300])

    def test_simulator_counts_each_encoding(self):
        # What ringring-sim bills for each messageEncoding, for every
        # recipient of a request: Auto and Text remap typography (… to ...)
        # only when the whole text then fits GSM-7, Unicode never does.
        url = self.stack.ringring + "/v1/message"
        cases = [("Caf\u00e9 \u2026", "Auto", ("TEXT", 8, 1)),
                 ("Caf\u00e9 \u2026", "Unicode", ("UNICODE", 6, 1)),
                 ("\u2026 \u00ea", "Auto", ("UNICODE", 3, 1)),
                 ("\u00ea \u2026", "Text", ("TEXT", 3, 1)),
                 ("Hallo", "Unicode", ("UNICODE", 5, 1)),
                 ("\u2019" * 100, None, ("TEXT", 100, 1)),
                 ("\u2019" * 100, "Unicode", ("UNICODE", 100, 2))]
        for text, enc, want in cases:
            with self.subTest(text=text[:8], enc=enc):
                body = {"apiKey": RINGRING_KEY, "to": "32470123456,32470123457", "message": text}
                if enc:
                    body["messageEncoding"] = enc
                r = http("POST", url, body)
                self.assertEqual((r.status, r.json["MessageCount"]), (200, 2), r.raw)
                recs = self.stack.sim("ringring", "GET", "/_sim/requests").json[-2:]
                self.assertEqual([(q["encoding"], q["chars"], q["parts"]) for q in recs], [want] * 2)

    def test_simulator_send_answer_bytes(self):
        # The send answer, byte for byte as ringring-sim has always written
        # it (json-c's plain serialisation): keys in this order, no spaces,
        # '/' and non-ASCII as they are, '"', '\\' and control characters
        # escaped, the short forms where JSON has one.
        url = self.stack.ringring + "/v1/message"
        refs = (None, "".join(map(chr, range(1, 65))), "".join(map(chr, range(64, 128))),
                "caf\u00e9 \U0001F600 \u2028 a/b")
        for ref in refs:
            with self.subTest(ref=ref):
                body = {"apiKey": RINGRING_KEY, "to": "32470123456,32470123457", "message": "Hallo"}
                if ref is not None:
                    body["reference"] = ref
                r = http("POST", url, body)
                ids = re.findall(r'"MessageId":"([0-9A-F-]{36})"', r.raw)
                msgs = [{"MessageId": i, "To": to, "ResultCode": 0, "ResultDescription": "Success"}
                        for i, to in zip(ids, ("32470123456", "32470123457"))]
                want = {"MessageCount": 2, "Reference": ref, "Messages": msgs,
                        "ResultCode": 0, "ResultDescription": "Success"}
                self.assertEqual(r.raw, json.dumps(want, ensure_ascii=False, separators=(",", ":")))

    def test_simulator_keys_in_any_case(self):
        # A send's keys match in any case (RingRing's SDKs disagree); of two
        # spellings of one key the first in the body counts, even a null.
        url = self.stack.ringring + "/v1/message"
        ok = ('{"APIKEY":"%s","TO":"32470123456","Message":"Hallo","REFERENCE":"r1",'
              '"reference":"r2","senderid":"Gent"}' % RINGRING_KEY)
        r = http("POST", url, ok.encode())
        self.assertEqual((r.status, r.json["ResultCode"], r.json["Reference"]), (200, 0, "r1"), r.raw)
        rec = self.stack.sim("ringring", "GET", "/_sim/requests").json[-1]
        self.assertEqual((rec["reference"], rec["senderId"], rec["to"]), ("r1", "Gent", "32470123456"))
        for body, code in (('{"apikey":"bad","apiKey":"%s","to":"32470123456","message":"x"}', 12),
                           ('{"apiKey":"%s","to":"32470123456","message":"x","statusMethod":null,'
                            '"StatusMethod":"PUT"}', 0),
                           ('{"apiKey":"%s","to":"32470123456","message":"x","from":"12ab","FROM":"1234"}', 5)):
            with self.subTest(body=body):
                r = http("POST", url, (body % RINGRING_KEY).encode())
                self.assertEqual(r.json["ResultCode"], code, r.raw)

    def check_config(self, old, new):
        """smisd --check-config on the stack's configuration with `old`
        (found once) replaced by `new`; returns (process, path, line of new)."""
        path = os.path.join(self.stack.dir, "check.conf")
        self.stack.write_conf(path=path)
        with open(path) as f:
            text = f.read()
        self.assertEqual(text.count(old), 1)
        text = text.replace(old, new)
        with open(path, "w") as f:
            f.write(text)
        line = text[:text.index(new)].count("\n") + 1
        p = run_wrapped([os.path.join(BUILD, "smisd"), "--check-config", "-c", path])
        return p, path, line

    def check_sender(self, sender):
        return self.check_config('sender = "SMISTest";', 'sender = "%s";' % sender)

    def test_sender_checked_at_config_load(self):
        for sender in ("TooLongSender123", "Gemeente Gent", "Stad-Gent", "1234567890123456", "Caf\u00e9"):
            with self.subTest(sender=sender):
                p, path, line = self.check_sender(sender)
                self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
                self.assertIn("%s:%d:" % (path, line), p.stderr)
                self.assertIn("'sender'", p.stderr)
                self.assertIn("inst-a", p.stderr)
        for sender in ("Gemeente123", "SMIS", "32470999999", "8686"):
            with self.subTest(sender=sender):
                p, path, line = self.check_sender(sender)
                self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_empty_list_entries_refused_at_config_load(self):
        # A doubled or trailing comma in a list setting is a typo: refused
        # where it is, not read as one entry fewer.
        key = 'api_key = "%s";' % RINGRING_KEY
        for setting in ('language_order = "nl,fr,";', 'language_order = "nl,,fr";',
                        'callback_allow = "127.0.0.1, ";'):
            with self.subTest(setting=setting):
                p, path, line = self.check_config(key, key + " " + setting)
                self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
                name = setting.split(" ")[0]
                self.assertIn("%s:%d:" % (path, line), p.stderr)
                self.assertIn("'%s' has an empty entry" % name, p.stderr)
        p, path, line = self.check_config(key, key + ' language_order = " nl , fr ";')
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_status_url_without_token_refused_at_config_load(self):
        # With callback_token set, a status_url whose path does not end in
        # it would have every delivery report refused (401): a load error.
        url = "/v1/callbacks/ringring/%s\";" % RINGRING_CALLBACK_TOKEN
        for wrong in ("/v1/callbacks/ringring\";", "/v1/callbacks/ringring/\";",
                      "/v1/callbacks/ringring/%s/\";" % RINGRING_CALLBACK_TOKEN,
                      "/v1/callbacks/ringring?t=%s\";" % RINGRING_CALLBACK_TOKEN):
            with self.subTest(wrong=wrong):
                p, path, line = self.check_config(url, wrong)
                self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
                self.assertIn("%s:%d:" % (path, line), p.stderr)
                self.assertIn("'status_url' must end in", p.stderr)
                self.assertNotIn(RINGRING_CALLBACK_TOKEN, p.stderr)
        p, path, line = self.check_config(url, url[:-2] + '?src=rr";')
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


class AllowListRefuses(SmsCase):
    """callback_allow names another address: the simulator's reports (from
    127.0.0.1) are refused even with the right token."""
    stack_kwargs = {"channels_extra": {"ringring": {"callback_allow": "10.9.9.9"}}}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stack.expect_log(r"callback refused \(not authentic\)")

    def test_report_from_elsewhere_refused(self):
        answer, rec = self.sent_sms(sms_body("Hallo"))
        dlr = self.wait_dlr(rec["message_id"])
        self.assertEqual((dlr["http_status"], dlr["ok"]), (401, False), dlr)
        r = http("POST", self.stack.base + "/v1/callbacks/ringring/" + RINGRING_CALLBACK_TOKEN,
                 {"MessageId": rec["message_id"], "Reference": answer["id"], "StatusCode": "200"})
        self.assertEqual((r.status, r.json["code"]), (401, "callback_rejected"), r.raw)
        g = self.stack.get(answer["id"])
        self.assertEqual((g.json["status"], g.json["reports"]), ("sent", []))
        self.assertRegex(self.stack.log_text(), r"callback refused \(not authentic\)")


class LostReportPolled(SmsCase):
    """status_url set, but the report never gets in (refused here): polling
    is the fallback."""
    stack_kwargs = {"channels_extra": {"ringring": {"callback_allow": "10.9.9.9"}},
                    "extra_conf": "status_poll = { after_s = 1; interval_s = 1; max_polls = 3; };"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stack.expect_log(r"callback refused \(not authentic\)")

    def test_polling_after_a_lost_report(self):
        self.stack.sim("ringring", "POST", "/_sim/faults", {"dlr_status": "300"})
        answer, rec = self.sent_sms(sms_body("Hallo"))
        self.assertEqual(self.wait_dlr(rec["message_id"])["http_status"], 401)
        g = self.wait_status(answer["id"], "undelivered", timeout=20)
        self.assertEqual([(x["status"], x["detail"]) for x in g["reports"]],
                         [("undelivered", "ringring_status_300")])


class AllowListAccepts(SmsCase):
    stack_kwargs = {"channels_extra": {"ringring": {"callback_allow": "192.0.2.1, 127.0.0.0/8, ::1"}}}

    def test_report_from_listed_address(self):
        answer, rec = self.sent_sms(sms_body("Hallo"))
        self.wait_status(answer["id"], "delivered")
        self.assertEqual(self.wait_dlr(rec["message_id"])["http_status"], 200)


class Polling(SmsCase):
    """No status_url: no webhook, StatusMessage polling finds the outcome."""
    # Rounds SLOW times further apart where everything is slower (valgrind):
    # the first round's report is then stored before the last round.
    ROUND_S = max(1, round(SLOW))
    stack_kwargs = {"extra_conf": "status_poll = { after_s = 1; interval_s = %d; max_polls = 3; };" % ROUND_S,
                    "ringring_status_url": False}

    def status_requests(self):
        return self.stack.sim("ringring", "GET", "/_sim/stats").json["status_requests"]

    def test_delivered_and_undelivered_by_polling(self):
        for code, status in (("200", "delivered"), ("300", "undelivered")):
            with self.subTest(code=code):
                self.polling_ends_at_the_report(code, status)

    def test_status_answered_late(self):
        """RingRing answers the status request 1.1 s late, after the next
        round began (rounds 1 s apart; not under valgrind, where they are
        ROUND_S apart), as on a slow machine: that round asks too, and none
        after the report is stored."""
        self.polling_ends_at_the_report("200", "delivered", late_ms=1100)
        wait_until(lambda: self.stack.sim("ringring", "GET", "/_sim/stats").json["held"] == 0)

    def polling_ends_at_the_report(self, code, status, late_ms=0):
        with self.stack.polls_when_reported("ringring") as reported:
            self.stack.sim("ringring", "POST", "/_sim/reset", {})
            self.stack.sim("ringring", "POST", "/_sim/faults", {"dlr_status": code})
            answer, rec = self.sent_sms(sms_body("Hallo " + code))
            self.assertIsNone(rec["statusUrl"])
            if late_ms:
                self.stack.sim("ringring", "POST", "/_sim/faults", {"dlr_status": code, "latency_ms": late_ms})
            g = self.wait_status(answer["id"], status, timeout=20 * SLOW)
            self.assertEqual([(x["status"], x["detail"]) for x in g["reports"]],
                             [(status, "ringring_status_" + code)])
            self.assertEqual(self.stack.sim("ringring", "GET", "/_sim/dlrs").json, [])
            # The SMS's final report, the first poll's, ends its polling: no
            # round after it was stored counts or asks again. On a slow
            # machine a second round may begin before the first one's report
            # is stored, and ask too (its request may be on its way still).
            [(reported_id, rounds)] = reported()
        self.assertEqual(reported_id, answer["id"])
        self.assertLess(rounds, 3, "the report came after the last round: its polling was not seen to end")
        self.assertEqual(self.polls_stored(answer["id"], "polls, next_poll_ms"), (rounds, None))
        self.assertTrue(wait_until(lambda: self.status_requests() == rounds),
                        "%d status requests for %d rounds" % (self.status_requests(), rounds))

    def polls_stored(self, msg_id, columns="polls"):
        con = sqlite3.connect("file:%s?mode=ro" % os.path.join(self.stack.dir, "smis.db"), uri=True)
        try:
            row = con.execute("SELECT %s FROM messages WHERE id = ?" % columns, (msg_id,)).fetchone()
            return row if len(row) > 1 else row[0]
        finally:
            con.close()

    def test_no_poll_while_its_count_cannot_be_written(self):
        # An operator's transaction holds the write lock past smisd's busy
        # timeout (5 s) when the poll falls due (1 s after the commit): the
        # poll is neither counted nor made, and is made once the lock goes.
        self.stack.expect_log(r"^poll failed: database is locked")
        self.stack.sim("ringring", "POST", "/_sim/faults", {"dlr_status": "200"})
        answer, rec = self.sent_sms(sms_body("Later"))
        self.stack.wait_stored(answer["id"])
        lock = sqlite3.connect(os.path.join(self.stack.dir, "smis.db"), timeout=5, isolation_level=None)
        try:
            lock.execute("BEGIN EXCLUSIVE")
            self.assertFalse(wait_until(lambda: self.status_requests() > 0, timeout=8),
                             "a poll was made while its count could not be stored")
        finally:
            lock.rollback()
            lock.close()
        self.wait_status(answer["id"], "delivered", timeout=20)
        self.assertGreaterEqual(self.polls_stored(answer["id"]), self.status_requests())
        self.assertGreaterEqual(self.stack.metric('smis_store_errors_total{operation="poll"}'), 1)

    def test_polling_gives_up_after_max_polls(self):
        # RingRing keeps saying "pending" (100): three polls, then no more.
        self.stack.sim("ringring", "POST", "/_sim/faults", {"dlr_status": "100"})
        answer, rec = self.sent_sms(sms_body("Hallo"))
        self.assertTrue(wait_until(lambda: self.status_requests() >= 3, timeout=20 * SLOW), self.status_requests())
        # The store counted the polls before asking, and scheduled none after
        # the third.
        con = sqlite3.connect("file:%s?mode=ro" % os.path.join(self.stack.dir, "smis.db"), uri=True)
        try:
            row = con.execute("SELECT polls, next_poll_ms FROM messages WHERE id = ?", (answer["id"],)).fetchone()
        finally:
            con.close()
        self.assertEqual(row, (3, None))
        # One more writer round (polls are checked every second) asks nothing.
        time.sleep(1.5)
        self.assertEqual(self.status_requests(), 3)
        g = self.stack.get(answer["id"])
        self.assertEqual((g.json["status"], g.json["reports"]), ("sent", []))


class UpstreamRequestHead(SmsCase):
    """What smisd sends RingRing up to the body, byte for byte: the request
    line, every header and their order (curl writes them from the URL,
    user agent and Accept-Encoding smisd sets and the plugin's headers).
    RingRing's base_url points at a relay on loopback that records each
    request and hands it on to ringring-sim. Several messages: the later
    ones go out on what smisd kept from the first (the connection, the
    parsed URL)."""

    def relay(self):
        """Start the relay; returns its base URL. self.heads gets each
        request's head and body."""
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        self.addCleanup(srv.close)
        self.heads = []
        sim = self.stack.ringring

        def conversation(conn):
            buf = b""
            with conn:
                while True:
                    while b"\r\n\r\n" not in buf:
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        buf += chunk
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    found = re.search(rb"(?im)^content-length: *(\d+)", head)
                    length = int(found.group(1)) if found else 0
                    while len(buf) < length:
                        buf += conn.recv(65536)
                    body, buf = buf[:length], buf[length:]
                    self.heads.append((head.decode(), body))
                    path = head.split(b" ")[1].decode()
                    fwd = urllib.request.Request(sim + path, data=body, method="POST",
                                                 headers={"Content-Type": "application/json"})
                    with urllib.request.urlopen(fwd, timeout=10 * SLOW) as r:
                        answer = r.read()
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(answer), answer))

        def accept():
            while True:
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                threading.Thread(target=conversation, args=(conn,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        return "http://127.0.0.1:%d" % srv.getsockname()[1]

    def test_request_head(self):
        relay = self.relay()
        # Only the configuration names the relay: the test still asks the
        # simulator itself what it took.
        sim, self.stack.ringring = self.stack.ringring, relay
        try:
            self.stack.write_conf()
        finally:
            self.stack.ringring = sim
        self.stack.reload_and_wait()
        ids = []
        for i in range(3):
            answer, _ = self.sent_sms(sms_body("Bericht %d" % i, recipient="+3247055500%d" % i))
            ids.append(answer["id"])
        self.assertEqual(len(self.heads), 3, self.heads)
        version = re.match(r"smisd (\S+)", run_wrapped([os.path.join(BUILD, "smisd"), "--version"]).stdout).group(1)
        for (head, body), msg_id in zip(self.heads, ids):
            self.assertIn(('"reference":"%s"' % msg_id).encode(), body)
            self.assertEqual(head.split("\r\n"), [
                "POST /v1/message HTTP/1.1",
                "Host: " + relay[len("http://"):],
                "User-Agent: smisd/" + version,
                "Accept-Encoding: identity",
                "Content-Type: application/json; charset=UTF-8",
                "Accept: application/json",
                "Content-Length: %d" % len(body),
            ])


if __name__ == "__main__":
    unittest.main(verbosity=2)
