"""
Random requests against the real daemon (smisd and both simulators on
loopback, raw HTTP over a socket so that any byte can be sent).

Each request is a valid one, of one of smisd's routes, with zero to a few
mutations: fields removed, added, retyped or filled with awkward values,
bytes flipped or cut, headers missing or wrong, methods and paths that do
not fit. Whatever comes in, smisd must answer with something documented:
- every JSON answer is UTF-8, even when it quotes bytes the client sent;
- a refusal is an RFC 9457 problem whose code is one of daemon/problem.c's,
  raised somewhere in the code with that HTTP status, with a title and a
  detail; never a 5xx;
- an accepted message is answered with its id, a status and its attempts;
- nothing is sent upstream that is not in an answer, and everything in an
  answer was sent exactly once (idempotent replays send nothing);
- smisd stays up and healthy, logs no error and no sanitizer report (the
  stack's stop checks the log).

The generator is seeded (SMIS_ROBUSTNESS_SEED, SMIS_ROBUSTNESS_COUNT), so a
failure names the request that caused it and can be replayed.
"""
import contextlib
import copy
import email.message
import json
import os
import random
import re
import resource
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (CITIZENS, GOVAPP_CALLBACK_SECRET, KEYS, RINGRING_CALLBACK_TOKEN,  # noqa: E402
                     SLOW, PreloadedFaultCase, Response, StackTestCase, check_conformance, message,
                     poll_until)
from test_openapi import problem_codes, problem_statuses  # noqa: E402

SEED = int(os.environ.get("SMIS_ROBUSTNESS_SEED", "20261203"))
COUNT = int(os.environ.get("SMIS_ROBUSTNESS_COUNT", "3000"))
# Methods SMIS does not implement (names are case-sensitive): 501
# method_not_implemented on every path, the one 5xx a client earns.
UNKNOWN_METHODS = ["PROPFIND", "FOO", "get", "Post", "VERSION-CONTROL"]

STRATEGIES = ["govapp_first", "govapp_only", "sms_only", "govapp_and_sms", "app_then_sms"]
# Numbers as people write them, valid or not (the last found by fuzz_phone).
NUMBERS = list(CITIZENS.values()) + [
    "0470 00 00 04", "+32 (0)470/00.00.01", "0032470000002", "+31612345678", "02 123 45 67",
    "+", "", "0", "+3247", "+32470000004" * 3, "0123456000123456005243455243456", "٠٤٧٠",
    "+32470000004\u0000", "+32 470 00 00 0x"]
AWKWARD = [None, True, 0, -1, 1e308, 12345678901234567890, "", " ", "\u0000", "\t\n",
           "\u202e", "\ud7ff", "é" * 300, "x" * 40000, "<script>alert(1)</script>",
           "&#xCCCCCCCC6;", [], {}, [1, "a"], {"a": {"b": {"c": []}}}]
HTML = ["<p>a<b>b</p>", "<a href=\"javascript:alert(1)\">x</a>", "<svg><script>1</script>",
        "&#xCCCCCCCC6;", "<table><math><select><mtext><select><tr>", "<" * 5000]


def raw_request(port, method, path, headers, body, timeout=30, before=b"", may_close=False):
    """Sends one HTTP/1.1 request as bytes (after `before`); returns
    (status, headers, body) or raises if no complete answer comes, or if
    the answer departs from docs/openapi.yaml (as harness.http() does).
    With `may_close`, a connection closed without a byte of answer returns
    None instead (one left open still raises, by `timeout`)."""
    head = "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" % (method, path)
    for k, v in headers:
        head += "%s: %s\r\n" % (k, v)
    if body is not None:
        head += "Content-Length: %d\r\n" % len(body)
    data = before + head.encode("utf-8", "surrogateescape") + b"\r\n" + (body or b"")
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        chunks = []
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            # A body more than 1 MiB past the limit is answered at once and
            # not read: the answer came before the connection was closed.
            pass
        with contextlib.suppress(ConnectionResetError):
            chunks.extend(iter(lambda: s.recv(65536), b""))
    resp = b"".join(chunks)
    if may_close and not resp:
        return None
    head, sep, rest = resp.partition(b"\r\n\r\n")
    if not sep:
        raise AssertionError("no complete answer: %r" % resp[:300])
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    if "chunked" in hdrs.get("transfer-encoding", ""):
        out, buf = b"", rest
        while True:
            size_line, _, buf = buf.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            out, buf = out + buf[:size], buf[size + 2:]
        rest = out
    named = email.message.Message()  # the checker reads headers by name, in any case
    for k, v in hdrs.items():
        named[k] = v
    check_conformance(method, "http://127.0.0.1:%d%s" % (port, path),
                      Response(status, named, rest.decode("utf-8", "replace")))
    return status, hdrs, rest


def cpu_seconds(pid):
    """A process's CPU time so far, user and system (/proc/PID/stat)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_while_clients_wait(stack, starved):
    """smisd's CPU seconds in 2 s while `starved` (a context manager) keeps
    it from accepting four clients that wait with a request; and, for each,
    whether it was then served."""
    waiting = []
    try:
        with starved:
            for _ in range(4):
                waiting.append(socket.create_connection(("127.0.0.1", stack.smisd_port), timeout=10 * SLOW))
                waiting[-1].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            time.sleep(0.2)
            before = cpu_seconds(stack.smisd.pid)
            time.sleep(2)
            used = cpu_seconds(stack.smisd.pid) - before
        return used, [s.makefile("rb").read().startswith(b"HTTP/1.1 200 ") for s in waiting]
    finally:
        for s in waiting:
            s.close()


class Generator:
    """Requests from a seeded random source; `ids` collects the message ids
    answered so far, so that lookups and replays can name real ones."""

    def __init__(self, seed):
        self.r = random.Random(seed)
        self.ids = []
        self.idem_keys = ["key-%d" % i for i in range(8)]

    def auth(self):
        r = self.r.random()
        if r < 0.80:
            return [("Authorization", "Bearer " + KEYS["inst-a"])]
        return self.r.choice([
            [], [("Authorization", "Bearer " + KEYS["inst-b"])],
            [("Authorization", "Bearer " + KEYS["inst-a"][:-1])],
            [("Authorization", "Basic " + KEYS["inst-a"])], [("Authorization", "Bearer ")],
            [("Authorization", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")],
            [("Authorization", "Bearer a.b.c")], [("Authorization", "Bearer " + "k" * 5000)]])

    def value(self):
        return copy.deepcopy(self.r.choice(AWKWARD))  # mutate_obj may change it

    def mutate_obj(self, obj, depth=0):
        """One structural change somewhere in a JSON object."""
        keys = list(obj.keys())
        what = self.r.random()
        if keys and what < 0.25:
            del obj[self.r.choice(keys)]
        elif what < 0.40:
            obj[self.r.choice(["extra", "Recipient", "content ", "strategy", "reference", "language",
                               "message_id", "idempotency_key", "\u00e9" * self.r.randint(1, 40),
                               "a" + "\u20ac" * self.r.randint(10, 30)])] = self.value()
        elif keys and what < 0.80:
            k = self.r.choice(keys)
            if isinstance(obj[k], dict) and obj[k] and depth < 3:
                self.mutate_obj(obj[k], depth + 1)
            else:
                obj[k] = self.value()
        elif what < 0.90:
            obj["recipient"] = self.r.choice(NUMBERS)
        else:
            obj["content"] = {self.r.choice(["nl", "fr", "de", "en", "xx", "NL", ""]):
                              {"title": self.r.choice(["T", "", "é" * 257]),
                               "body": self.r.choice(HTML + ["b"]), "format": self.r.choice(
                                   ["html", "text", "markdown", 1])}}
        return obj

    def mutate_bytes(self, b):
        b = bytearray(b)
        for _ in range(self.r.randint(1, 4)):
            if not b:
                break
            i = self.r.randrange(len(b))
            op = self.r.random()
            if op < 0.4:
                b[i] = self.r.randrange(256)
            elif op < 0.6:
                del b[i:i + self.r.randint(1, 8)]
            elif op < 0.8:
                b[i:i] = self.r.choice([b"\xff", b"\xc0\xaf", b"\x00", b"{", b"]", b"\"", b"\\u0000",
                                        b"\\ud800", b"[" * 200, b"1e99999"])
            else:
                del b[i:]
        return bytes(b)

    def message_body(self):
        body = message(self.r.choice(list(CITIZENS.values())), self.r.choice(STRATEGIES + [None]),
                       langs=tuple(self.r.sample(["nl", "fr", "de", "en"], self.r.randint(1, 4))),
                       html=self.r.random() < 0.3)
        if self.r.random() < 0.3:
            body["reference"] = "ref-%d" % self.r.randrange(1000)
        for _ in range(self.r.choice([0, 0, 1, 1, 2, 3])):
            self.mutate_obj(body)
        data = json.dumps(body, ensure_ascii=self.r.random() < 0.5).encode("utf-8", "surrogatepass")
        if self.r.random() < 0.2:
            data = self.mutate_bytes(data)
        return data

    def request(self):
        """(method, path, headers, body)."""
        r = self.r.random()
        headers = self.auth()
        body = None
        if r < 0.60:
            method, path = "POST", "/v1/messages"
            body = self.message_body()
            if self.r.random() < 0.85:
                headers.append(("Content-Type", "application/json"))
            else:
                headers.append(("Content-Type", self.r.choice(
                    ["text/plain", "application/json; charset=latin1", "application/jsonx", ""])))
            if self.r.random() < 0.25:
                headers.append(("Idempotency-Key", self.r.choice(
                    self.idem_keys + ["", "é", "k" * 300, "a b", "\u0001"])))
            if self.r.random() < 0.01:
                body = b"{" * 3000000  # past the body limit
            if self.r.random() < 0.02:
                method = self.r.choice(UNKNOWN_METHODS)  # with its body
        elif r < 0.75:
            method = "GET"
            ident = self.r.choice(self.ids) if self.ids and self.r.random() < 0.7 else self.r.choice(
                ["msg_x", "msg_" + "0" * 26, "..", "%00", "msg_%2F..", "x" * 500, ""])
            path = "/v1/messages/" + ident
        elif r < 0.82:
            method, path = "POST", "/v1/recipients/keys"
            body = json.dumps(self.mutate_obj({"recipient": self.r.choice(NUMBERS)})
                              if self.r.random() < 0.5 else {"recipient": self.r.choice(NUMBERS)},
                              ensure_ascii=False).encode("utf-8", "surrogatepass")
            if self.r.random() < 0.2:
                body = self.mutate_bytes(body)
            headers.append(("Content-Type", "application/json"))
        elif r < 0.92:
            method = self.r.choice(["POST", "POST", "GET"])
            path = "/v1/callbacks/" + self.r.choice([
                "ringring/" + RINGRING_CALLBACK_TOKEN, "ringring/wrong", "govapp", "govapp/x", "nosuch", ""])
            headers = [("Content-Type", "application/json")]
            if self.r.random() < 0.5:
                headers.append(("X-GovApp-Signature", self.r.choice(
                    ["t=1,v1=00", "garbage", "t=%d,v1=%s" % (self.r.randrange(2 ** 31), "a" * 64),
                     GOVAPP_CALLBACK_SECRET])))
            body = json.dumps(self.mutate_obj({
                "notification_id": "gn_x", "MessageId": "m", "Reference": self.r.choice(self.ids or ["x"]),
                "StatusCode": self.r.choice(["200", "300", "100", "x"]), "status": "read"})).encode()
        else:
            method = self.r.choice(["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "POST"] + UNKNOWN_METHODS)
            path = self.r.choice(["/healthz", "/metrics", "/v1/messages", "/", "/v1", "/v1/messages/",
                                  "/v1/messages/a/b", "/v2/messages", "/v1/messages?x=1", "/%ff"])
        return method, path, headers, body


class RandomRequests(StackTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # What random callbacks and refusals make smisd say, as designed.
        for pattern in (r"callback refused", r"callback malformed", r"callback for an unknown message",
                        r"callback from \S+ refused",
                        r"upstream (lookup|send) failed", r"rate limit", r"not authentic"):
            cls.stack.expect_log(pattern)

    def check_problem(self, what, status, hdrs, body):
        self.assertTrue(hdrs.get("content-type", "").startswith("application/problem+json"), what)
        p = json.loads(body.decode("utf-8"))  # JSON text is UTF-8 (RFC 8259), whatever came in
        self.assertIn(p.get("code"), problem_codes(), what)
        statuses = problem_statuses().get(p["code"])
        if statuses:
            self.assertIn(status, statuses, what)
        self.assertEqual((p.get("status"), p.get("type")), (status, "/problems/" + p["code"]), what)
        self.assertTrue(p.get("title") and p.get("detail"), what)

    def test_random_requests_get_documented_answers(self):
        gen = Generator(SEED)
        port = self.stack.smisd_port
        answered = {}  # message id -> its answer (first seen)
        statuses = {}
        for i in range(COUNT):
            method, path, headers, body = gen.request()
            what = "request %d of seed %d: %s %s %r %r" % (i, SEED, method, path, headers,
                                                           (body or b"")[:300])
            status, hdrs, rbody = raw_request(port, method, path, headers, body)
            statuses[status] = statuses.get(status, 0) + 1
            if method in UNKNOWN_METHODS:
                self.assertEqual(status, 501, what + " -> %r" % rbody[:300])
                self.assertEqual(json.loads(rbody)["code"], "method_not_implemented", what)
            else:
                self.assertLess(status, 500, what + " -> %r" % rbody[:300])
            if status >= 400:
                self.check_problem(what + " -> %r" % rbody[:300], status, hdrs, rbody)
                continue
            if hdrs.get("content-type", "").startswith("application/json"):
                doc = json.loads(rbody.decode("utf-8"))
                if method == "POST" and path == "/v1/messages":
                    self.assertIn(status, (200, 201), what)
                    self.assertTrue(doc["id"].startswith("msg_"), what)
                    self.assertIn(doc["status"], ("sent", "failed"), what)
                    for a in doc["attempts"]:
                        self.assertIn(a["operation"], ("lookup", "send", "status"), what)
                        self.assertIn(a["outcome"], ("ok", "sent", "temporary_failure",
                                                     "permanent_failure"), what)
                    # A replay names the first answer's message and repeats it.
                    if hdrs.get("idempotent-replayed") == "true":
                        self.assertEqual(doc, answered.get(doc["id"]), what)
                    answered.setdefault(doc["id"], doc)
                    if doc["id"] not in gen.ids:
                        gen.ids.append(doc["id"])
        if os.environ.get("SMIS_ROBUSTNESS_VERBOSE"):
            print("statuses:", sorted(statuses.items()), "messages:", len(answered), file=sys.stderr)
        # Refusals were exercised, and so were accepted messages.
        self.assertGreater(sum(n for s, n in statuses.items() if s >= 400), COUNT // 10, statuses)
        self.assertGreater(len(answered), COUNT // 20, statuses)

        # What the upstreams received is exactly what the answers say was sent.
        self.stack.wait_idle()
        sms = self.stack.sim("ringring", "GET", "/_sim/requests").json
        sent_sms = {}
        for q in sms:
            sent_sms[q["reference"]] = sent_sms.get(q["reference"], 0) + 1
        want_sms = {}
        for mid, doc in answered.items():
            n = sum(1 for a in doc["attempts"] if a["channel"] == "ringring" and a["operation"] == "send"
                    and a["outcome"] == "sent")
            if n:
                want_sms[mid] = n
        self.assertEqual(sent_sms, want_sms)
        # GovApp: notifications accepted (a counter: the request log keeps
        # only the last 1000 requests, lookups included).
        notes = self.stack.sim("govapp", "GET", "/_sim/stats").json["sent"]
        want_notes = sum(1 for doc in answered.values() for a in doc["attempts"]
                         if a["channel"] == "govapp" and a["operation"] == "send" and a["outcome"] == "sent")
        self.assertEqual(notes, want_notes)
        h = self.stack.get(next(iter(answered)))
        self.assertEqual(h.status, 200, h.raw)

    def test_oversized_request_heads_are_refused_before_smisd(self):
        # docs/openapi.yaml: request line and headers fit in 12 KiB, or the
        # HTTP layer answers 414 / 431 itself; smisd carries on.
        self.stack.expect_log(r"Error processing request \(HTTP response code is (400|413|414|431)",  # MHD's
                              r"^Failed to parse `Content-Length' header",
                              r"^Too large value of 'Content-Length' header")
        port = self.stack.smisd_port
        status, _, _ = raw_request(port, "GET", "/healthz", [("X-Big", "a" * 8000)], None)
        self.assertEqual(status, 200)
        status, _, _ = raw_request(port, "GET", "/healthz", [("X-Big", "a" * 20000)], None)
        self.assertEqual(status, 431)
        status, _, _ = raw_request(port, "GET", "/v1/messages/" + "x" * 20000, [], None)
        self.assertEqual(status, 414)
        # A Content-Length that is no number, or past 64 bits: 400 and 413,
        # from the same layer, with no request id.
        # libmicrohttpd 0.9.75 sends their head twice (docs/architecture.md,
        # 4a): what raw_request takes for the body begins with it again.
        # Should this fail, it no longer does: the documents are to say so.
        for value, want in (("12abc", 400), ("99999999999999999999999", 413)):
            status, hdrs, rest = raw_request(port, "POST", "/v1/messages", [("Content-Length", value)], None)
            self.assertEqual((status, hdrs.get("x-request-id")), (want, None))
            self.assertTrue(rest.startswith(b"HTTP/1.1 %d " % want), rest[:100])
        status, _, _ = raw_request(port, "GET", "/healthz", [], None)
        self.assertEqual(status, 200)


class LargeRequestHeads(StackTestCase):
    """Request heads near libmicrohttpd's connection memory (12 KiB, which
    keeps a head's lines and 64 bytes per header field): each is answered,
    never closed without a word, unless blank lines came first (below).
    Those that left it too little to build the answer's own headers were
    closed unanswered (about 11.8-12 KiB of head for a /healthz, less for
    bigger answers), a POST after its message had been sent. smisd refuses
    a head past 11 KiB (its fields counted so) with 431 headers_too_large
    before acting on it; past 12 KiB the HTTP layer answers 431 itself."""

    def head(self, fields, estimate, line="GET /healthz", given=()):
        """Header fields (after `given`; raw_request adds Host, Connection
        and a body's Content-Length) making a head of `fields` fields that
        takes `estimate` bytes of the connection's memory: its lines and 64
        bytes per field."""
        extra = list(given) + [("X-F%d" % i, "v") for i in range(fields - 3 - len(given))]
        base = len(line + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Big: \r\n\r\n")
        base += sum(len("%s: %s\r\n" % kv) for kv in extra)
        return extra + [("X-Big", "a" * (estimate - 64 * fields - base))]

    def test_every_head_near_the_limit_is_answered(self):
        self.stack.expect_log(r"Error processing request \(HTTP response code is 431",
                              r"^Not enough memory in pool to allocate header record",
                              r"^further libmicrohttpd messages",
                              r"^Application reported internal error")
        port = self.stack.smisd_port
        for fields in (3, 40, 120):
            seen = []
            for estimate in range(10880, 12640, 16):
                with self.subTest(fields=fields, estimate=estimate):
                    # raw_request fails on no complete answer, and checks it
                    # against docs/openapi.yaml.
                    status, hdrs, body = raw_request(port, "GET", "/healthz", self.head(fields, estimate), None)
                    seen.append((status, "x-request-id" in hdrs))
                    self.assertEqual(status, 200 if estimate <= 11264 else 431, estimate)
                    if estimate <= 12096:  # smisd's, with its request id, not the HTTP layer's
                        self.assertIn("x-request-id", hdrs)
                    if status == 431 and "x-request-id" in hdrs:
                        self.assertEqual(json.loads(body)["code"], "headers_too_large")
                        self.assertEqual(hdrs["connection"], "close")
            # smisd's 431, then the HTTP layer's: both were met.
            self.assertIn((431, True), seen)
            self.assertIn((431, False), seen)
        self.assertEqual(raw_request(port, "GET", "/healthz", [], None)[0], 200)

    # libmicrohttpd keeps blank lines sent before the request line in the
    # same memory, where smisd does not see them (a known limit,
    # docs/architecture.md 4a): some 750 bytes of them or more can leave a
    # head under the limit no room for the answer's headers.
    BLANK_LIMIT_LOG = (r"^Closing connection \(failed to create response header\)",
                       r"^further libmicrohttpd messages")

    def test_blank_lines_before_the_request_line_get_an_answer_or_a_close(self):
        self.stack.expect_log(*self.BLANK_LIMIT_LOG)
        port = self.stack.smisd_port
        for blank, answered in ((b"\r\n" * 350, 11264), (b"\r\n" * 500, 11072), (b"\n" * 1000, 11072)):
            for estimate in range(10560, 11264 + 1, 16):
                with self.subTest(blank=len(blank), estimate=estimate):
                    # Never left hanging: raw_request's timeout would raise.
                    got = raw_request(port, "GET", "/healthz", self.head(3, estimate), None,
                                      before=blank, may_close=True)
                    if estimate <= answered:
                        self.assertEqual(got and got[0], 200)
                    else:  # closed at once, without a byte
                        self.assertIsNone(got)
        self.assertEqual(raw_request(port, "GET", "/healthz", [], None)[0], 200)

    def test_post_after_blank_lines_can_lose_its_answer_not_its_retry(self):
        # The message is sent, then its 201 cannot be built: the connection
        # is closed unanswered. Its Idempotency-Key makes the retry safe.
        self.stack.expect_log(*self.BLANK_LIMIT_LOG)
        created = 'smis_http_requests_total{route="send",status="201"}'
        before = self.stack.metric(created) or 0
        body = json.dumps(message(CITIZENS["no_app"], "sms_only")).encode()
        auth = [("Authorization", "Bearer " + KEYS["inst-a"]), ("Content-Type", "application/json"),
                ("Idempotency-Key", "blank-lines-1")]
        length = ("Content-Length", str(len(body)))  # raw_request's, counted here
        fields = [f for f in self.head(7, 11232, "POST /v1/messages", auth + [length]) if f is not length]
        self.assertIsNone(raw_request(self.stack.smisd_port, "POST", "/v1/messages", fields, body,
                                      before=b"\r\n" * 400, may_close=True))
        self.assertEqual(len(self.stack.sim("ringring", "GET", "/_sim/requests").json), 1)
        # The 201 was queued, never sent: so says its access line, and the
        # count of answers leaves it out.
        poll_until(lambda: re.search(r"POST send 201 \d+ms unsent institution=inst-a", self.stack.log_text()), 5,
                   lambda: "no access line of the 201 unsent")
        self.assertEqual(self.stack.metric(created) or 0, before)
        status, hdrs, rbody = raw_request(self.stack.smisd_port, "POST", "/v1/messages", auth, body)
        self.assertEqual((status, hdrs.get("idempotent-replayed")), (200, "true"), rbody[:300])
        self.assertEqual(len(self.stack.sim("ringring", "GET", "/_sim/requests").json), 1)

    def test_large_head_of_a_post_is_refused_before_sending(self):
        self.stack.expect_log(r"^Application reported internal error")
        body = json.dumps(message(CITIZENS["no_app"], "sms_only")).encode()
        auth = [("Authorization", "Bearer " + KEYS["inst-a"]), ("Content-Type", "application/json")]
        length = ("Content-Length", str(len(body)))  # raw_request's, counted here
        for estimate in (11392, 11776, 12000, 12096, 12160, 12272):
            with self.subTest(estimate=estimate):
                fields = self.head(6, estimate, "POST /v1/messages", auth + [length])
                status, hdrs, rbody = raw_request(self.stack.smisd_port, "POST", "/v1/messages",
                                                  [f for f in fields if f is not length], body)
                self.assertEqual((status, json.loads(rbody)["code"]), (431, "headers_too_large"), rbody[:300])
        self.assertEqual(self.stack.sim("ringring", "GET", "/_sim/requests").json, [])
        status, _, rbody = raw_request(self.stack.smisd_port, "POST", "/v1/messages", auth, body)
        self.assertEqual(status, 201, rbody[:300])


class SlowClients(StackTestCase):
    """Clients that stop half-way hold a socket, not the daemon: the others
    are served meanwhile, and smisd drops the stalled ones after
    listen.connection_timeout_s."""
    stack_kwargs = {"listen_extra": "connection_timeout_s = 1;"}

    def test_stalled_requests_are_dropped_and_do_not_block_others(self):
        body = json.dumps(message(CITIZENS["no_app"], "sms_only")).encode()
        head = ("POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (KEYS["inst-a"], len(body)))
        partial = [b"POST /v1/mess", head.encode()[:60], head.encode(), head.encode() + body[:10]]
        stalled = []
        try:
            for i in range(40):
                s = socket.create_connection(("127.0.0.1", self.stack.smisd_port), timeout=10)
                s.sendall(partial[i % len(partial)])
                stalled.append(s)
            # Served meanwhile, whole.
            start = time.time()
            for _ in range(5):
                status, _, rbody = raw_request(self.stack.smisd_port, "POST", "/v1/messages",
                                               [("Authorization", "Bearer " + KEYS["inst-a"]),
                                                ("Content-Type", "application/json")], body)
                self.assertEqual(status, 201, rbody[:300])
            self.assertLess(time.time() - start, 5)
            # Each stalled connection is closed by smisd (EOF, maybe after a
            # timeout answer), well before the socket's own 10 s timeout.
            for s in stalled:
                rest = b""
                while True:
                    c = s.recv(4096)
                    if not c:
                        break
                    rest += c
                self.assertFalse(rest.startswith(b"HTTP/1.1 2"), rest[:200])
            self.assertLess(time.time() - start, 9)
        finally:
            for s in stalled:
                s.close()
        # Nothing half-received was sent anywhere.
        self.assertEqual(len(self.stack.sim("ringring", "GET", "/_sim/requests").json), 5)
        h = self.stack.sim("ringring", "GET", "/_sim/health")
        self.assertEqual(h.status, 200)


class ConnectionLimit(StackTestCase):
    """More clients than listen.max_connections (16: 8 per loop): those
    past it wait in the listen backlog, and are served as idle ones are
    dropped (connection_timeout_s), a few seconds here. (Once the limit had
    been reached smisd accepted no connection again, ever.)"""
    stack_kwargs = {"listen_extra": "max_connections = 16; connection_timeout_s = 1;"}

    def clients_wait_and_are_served(self, n):
        """n idle connections, then a request: answered once enough of
        them have been dropped."""
        idle = [socket.create_connection(("127.0.0.1", self.stack.smisd_port), timeout=10) for _ in range(n)]
        try:
            status, _, _ = raw_request(self.stack.smisd_port, "GET", "/healthz", [], None, timeout=15 * SLOW)
            self.assertEqual(status, 200)
        finally:
            for s in idle:
                s.close()

    def test_clients_beyond_the_limit_wait_and_are_served(self):
        self.clients_wait_and_are_served(48)
        self.stack.wait_idle()

    def test_clients_beyond_the_descriptor_limit_wait_and_are_served(self):
        # The same past the process's descriptor limit, under the
        # configured one: accept() fails (EMFILE), which libmicrohttpd
        # logs, and smisd must accept again once descriptors are free.
        self.stack.expect_log(r"^Error accepting connection: Too many open files",
                              r"^Hit process or system resource limit")
        with self.descriptors_left(8):
            self.clients_wait_and_are_served(24)
        self.stack.wait_idle()

    def test_no_descriptor_left_does_not_flood_the_log(self):
        # A loop without any connection whose accept() fails retries at once,
        # and libmicrohttpd logs each failure: hundreds of thousands of
        # lines in a few seconds. At most a few per second are written.
        self.stack.expect_log(r"^Error accepting connection: Too many open files",
                              r"^Hit process or system resource limit", r"^further libmicrohttpd messages")
        with self.descriptors_left(0):
            waiting = [socket.create_connection(("127.0.0.1", self.stack.smisd_port), timeout=10)
                       for _ in range(4)]
            time.sleep(0.5)
        for s in waiting:
            s.close()
        self.assertEqual(raw_request(self.stack.smisd_port, "GET", "/healthz", [], None)[0], 200)
        self.assertLess(self.stack.log_text().count("Too many open files"), 200)

    def test_no_descriptor_left_does_not_spin(self):
        # That loop was run again at once, for ever: smisd took 2 to 2.5 s
        # of CPU in these 2 s (both loops spinning). It now leaves its
        # listening socket alone for 100 ms at a time, and still accepts the
        # clients that waited once there are descriptors again.
        self.stack.expect_log(r"^Error accepting connection: Too many open files",
                              r"^Hit process or system resource limit", r"^further libmicrohttpd messages")
        used, served = cpu_while_clients_wait(self.stack, self.descriptors_left(0))
        self.assertEqual(served, [True] * 4)
        self.assertLess(used, 0.3, "CPU seconds of smisd in 2 s without a descriptor")

    @contextlib.contextmanager
    def descriptors_left(self, n):
        """smisd's RLIMIT_NOFILE lowered to n more than it has open, for
        the length of the with block."""
        pid = self.stack.smisd.pid
        old = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (len(os.listdir("/proc/%d/fd" % pid)) + n, old[1]))
        try:
            yield
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, old)


class NoSocketMemory(PreloadedFaultCase):
    """accept() fails for want of kernel memory (ENOBUFS; ENOMEM and a full
    system file table, ENFILE, alike) rather than of descriptors: made so
    by a preloaded library while a flag file exists. An idle loop rests its
    listening socket as without descriptors, instead of retrying at once,
    for ever, at 100% CPU, and serves the clients that waited once there
    is memory again."""
    preload, flag_env = "nobufs", "SMIS_TEST_NOBUFS"

    def test_no_socket_memory_does_not_spin(self):
        self.stack.expect_log(r"^Error accepting connection: No buffer space available",
                              r"^Hit process or system resource limit", r"^further libmicrohttpd messages")
        used, served = cpu_while_clients_wait(self.stack, self.failing())
        self.assertEqual(served, [True] * 4)
        self.assertLess(used, 0.3, "CPU seconds of smisd in 2 s without socket memory")


if __name__ == "__main__":
    unittest.main()
