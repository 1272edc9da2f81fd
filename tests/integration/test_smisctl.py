"""
smisctl, the operators' command line, against the real thing: keys and
secrets, `check-config` through the built smisd, `plugins` on the built
plugin folder and on the broken test plugins, and `send` / `status` /
`reload` against a running stack (harness.Stack). Exit codes are part of
the contract (smisctl(1)): 0 ok, 1 failed / negative, 2 usage, 3 error.
"""
import base64
import hashlib
import http.server as http_server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (BUILD, CITIZENS, IDEMPOTENCY_KEYS, KEYS, SEND_REFUSED, SEND_TAKEN, Stack,  # noqa: E402
                     StackTestCase, free_port, http, preloading, valgrind)
from test_robustness import raw_request  # noqa: E402

SMISCTL = os.path.join(BUILD, "tools/smisctl/smisctl")
SMISD = os.path.join(BUILD, "smisd")
TEST_PLUGINS = os.path.join(BUILD, "tests/plugins/.libs")


def smisctl(*args, stdin=None, env_extra=None, exe=SMISCTL, text=True):
    """Run smisctl (under valgrind when the build has it); return the
    CompletedProcess with text stdout/stderr (bytes when text is False)."""
    argv = [exe] + list(args)
    if valgrind():
        argv = [valgrind(), "--quiet", "--error-exitcode=99", "--leak-check=full",
                "--errors-for-leak-kinds=definite"] + argv
    env = dict(os.environ)
    env.pop("SMIS_API_KEY", None)
    env.update(env_extra or {})
    return subprocess.run(argv, input=stdin, capture_output=True, text=text, env=env, timeout=180)


def sim_requests(stack, which):
    """What a simulator received (a list, or {"requests": [...]})."""
    j = stack.sim(which, "GET", "/_sim/requests").json
    return j["requests"] if isinstance(j, dict) else j


def read(path):
    with open(path) as f:
        return f.read()


def write(path, text, mode="w"):
    with open(path, mode) as f:
        f.write(text)


def offline_conf(path, extra_channel="", extra_strategy=""):
    """A complete configuration (the harness's) written without starting
    anything: check-config and plugins need no running upstream."""
    s = Stack()
    s.smisd_port = 1
    s.govapp = "http://127.0.0.1:1"
    s.ringring = "http://127.0.0.1:1"
    s.write_conf(extra_strategy=extra_strategy, path=path)
    shutil.rmtree(s.dir, ignore_errors=True)
    if extra_channel:
        write(path, read(path).replace("\n);\nstrategies", ",\n" + extra_channel + "\n);\nstrategies", 1))


def send_body(options):
    """The body smisctl send posts for its options {"--to": ..., ...}."""
    content = {"title": options["--title"], "body": options["--body"]}
    if "--sms-text" in options:
        content["sms_text"] = options["--sms-text"]
    body = {"recipient": options["--to"], "strategy": options["--strategy"], "content": {options["--lang"]: content}}
    if "--reference" in options:
        body["reference"] = options["--reference"]
    return body


class Usage(unittest.TestCase):
    def test_exit_codes_of_usage(self):
        self.assertEqual(smisctl().returncode, 2)
        r = smisctl("frobnicate")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown command", r.stderr)
        r = smisctl("send", "--url", "http://127.0.0.1:1", "--title", "t", "--body", "b")
        self.assertEqual(r.returncode, 2, r.stderr)
        r = smisctl("status", "--url", "http://127.0.0.1:1", "--key", "k", "../etc/passwd")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(smisctl("send", "--bogus").returncode, 2)

    def test_status_takes_only_smisd_message_ids(self):
        # smisd's ids are "msg_" + 26 Crockford base32 characters, upper
        # case (smisd_new_id): anything else is refused with no request,
        # exit 2 where the closed port makes it 3.
        closed = "http://127.0.0.1:%d" % free_port()
        for msg_id, want in (("msg_01J2Z8Q4XK7M3N5P9R2T6V8W0X", 3), ("msg_0123456789ABCDEFGHJKMNPQRS", 3),
                             ("msg_TVWXYZ00000000000000000000", 3),
                             ("msg_01j2z8q4xk7m3n5p9r2t6v8w0x", 2), ("msg_01J2Z8Q4XK7M3N5P9R2T6V8W0", 2),
                             ("msg_01J2Z8Q4XK7M3N5P9R2T6V8W0XY", 2), ("msg_01J2Z8Q4XK7M3N5P9R2T6V8WIL", 2),
                             ("msg_01J2Z8Q4XK7M3N5P9R2T6V8WOU", 2), ("req_01J2Z8Q4XK7M3N5P9R2T6V8W0X", 2),
                             ("msg-01J2Z8Q4XK7M3N5P9R2T6V8W0X", 2), ("msg_1", 2), ("a-b", 2), ("", 2),
                             ("msg_01J2Z8Q4XK7M3N5P9R2T6V8W\x1b[", 2)):
            with self.subTest(msg_id=msg_id):
                r = smisctl("status", "--url", closed, "--key", "k", msg_id)
                self.assertEqual(r.returncode, want, r.stderr)
                self.assertEqual("is not a message id" in r.stderr, want == 2, r.stderr)
        r = smisctl("status", "--url", closed, "--key", "k", "msg_\x1b[2J")
        self.assertEqual(r.stderr, "smisctl status: 'msg_?[2J' is not a message id "
                                   "(msg_ and 26 characters of 0-9 and A-Z but I, L, O and U)\n")

    def test_idempotency_key_syntax_is_a_usage_error(self):
        # What smisd would refuse (docs/openapi.yaml: 1-128 of
        # [A-Za-z0-9-_.:]) is refused first, with no request: exit 2 where
        # the closed port would have made it 3.
        send = ("send", "--url", "http://127.0.0.1:%d" % free_port(), "--key", "k", "--to", "+32470000000",
                "--title", "t", "--body", "b", "--idempotency-key")
        for key, want in IDEMPOTENCY_KEYS:
            with self.subTest(key=key):
                r = smisctl(*send, key)
                self.assertEqual(r.returncode, want, r.stderr)
                self.assertEqual("--idempotency-key" in r.stderr, want == 2, r.stderr)

    def test_text_that_is_not_utf8_is_a_usage_error(self):
        # As smis-encrypt (test_govapp_full.py): smisd would refuse it (400
        # invalid_utf8), so it is refused first, with no request: exit 2
        # where the closed port makes it 3. "\udce9" is the byte E9 (Latin-1
        # é) in the argument, as a shell in a Latin-1 locale passes it.
        send = ("send", "--url", "http://127.0.0.1:%d" % free_port(), "--key", "k", "--to", "+32470000000",
                "--lang", "fr")
        for texts, field in ((("--title", "Caf\udce9", "--body", "b"), "title"),
                             (("--title", "t", "--body", "Caf\udce9"), "body"),
                             (("--title", "t", "--body", "b", "--sms-text", "Caf\udce9"), "SMS text")):
            with self.subTest(field=field):
                r = smisctl(*send, *texts, text=False)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertEqual(r.stderr, b"smisctl send: the fr %s is not UTF-8\n" % field.encode())
        r = smisctl(*send, "--title", "Caf\u00e9", "--body", "b", "--sms-text", "Caf\u00e9")
        self.assertEqual(r.returncode, 3, r.stderr)

    def test_help_of_every_command(self):
        r = smisctl("--help")
        self.assertEqual(r.returncode, 0)
        for cmd in ("send", "status", "gen-key", "hash-key", "gen-secret", "check-config",
                    "plugins", "reload"):
            self.assertIn(cmd, r.stdout)
            h = smisctl(cmd, "--help")
            self.assertEqual(h.returncode, 0, cmd)
            self.assertIn("Usage: smisctl " + cmd, h.stdout)
            self.assertEqual(smisctl("help", cmd).stdout, h.stdout)
        r = smisctl("--version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^smisctl \S+ \(plugin ABI 1\)")


class Keys(unittest.TestCase):
    def test_gen_key_and_hash_key_round_trip(self):
        r = smisctl("gen-key")
        self.assertEqual(r.returncode, 0, r.stderr)
        key, line = r.stdout.splitlines()
        # 32 random bytes in unpadded base64url.
        self.assertRegex(key, r"^[A-Za-z0-9_-]{43}$")
        self.assertEqual(len(base64.urlsafe_b64decode(key + "=")), 32)
        digest = hashlib.sha256(key.encode()).hexdigest()
        self.assertEqual(line, 'api_keys = [ "sha256:%s" ];' % digest)
        self.assertEqual(smisctl("hash-key", key).stdout, "sha256:%s\n" % digest)
        # From standard input, with or without a newline.
        self.assertEqual(smisctl("hash-key", stdin=key + "\n").stdout, "sha256:%s\n" % digest)
        self.assertEqual(smisctl("hash-key", stdin=key).stdout, "sha256:%s\n" % digest)
        self.assertNotEqual(smisctl("gen-key").stdout.split()[0], key)

    def test_gen_key_never_starts_with_a_dash(self):
        # One base64url key in 64 would start with '-' and read as an option
        # to `smisctl hash-key KEY`. 300 keys without the redraw: 99% chance
        # of one (run without valgrind: only the output is checked here).
        for _ in range(300):
            r = subprocess.run([SMISCTL, "gen-key"], capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertFalse(r.stdout.startswith("-"), r.stdout)
        # A key from elsewhere that does start with '-' is hashed after "--".
        key = "-" + "A" * 42
        self.assertEqual(smisctl("hash-key", "--", key).stdout,
                         "sha256:%s\n" % hashlib.sha256(key.encode()).hexdigest())

    def test_hash_key_matches_sha256sum_of_the_demo_key(self):
        # conf/smisd.conf's comment: the hash of "demo-key-0123456789".
        r = smisctl("hash-key", "demo-key-0123456789")
        self.assertEqual(r.stdout.strip(),
                         "sha256:507636717dd889c4aca6e55fac6880c0e096f0160c1c940da0564f39301c6537")

    def test_hash_key_refuses_keys_smisd_cannot_accept(self):
        # Which keys smisd takes: KeysSmisdTakes.
        self.assertEqual(smisctl("hash-key", stdin="").returncode, 2)
        for key, why in KEYS_REFUSED:
            with self.subTest(key=key[:20]):
                r = smisctl("hash-key", "--", key, text=False)
                self.assertEqual((r.returncode, r.stdout), (2, b""))
                self.assertEqual(r.stderr, b"smisctl hash-key: the key %s\n" % (why or LONGER_THAN_A_KEY))

    def test_gen_secret(self):
        a, b = smisctl("gen-secret"), smisctl("gen-secret")
        self.assertEqual(a.returncode, 0)
        self.assertRegex(a.stdout, r"^[0-9a-f]{64}\n$")
        self.assertNotEqual(a.stdout, b.stdout)


# What smisd takes as an API key (daemon/auth.c): whatever follows "Bearer "
# and the spaces after it, 1-512 bytes, any byte but a control character
# other than a tab (RFC 9110 5.5: CR and LF end the header line, the others
# make it invalid), without the spaces and tabs after it (5.5). smisctl and smis-encrypt take exactly these (and hash-key
# hashes them); KeysSmisdTakes checks smisd authenticates each.
KEYS_TAKEN = (b"two words", b"tab\there", b"caf\xc3\xa9-key", b"latin1-\xe9-key", b"\tleading-tab", b"k" * 512)
# And what they refuse (exit 2, "the API key <why>"; None: too long, said
# differently for a key and for what may be a gateway token).
LONGER_THAN_A_KEY = b"is longer than the 512 bytes smisd takes"
TRAILING_OWS = b"ends with a space or tab, not part of an HTTP header's value: smisd would read another key"
LONGER_THAN_A_TOKEN = b"is longer than smisd takes: 512 bytes, 8192 for a gateway token (a JWT)"
CONTROL = b"holds a control character other than a tab, which smisd refuses"
KEYS_REFUSED = ((b"", b"is empty"),
                (b" leading-space", b"starts with a space, which smisd skips: it would read another key"),
                (b"trailing-space ", TRAILING_OWS), (b"trailing-tab\t", TRAILING_OWS),
                (b"line\nbreak", b"holds a line break (CR or LF), which cannot travel in an HTTP header"),
                (b"bare\rcr", b"holds a line break (CR or LF), which cannot travel in an HTTP header"),
                (b"crlf\r\nX-Evil: 1", b"holds a line break (CR or LF), which cannot travel in an HTTP header"),
                (b"esc\x1b[2J-key", CONTROL), (b"del\x7f-key", CONTROL), (b"soh\x01-key", CONTROL),
                (b"\x1fleading-us", CONTROL), (b"vt\x0b", CONTROL),
                (b"k" * 513, None))


class KeysStack(Stack):
    """The harness's stack, inst-a also keyed by every key of KEYS_TAKEN
    and KEYS_REFUSED (the digests of those smisd should never match)."""

    def write_conf(self, extra_strategy="", path=None):
        super().write_conf(extra_strategy, path)
        conf = read(path or self.conf)
        first = '"sha256:%s"' % hashlib.sha256(KEYS["inst-a"].encode()).hexdigest()
        more = "".join(', "sha256:%s"' % hashlib.sha256(k).hexdigest() for k, _ in KEYS_REFUSED if k)
        more += "".join(', "sha256:%s"' % hashlib.sha256(k).hexdigest() for k in KEYS_TAKEN)
        write(path or self.conf, conf.replace(first, first + more, 1))


class KeysSmisdTakes(unittest.TestCase):
    """smisctl's and smis-encrypt's check of an API key is smisd's: the
    keys smisd authenticates are taken (bytes 0x80-0xFF, spaces, tabs and
    control characters included), the others refused before any request.
    It took 1-8192 printable characters without spaces: it refused keys
    smisd takes and sent keys smisd never could (600 bytes)."""

    @classmethod
    def setUpClass(cls):
        cls.stack = KeysStack().start()

    @classmethod
    def tearDownClass(cls):
        rc, problems, _ = cls.stack.stop()
        if rc != 0 or problems:
            raise AssertionError("smisd exit %r, unexpected log lines:\n%s" % (rc, "\n".join(problems[:20])))

    def status(self, key, url=None):
        return smisctl("status", "--url", url or self.stack.base, "--key", key, "msg_00000000000000000000000000",
                       text=False)

    def smisd_answers(self, key):
        """smisd's status for a GET with "Authorization: Bearer <key>" as is."""
        with socket.create_connection(("127.0.0.1", self.stack.smisd_port), timeout=10) as c:
            c.sendall(b"GET /v1/messages/msg_00000000000000000000000000 HTTP/1.1\r\nHost: smis\r\n"
                      b"Authorization: Bearer " + key + b"\r\nConnection: close\r\n\r\n")
            return int(c.makefile("rb").readline().split()[1])

    def test_keys_smisd_takes_are_taken(self):
        for key in KEYS_TAKEN:
            with self.subTest(key=key[:20]):
                self.assertEqual(self.smisd_answers(key), 404)
                r = self.status(key)
                self.assertEqual(r.returncode, 3, r.stderr)
                self.assertIn(b"HTTP 404 not_found", r.stderr)
                r = smisctl("hash-key", "--", key, text=False)
                self.assertEqual(r.stdout, b"sha256:%s\n" % hashlib.sha256(key).hexdigest().encode(), r.stderr)

    def test_smisd_refuses_a_key_with_a_control_character_before_hashing_it(self):
        # libmicrohttpd passes a header's control characters through, and
        # smisd hashed such a key as any other: each of these, whose digest
        # KeysStack configures for inst-a, authenticated. An Authorization
        # header with one is malformed (RFC 9110 5.5): the 401 of any other
        # such header, the POST's detail saying why as for a malformed token.
        body = json.dumps({"recipient": CITIZENS["no_app"], "content": {"nl": {"title": "t", "body": "b"}}})
        for key in [k for k, why in KEYS_REFUSED if why == CONTROL]:
            header = [("Authorization", "Bearer " + key.decode("utf-8", "surrogateescape"))]
            with self.subTest(key=key):
                for method, path, sent in (("GET", "/v1/messages/msg_00000000000000000000000000", None),
                                           ("POST", "/v1/messages", body.encode())):
                    status, hdrs, answer = raw_request(self.stack.smisd_port, method, path,
                                                       header + [("Content-Type", "application/json")], sent)
                    problem = json.loads(answer)
                    self.assertEqual((status, problem["code"]), (401, "unauthorized"), answer)
                    self.assertNotIn("field", problem)
                    self.assertEqual(hdrs["www-authenticate"], 'Bearer realm="smis"')
                self.assertTrue(problem["detail"].endswith("(malformed)"), problem["detail"])

    def test_keys_smisd_never_takes_are_refused_before_any_request(self):
        for key, why in KEYS_REFUSED:
            with self.subTest(key=key[:20]):
                if key and b"\n" not in key and b"\r" not in key:
                    self.assertEqual(self.smisd_answers(key), 401)
                r = self.status(key)
                self.assertEqual((r.returncode, r.stdout), (2, b""))
                self.assertEqual(r.stderr, b"smisctl: the API key %s\n" % (why or LONGER_THAN_A_TOKEN))
        # A gateway token (a JWT's compact form) may be up to 8192 bytes;
        # anything else longer than 512 never authenticates.
        closed = "http://127.0.0.1:%d" % free_port()
        jwt = b"e" * 4000 + b"." + b"c" * 4000 + b"." + b"s" * 190
        self.assertEqual(self.status(jwt, closed).returncode, 3)
        for key in (jwt + b"s", b"k" * 600, b"e" * 400 + b"." + b"c" * 200 + b".s/s"):
            with self.subTest(key=key[:20]):
                r = self.status(key, closed)
                self.assertEqual((r.returncode, r.stderr), (2, b"smisctl: the API key %s\n" % LONGER_THAN_A_TOKEN))
        # smis-encrypt's is the same check.
        r = subprocess.run([os.path.join(BUILD, "tools/smis-encrypt/smis-encrypt"), "--url", closed, "--key",
                            " x", "--to", "+32470000001", "--title", "t", "--body", "b"], capture_output=True)
        self.assertEqual((r.returncode, r.stderr), (2, b"smis-encrypt: the API key " + KEYS_REFUSED[1][1] + b"\n"))


class CheckConfig(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="smisctl-it-")
        self.conf = os.path.join(self.dir, "smisd.conf")
        offline_conf(self.conf)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_valid(self):
        r = smisctl("check-config", "-c", self.conf, "--smisd", SMISD)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("configuration OK", r.stdout)

    def test_errors_name_file_and_line(self):
        write(self.conf, "bogus_setting = 1;\n", "a")
        line = len(read(self.conf).splitlines())
        r = smisctl("check-config", "-c", self.conf, "--smisd", SMISD)
        self.assertEqual(r.returncode, 1)
        self.assertIn("%s:%d: unknown setting 'bogus_setting'" % (self.conf, line), r.stderr)

    def test_syntax_error(self):
        write(self.conf, "\nthis is = = not libconfig;\n", "a")
        line = len(read(self.conf).splitlines())
        r = smisctl("check-config", "-c", self.conf, "--smisd", SMISD)
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, re.escape(self.conf) + ":%d: " % line)

    def edit_conf(self, *edits):
        """Apply (old, new) replacements, each to exactly one place of the
        configuration; the line of each `new`, in order."""
        text = read(self.conf)
        for old, new in edits:
            self.assertEqual(text.count(old), 1, old)
            text = text.replace(old, new)
        write(self.conf, text)
        return [text[:text.index(new)].count("\n") + 1 for _, new in edits]

    def test_a_settings_error_hides_no_other(self):
        # One run shows every independent error: an error in the settings
        # used to end the load before the blocks were read.
        lines = self.edit_conf(
            (re.search(r'phone_hash_key = "\w+"', read(self.conf)).group(0), 'phone_hash_key = "not-hex"'),
            ('api_key = "ringring-test-key";', 'api_key = "ringring-test-key"; bogus_key = 1;'),
            ('{ name = "govapp_only"; steps = ( { plugin = "govapp_only";',
             '{ name = "govapp_only"; steps = ( { plugin = "no_such_plugin";'),
            ('sender = "32470999999";', 'sender = "+32x";'))
        r = smisctl("check-config", "-c", self.conf, "--smisd", SMISD)
        self.assertEqual(r.returncode, 1, r.stderr)
        for line, error in zip(lines, ("store: 'phone_hash_key' must be 64 hex digits",
                                       "unknown setting 'bogus_key' in channel 'ringring'",
                                       "no_such_plugin.so: cannot load",
                                       "institution 'inst-b': 'sender' must be")):
            self.assertRegex(r.stderr, "(?m)^%s:%d: .*%s" % (re.escape(self.conf), line, re.escape(error)))

    def test_a_failed_channel_is_reported_once(self):
        # Four steps name 'govapp': its block's error used to come back as
        # four "no channel named 'govapp'" lines, as if it were not declared.
        # A channel declared nowhere is still an error of its step.
        bogus, ghost = self.edit_conf(
            ('{ name = "govapp"; plugin = "govapp";', '{ name = "govapp"; plugin = "govapp"; bogus = 1;'),
            ('{ name = "sms_only"; steps = ( { plugin = "sms_only"; channel = "ringring"; }',
             '{ name = "sms_only"; steps = ( { plugin = "sms_only"; channel = "ghost"; }'))
        r = smisctl("check-config", "-c", self.conf, "--smisd", SMISD)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(r.stderr.splitlines(),
                         ["%s:%d: unknown setting 'bogus' in channel 'govapp'" % (self.conf, bogus),
                          "%s:%d: 'channel': no channel named 'ghost'" % (self.conf, ghost)])

    def test_plugins_are_not_loaded_without_plugin_dir(self):
        # Not from the default folder either: the plugins there are not
        # the ones the operator meant. The rest is still checked.
        plugin_dir, sender = self.edit_conf((re.search(r'plugin_dir = "[^"]*";', read(self.conf)).group(0),
                                             "plugin_dir = 5;"),
                                            ('sender = "32470999999";', 'sender = "+32x";'))
        r = smisctl("check-config", "-c", self.conf, "--smisd", SMISD)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("%s:%d: config: 'plugin_dir' must be a string" % (self.conf, plugin_dir), r.stderr)
        self.assertIn("%s:%d: no plugin loaded, channel and strategy step settings not checked" %
                      (self.conf, plugin_dir), r.stderr)
        self.assertIn("%s:%d: institution 'inst-b': 'sender' must be" % (self.conf, sender), r.stderr)
        self.assertNotIn(".so", r.stderr)

    def test_smisd_found_beside_smisctl(self):
        bindir = os.path.join(self.dir, "bin")
        os.mkdir(bindir)
        shutil.copy(SMISCTL, os.path.join(bindir, "smisctl"))
        os.symlink(SMISD, os.path.join(bindir, "smisd"))
        r = smisctl("check-config", "-c", self.conf, exe=os.path.join(bindir, "smisctl"))
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_no_smisd_is_an_error(self):
        r = smisctl("check-config", "-c", self.conf, "--smisd", "/nonexistent/smisd")
        self.assertEqual(r.returncode, 3)
        self.assertIn("/nonexistent/smisd", r.stderr)


class Plugins(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="smisctl-it-")
        self.conf = os.path.join(self.dir, "smisd.conf")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_lists_instances_and_descriptors(self):
        offline_conf(self.conf)
        r = smisctl("plugins", "-c", self.conf)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        out = r.stdout
        self.assertRegex(out, r"(?m)^  ringring\s+plugin ringring$")
        self.assertRegex(out, r"(?m)^  app_then_sms\s+steps govapp_only -> sms_only$")
        self.assertRegex(out, r"(?m)^  ringring\.so\s+channel\s+ringring \S+ ABI 1 caps send,sms,status$")
        self.assertRegex(out, r"(?m)^  govapp\.so\s+channel\s+govapp \S+ ABI 1 caps lookup,send,app,status$")
        self.assertRegex(out, r"(?m)^  sms_only\.so\s+strategy sms_only \S+ ABI 1$")
        self.assertIn("SMS through RingRing", out)
        self.assertEqual(r.stderr, "")

    def test_missing_plugin_and_wrong_kind(self):
        offline_conf(self.conf,
                     extra_channel='  { name = "extra"; plugin = "nosuch"; }',
                     extra_strategy=',\n  { name = "odd"; steps = ( { plugin = "ringring"; } ); }')
        r = smisctl("plugins", "-c", self.conf)
        self.assertEqual(r.returncode, 1)
        self.assertIn("channel 'extra' names plugin 'nosuch': no nosuch.so", r.stderr)
        self.assertIn("names 'ringring', a channel plugin where a strategy plugin is needed", r.stderr)

    def test_names_show_control_characters_as_question_marks(self):
        # The names the configuration gives (written with libconfig escapes)
        # and the plugin folder's (as they are) reach the operator's
        # terminal: an ESC, a BEL or a UTF-8 CSI (U+009B) there shows as
        # '?', never raw.
        offline_conf(self.conf,
                     extra_channel='  { name = "\\x1b[31mred"; plugin = "no\\x1b]0;t\\x07such"; },\n'
                                   '  { name = "\\xc2\\x9b2Jbare"; }',
                     extra_strategy=',\n  { name = "od\\x1b[5md"; steps = ( { plugin = "ringring"; } ); }')
        plugins = os.path.join(self.dir, "plugins\x1b[4m")
        os.mkdir(plugins)
        for name, target in (("ringring.so", "ringring.so"), ("sms\x1b[1monly.so", "sms_only.so")):
            os.symlink(os.path.join(BUILD, "plugin-dir", target), os.path.join(plugins, name))
        r = smisctl("plugins", "-c", self.conf, "--dir", plugins)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        for out in (r.stdout, r.stderr):
            for control in ("\x1b", "\x07", "\x9b"):
                self.assertNotIn(control, out)
        shown = os.path.join(self.dir, "plugins?[4m")
        self.assertRegex(r.stdout, r"(?m)^  \?\[31mred\s+plugin no\?\]0;t\?such$")
        self.assertRegex(r.stdout, r"(?m)^  od\?\[5md\s+steps ringring$")
        self.assertIn("plugins in %s (2):" % shown, r.stdout)
        self.assertRegex(r.stdout, r"(?m)^  sms\?\[1monly\.so\s+strategy ")
        self.assertRegex(r.stderr, r"(?m)^smisctl: .*:\d+: channel '\?2Jbare' has no plugin$")
        self.assertIn("smisctl: step 1 of strategy 'od?[5md' names 'ringring', a channel plugin", r.stderr)
        self.assertIn("smisctl: channel '?[31mred' names plugin 'no?]0;t?such': no no?]0;t?such.so in "
                      + shown + "\n", r.stderr)

    def test_loader_errors_show_control_characters_as_question_marks(self):
        # dlerror() quotes the plugin file's name: a UTF-8 CSI (U+009B) there,
        # or a lone 9B byte, shows as '?', as a plugin descriptor's texts do.
        for name in (b"c1\xc2\x9b[2J.so", b"lone\x9b[2J.so"):
            write(os.path.join(os.fsencode(self.dir), name), "not an ELF file\n")
        r = smisctl("plugins", "--dir", self.dir)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertNotIn("\x9b", r.stdout)
        self.assertRegex(r.stdout, r"(?m)^  c1\?\[2J\.so\s+NOT LOADABLE: \S*/c1\?\[2J\.so: ")
        self.assertRegex(r.stdout, r"(?m)^  lone\?\[2J\.so\s+NOT LOADABLE: \S*/lone\?\[2J\.so: ")

    def test_broken_plugins_are_named(self):
        r = smisctl("plugins", "--dir", TEST_PLUGINS)
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stdout, r"(?m)^  badabi\.so\s+ABI 2, NOT LOADABLE")
        self.assertRegex(r.stdout, r"(?m)^  nodesc\.so\s+NOT A PLUGIN")
        self.assertRegex(r.stdout, r"(?m)NOT LOADABLE: a mandatory \w+ op is missing")
        self.assertRegex(r.stdout, r"(?m)^  fakechan\.so\s+channel\s+fakechan ")

    def test_directory_include_is_refused(self):
        # libconfig exit()s when it cannot read an @include'd file; smisctl
        # checks the targets first, as smisd does.
        offline_conf(self.conf)
        os.mkdir(os.path.join(self.dir, "conf.d"))
        with open(self.conf, "a") as f:
            f.write('@include "conf.d"\n')
        with open(self.conf) as f:
            line = len(f.read().splitlines())
        r = smisctl("plugins", "-c", self.conf)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn('%s:%d: @include "conf.d": not a regular file' % (self.conf, line), r.stderr)
        self.assertNotIn("flex", r.stderr)

    def test_file_names_show_control_characters_as_question_marks(self):
        # The file names the configuration @includes (as they are: libconfig
        # reads no escapes there) reach the operator's terminal in the
        # include check's and libconfig's errors: an ESC shows as '?'.
        offline_conf(self.conf)
        os.mkdir(os.path.join(self.dir, "conf\x1b[7m.d"))
        write(self.conf, '@include "conf\x1b[7m.d"\n', "a")
        line = len(read(self.conf).splitlines())
        r = smisctl("plugins", "-c", self.conf)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertNotIn("\x1b", r.stderr)
        self.assertIn('%s:%d: @include "conf?[7m.d": not a regular file' % (self.conf, line), r.stderr)

        write(os.path.join(self.dir, "inc\x1b]0;t\x07.conf"), "\nnot valid = ;\n")
        write(self.conf, read(self.conf).replace('@include "conf\x1b[7m.d"', '@include "inc\x1b]0;t\x07.conf"'))
        r = smisctl("plugins", "-c", self.conf)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        for control in ("\x1b", "\x07"):
            self.assertNotIn(control, r.stderr)
        self.assertIn("inc?]0;t?.conf:2: syntax error", r.stderr)

    def test_unreadable_config(self):
        with open(self.conf, "w") as f:
            f.write("channels = ( { name = ; } );\n")
        r = smisctl("plugins", "-c", self.conf)
        self.assertEqual(r.returncode, 1)
        self.assertIn(self.conf + ":1:", r.stderr)


class ForeignAnswer(http_server.BaseHTTPRequestHandler):
    """Whatever may listen at --url instead of smisd: answers every GET with
    the server's `answers[path]`, (status, content type, body bytes)."""

    def do_GET(self):
        status, ctype, body = self.server.answers[self.path]
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class ForeignAnswers(unittest.TestCase):
    """What smisctl prints of an answer goes to a terminal: whatever the
    server sent, no control character reaches it, nor a byte that is no
    UTF-8 (fuzz_answer found a lone 0x9B in a JSON string printed raw, and
    a body that is not JSON printed raw whole)."""

    def setUp(self):
        self.server = http_server.HTTPServer(("127.0.0.1", 0), ForeignAnswer)
        self.server.answers = {}
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.addCleanup(self.server.server_close)
        self.addCleanup(self.server.shutdown)

    def status(self, answer):
        path = "/v1/messages/msg_01J2Z8Q4XK7M3N5P9R2T6V8W0X"
        self.server.answers[path] = answer
        return smisctl("status", "--url", "http://127.0.0.1:%d" % self.server.server_port, path.split("/")[-1],
                       env_extra={"SMIS_API_KEY": KEYS["inst-a"]}, text=False)

    def assert_shown_safely(self, out):
        text = out.decode("utf-8")  # fails on a byte that is no UTF-8
        self.assertEqual([c for c in text if c != "\n" and (ord(c) < 0x20 or 0x80 <= ord(c) <= 0x9f)], [])

    def test_a_body_that_is_not_json(self):
        r = self.status((502, "text/html", b"<h1>Bad gateway</h1>\r\n\x1b]0;owned\x07\x1b[2J caf\xc3\xa9 \x9b\r\n"))
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assert_shown_safely(r.stdout)
        self.assertEqual(r.stdout.decode(), "<h1>Bad gateway</h1>\n?]0;owned??[2J caf\u00e9 ?\n")

    def test_a_json_string_that_is_not_utf8(self):
        r = self.status((200, "application/json", b'{"id":"msg_1","device":"nl\x9b[2J\xc2\x9bx\xff"}'))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_shown_safely(r.stdout)
        self.assertIn('"device":"nl\ufffd[2J\\u009bx\ufffd"', r.stdout.decode())


class Api(StackTestCase):
    """send / status / reload against smisd + simulators."""

    def run_ctl(self, *args, key="inst-a", **kw):
        env = {"SMIS_API_KEY": KEYS[key]} if key else {}
        return smisctl(*args, env_extra=env, **kw)

    def send(self, *args, key="inst-a"):
        return self.run_ctl("send", "--url", self.stack.base, "--title", "Titel", "--body", "Tekst",
                            *args, key=key)

    def test_send_sent(self):
        r = self.send("--to", "0470 00 00 04", "--strategy", "sms_only", "--reference", "ref-1")
        self.assertEqual(r.returncode, 0, r.stderr)
        answer = json.loads(r.stdout)
        self.assertEqual(answer["status"], "sent")
        self.assertEqual(answer["channel"], "ringring")
        self.assertEqual(answer["reference"], "ref-1")
        # The national form reached the SMS provider as E.164 digits.
        sms = sim_requests(self.stack, "ringring")
        self.assertEqual([q["to"] for q in sms], [CITIZENS["no_app"][1:]])
        self.assertEqual(self.stack.get(answer["id"]).status, 200)

    def test_send_failed_exits_1(self):
        # No app for this citizen: govapp_only delivers nothing.
        r = self.send("--to", CITIZENS["no_app"], "--strategy", "govapp_only")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(json.loads(r.stdout)["status"], "failed")

    def test_api_errors_exit_3_with_the_problem_code(self):
        r = self.send("--to", CITIZENS["no_app"], "--strategy", "no_such_strategy")
        self.assertEqual(r.returncode, 3)
        self.assertIn("HTTP 422 unknown_strategy", r.stderr)
        self.assertEqual(json.loads(r.stdout)["code"], "unknown_strategy")
        r = self.run_ctl("send", "--url", self.stack.base, "--key", "wrong-key", "--to", CITIZENS["no_app"],
                         "--title", "t", "--body", "b", key=None)
        self.assertEqual(r.returncode, 3)
        self.assertIn("HTTP 401 unauthorized", r.stderr)
        r = self.send("--to", "+3222222222", key="inst-a")
        self.assertEqual(r.returncode, 3)
        self.assertIn("not_mobile", r.stderr)
        # inst-b may use sms_only only.
        r = self.send("--to", CITIZENS["no_app"], "--strategy", "govapp_first", key="inst-b")
        self.assertEqual(r.returncode, 3)
        self.assertIn("HTTP 403 strategy_forbidden", r.stderr)

    def test_what_smisd_refuses_by_syntax_is_a_usage_error(self):
        # Refused before any request (exit 2, where smisd's 400 made it 3),
        # and only what smisd refuses: the same body posted to it is
        # answered 400 for that field, and values at the edge of what it
        # takes go through.
        options = {"--to": CITIZENS["no_app"], "--strategy": "sms_only", "--lang": "fr", "--title": "t", "--body": "b"}
        for opt, value, field, code, says in SEND_REFUSED:
            with self.subTest(opt=opt, value=value[:20]):
                given = dict(options, **{opt: value})
                r = self.run_ctl("send", "--url", self.stack.base, *sum(given.items(), ()))
                self.assertEqual((r.returncode, r.stderr), (2, "smisctl send: %s\n" % says))
                a = self.stack.send(send_body(given))
                self.assertEqual((a.status, a.json["code"], a.json["field"]), (400, code, field), a.raw)
        for opt, value in SEND_TAKEN:
            with self.subTest(opt=opt, value=value[:20]):
                r = self.run_ctl("send", "--url", self.stack.base, *sum(dict(options, **{opt: value}).items(), ()))
                self.assertIn(r.returncode, (0, 1), r.stderr)  # 1: an SMS text RingRing finds too long
                self.assertRegex(json.loads(r.stdout)["id"], "^msg_")

    def test_a_strategy_no_strategy_can_have_as_name_is_a_usage_error(self):
        # smisd refuses a strategy name other than 1-48 characters of
        # [a-z0-9_-] in its configuration, so such a --strategy could only
        # be answered 422 unknown_strategy (it was sent: exit 3). Now exit
        # 2 before any request; the longest name it could be is still sent.
        says = "smisctl send: --strategy must name a strategy: 1-48 characters of a-z, 0-9, '_' and '-'\n"
        options = {"--to": CITIZENS["no_app"], "--lang": "fr", "--title": "t", "--body": "b"}
        for name in ("", "SMS_ONLY", "sms only", "sms.only", "sms_only/x", "caf\u00e9"):
            with self.subTest(name=name):
                given = dict(options, **{"--strategy": name})
                r = self.run_ctl("send", "--url", self.stack.base, *sum(given.items(), ()))
                self.assertEqual((r.returncode, r.stdout, r.stderr), (2, "", says))
                a = self.stack.send(send_body(given))
                self.assertEqual((a.status, a.json["code"], a.json["field"]), (422, "unknown_strategy", "/strategy"),
                                 a.raw)
        r = self.send("--to", CITIZENS["no_app"], "--strategy", "s" * 48)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("HTTP 422 unknown_strategy", r.stderr)

    def test_no_key_is_a_usage_error(self):
        r = self.send("--to", CITIZENS["no_app"], key=None)
        self.assertEqual(r.returncode, 2)
        self.assertIn("SMIS_API_KEY", r.stderr)

    def test_transport_error_exits_3(self):
        r = self.run_ctl("send", "--url", "http://127.0.0.1:%d" % free_port(), "--to", CITIZENS["no_app"],
                         "--title", "t", "--body", "b", "--timeout", "5")
        self.assertEqual(r.returncode, 3)
        self.assertTrue(r.stderr.startswith("smisctl: POST http://127.0.0.1:"), r.stderr)

    def test_key_file_html_language_and_idempotency(self):
        key_file = os.path.join(self.stack.dir, "key")
        with open(key_file, "w") as f:
            f.write(KEYS["inst-a"] + "\n")
        args = ("send", "--url", self.stack.base + "/", "--key-file", key_file, "--to", CITIZENS["app_fr"],
                "--lang", "fr", "--title", "Titre", "--body", "<p>Votre <b>document</b></p>", "--html",
                "--strategy", "govapp_first", "--idempotency-key", "smisctl-it-1")
        first = self.run_ctl(*args, key=None)
        self.assertEqual(first.returncode, 0, first.stderr)
        self.assertEqual(json.loads(first.stdout)["channel"], "govapp")
        self.assertNotIn("idempotent replay", first.stderr)
        again = self.run_ctl(*args, key=None)
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertIn("idempotent replay", again.stderr)
        self.assertEqual(json.loads(again.stdout)["id"], json.loads(first.stdout)["id"])
        # One notification reached the app backend: the replay sent nothing.
        notes = [q for q in sim_requests(self.stack, "govapp") if q["path"].endswith("/notifications")]
        self.assertEqual(len(notes), 1)

    def test_send_out_of_memory_fails_rather_than_send_less(self):
        # As smis-encrypt's (test_govapp_full.py): json-c out of memory
        # while the body is built (tests/plugins/nomem_json.so fails
        # json_object_new_string of "nomem-..." and the add of a
        # "nomem-add-..." string) lost the member, and smisd sent the
        # message without it. Now exit 3, and nothing is sent.
        env = dict(preloading("nomem_json"), SMIS_API_KEY=KEYS["inst-a"])
        base = ("send", "--url", self.stack.base, "--to", CITIZENS["no_app"], "--strategy", "sms_only")
        for extra in (("--title", "nomem-t", "--body", "b"), ("--title", "t", "--body", "nomem-add-b"),
                      ("--title", "t", "--body", "b", "--reference", "nomem-1"),
                      ("--title", "t", "--body", "b", "--reference", "nomem-add-1"),
                      ("--title", "t", "--body", "b", "--sms-text", "nomem-add-sms")):
            with self.subTest(extra=extra):
                r = smisctl(*base, *extra, env_extra=env)
                self.assertEqual((r.returncode, r.stdout, r.stderr), (3, "", "smisctl: out of memory\n"))
        self.assertEqual(sim_requests(self.stack, "ringring"), [])
        r = smisctl(*base, "--title", "t", "--body", "b", "--reference", "ref-nomem", env_extra=env)
        self.assertEqual((r.returncode, json.loads(r.stdout)["reference"]), (0, "ref-nomem"), r.stderr)

    def test_status(self):
        sent = json.loads(self.send("--to", CITIZENS["no_app"], "--strategy", "sms_only").stdout)
        r = self.run_ctl("status", "--url", self.stack.base, sent["id"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["id"], sent["id"])
        # Another institution's message looks like a missing one.
        r = self.run_ctl("status", "--url", self.stack.base, sent["id"], key="inst-b")
        self.assertEqual(r.returncode, 3)
        self.assertIn("HTTP 404 not_found", r.stderr)
        r = self.run_ctl("status", "--url", self.stack.base, "msg_00000000000000000000000000")
        self.assertEqual(r.returncode, 3)
        # smisd's ids are case-sensitive: what smisctl status refuses in
        # lower case (Usage) is no id of smisd's either.
        self.assertEqual(self.stack.get(sent["id"].lower()).status, 404)

    def test_status_escapes_c1_controls(self):
        # A delivery report's device name is GovApp's, and `smisctl status`
        # shows it to the operator. GovApp's plugin now refuses one that is
        # not printable ASCII, but an older smisd stored it as it came: a
        # C1 control (U+009B, a terminal's CSI) there, from the store, is
        # shown as its \u escape, the same JSON.
        sent = json.loads(self.send("--to", CITIZENS["app_nl"], "--strategy", "govapp_only").stdout)
        self.assertEqual(sent["status"], "sent", sent)
        self.stack.store_report(sent["id"], "govapp", "nl\x9b[2Jphone", "read", "govapp_callback_read")
        r = self.run_ctl("status", "--url", self.stack.base, sent["id"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("\x9b", r.stdout)
        self.assertIn('"device":"nl\\u009b[2Jphone"', r.stdout)
        self.assertEqual([x["device"] for x in json.loads(r.stdout)["reports"]], ["nl\x9b[2Jphone"])

    def generation(self):
        return http("GET", self.stack.base + "/healthz").json["generation"]

    def wait_generation(self, want):
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.generation() == want:
                return
            time.sleep(0.05)
        self.fail("generation %d not reached (now %d)" % (want, self.generation()))

    def test_reload(self):
        pidfile = os.path.join(self.stack.dir, "smisd.pid")
        with open(pidfile, "w") as f:
            f.write("%d\n" % self.stack.smisd.pid)
        before = self.generation()
        r = smisctl("reload", "--pidfile", pidfile, "-c", self.stack.conf, "--smisd", SMISD)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.wait_generation(before + 1)

        # An invalid file is checked first and smisd is not signalled.
        bad = os.path.join(self.stack.dir, "bad.conf")
        write(bad, read(self.stack.conf) + "\nnot = = libconfig;\n")
        r = smisctl("reload", "--pidfile", pidfile, "-c", bad, "--smisd", SMISD)
        self.assertEqual(r.returncode, 1)
        self.assertIn("not reloaded", r.stderr)
        time.sleep(0.3)
        self.assertEqual(self.generation(), before + 1)

    def test_reload_refuses_stale_pid_files(self):
        pidfile = os.path.join(self.stack.dir, "stale.pid")
        r = smisctl("reload", "--pidfile", pidfile)
        self.assertEqual(r.returncode, 1)
        # A live process that is not smisd: this test runner.
        with open(pidfile, "w") as f:
            f.write("%d\n" % os.getpid())
        r = smisctl("reload", "--pidfile", pidfile)
        self.assertEqual(r.returncode, 1)
        self.assertIn("is not smisd", r.stderr)
        # A process that is gone.
        p = subprocess.Popen(["true"])
        p.wait()
        with open(pidfile, "w") as f:
            f.write("%d\n" % p.pid)
        r = smisctl("reload", "--pidfile", pidfile)
        self.assertEqual(r.returncode, 1)
        with open(pidfile, "w") as f:
            f.write("garbage\n")
        self.assertEqual(smisctl("reload", "--pidfile", pidfile).returncode, 1)


if __name__ == "__main__":
    unittest.main()
