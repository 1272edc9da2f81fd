"""
harness.py - start smisd and both simulators on loopback for integration
tests, and talk to them over real HTTP (standard library only).

Every process is started by the test and stopped by PID. smisd's log is
scanned at the end: an ERROR or WARN line the test did not declare as
expected fails the test.

SMIS_TEST_WRAPPER="valgrind ..." runs smisd and both simulators under that
command (SMIS_VALGRIND_DAEMON=1: under VALGRIND_ARGV below); waits and
timeouts are then SLOW times longer, and a simulator's non-zero exit, any
line the wrapper writes to a log or its exit 99 (run_wrapped) fails the test (README.md, Tests).
"""
import contextlib
import hashlib
import json
import os
import random
import re
import resource
import shlex
import shutil
import signal
import sqlite3
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

import conformance

BUILD = os.environ.get("top_builddir") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SRC = os.environ.get("top_srcdir") or BUILD

# What the integration suite runs smisd under when asked to use the build's
# valgrind: a memory error or a definite leak makes the process exit 99 and
# writes its report to the process's log, which fails the test.
VALGRIND_ARGV = ["--quiet", "--error-exitcode=99", "--leak-check=full",
                 "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite",
                 "--suppressions=" + os.path.join(SRC, "tests/valgrind.supp")]


def valgrind():
    """valgrind's path when the build found it and this run may use it
    (SMIS_NO_VALGRIND: the sanitizer builds, whose binaries valgrind cannot
    run); else None."""
    if os.environ.get("VALGRIND") and not os.environ.get("SMIS_NO_VALGRIND"):
        return os.environ["VALGRIND"]
    return None


def wrapper():
    """The command smisd and the simulators run under ([] for none)."""
    if os.environ.get("SMIS_TEST_WRAPPER"):
        return shlex.split(os.environ["SMIS_TEST_WRAPPER"])
    if os.environ.get("SMIS_VALGRIND_DAEMON") and os.environ.get("VALGRIND"):
        return [os.environ["VALGRIND"]] + VALGRIND_ARGV
    return []


WRAPPER = wrapper()
# How much longer everything takes under the wrapper: valgrind runs smisd
# 10-50 times slower, and a start-up or a wait sized for the plain build
# would fail the test for nothing. SMIS_TEST_SLOW overrides it.
SLOW = float(os.environ.get("SMIS_TEST_SLOW") or (10 if WRAPPER else 1))


def ms(n):
    """n milliseconds of smisd's configured time or of a simulator's delay,
    SLOW times more: a timeout and the delay that must stay within it (or
    go past it) keep their ratio when everything runs slower."""
    return int(n * SLOW)




def upstream_http(timeout_ms=2000):
    """A channel's upstream HTTP timeouts in the harness's configuration."""
    return "http = { timeout_ms = %d; connect_timeout_ms = %d; };" % (ms(timeout_ms), ms(1000))


# Each channel's by default.
UPSTREAM_HTTP = upstream_http()

KEYS = {"inst-a": "key-a-0123456789abcdef", "inst-b": "key-b-0123456789abcdef",
        "inst-c": "key-c-0123456789abcdef"}
GOVAPP_TOKEN = "govapp-test-token"
GOVAPP_CALLBACK_SECRET = "govapp-test-callback-secret"
RINGRING_KEY = "ringring-test-key"
RINGRING_CALLBACK_TOKEN = "rr-cb-token-0123456789"
PHONE_HASH_KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
# --idempotency-key values for the command-line tools (smisctl send,
# smis-encrypt), and the exit of a send to a closed port with them: 2
# (refused up front, smisd's syntax) or 3 (sent, or tried to be).
IDEMPOTENCY_KEYS = (("", 2), ("a b", 2), ("caf\u00e9", 2), ("a/b", 2), ("a\r\nX-Evil: 1", 2), ("k" * 129, 2),
                    ("k" * 128, 3), ("Case-2026_0042.a:b", 3))
# What smisd refuses by syntax alone in a send (docs/openapi.yaml), which
# smisctl send and smis-encrypt therefore refuse before any request (exit
# 2): the option and its value (in French, --lang fr), the field and code
# of smisd's 400 for it, and what the tools say after "<command>: ".
SEND_REFUSED = (
    ("--title", "a\x1bb", "/content/fr/title", "invalid_utf8",
     "the fr title holds a control character (none is allowed)"),
    ("--title", "a\tb", "/content/fr/title", "invalid_utf8",
     "the fr title holds a control character (none is allowed)"),
    ("--title", "\u00e9" * 129, "/content/fr/title", "field_too_long",
     "the fr title is 258 bytes, at most 256 are allowed"),
    ("--title", "", "/content/fr/title", "missing_field", "the fr title must not be empty"),
    ("--body", "a\x07b", "/content/fr/body", "invalid_utf8",
     "the fr body holds a control character (only tab, newline and carriage return are allowed)"),
    ("--body", "b" * 32769, "/content/fr/body", "field_too_long",
     "the fr body is 32769 bytes, at most 32768 are allowed"),
    ("--body", "", "/content/fr/body", "missing_field", "the fr body must not be empty"),
    ("--sms-text", "a\u009bb", "/content/fr/sms_text", "invalid_utf8",
     "the fr SMS text holds a control character (only tab, newline and carriage return are allowed)"),
    ("--sms-text", "s" * 1601, "/content/fr/sms_text", "field_too_long",
     "the fr SMS text is 1601 bytes, at most 1600 are allowed"),
    ("--to", "+32470\x1b000004", "/recipient", "invalid_utf8", "--to holds a control character (none is allowed)"),
    ("--to", "0" * 41, "/recipient", "field_too_long", "--to is 41 bytes, at most 40 are allowed"),
    ("--to", "", "/recipient", "missing_field", "--to must not be empty"),
    ("--strategy", "sms_only\x01", "/strategy", "invalid_utf8",
     "--strategy holds a control character (none is allowed)"),
    ("--strategy", "s" * 49, "/strategy", "field_too_long", "--strategy is 49 bytes, at most 48 are allowed"),
    ("--reference", "a\nb", "/reference", "invalid_utf8", "--reference holds a control character (none is allowed)"),
    ("--reference", "r" * 129, "/reference", "field_too_long", "--reference is 129 bytes, at most 128 are allowed"),
    ("--reference", "case 42", "/reference", "invalid_value",
     "--reference may hold letters, digits and . _ : / - only"),
    ("--lang", "es", "/content/es", "unknown_language", "--lang must be nl, fr, de or en"),
)
# And values at the edge of what smisd takes, which neither tool refuses.
SEND_TAKEN = (("--title", "\u00e9" * 128), ("--body", "line 1\r\n\tline 2"), ("--sms-text", "s\t" * 800),
              ("--reference", "case/2026:0042_a.b-" * 6 + "12345678901234"), ("--to", "0470 00 00 02"))
# smisd's log level in every stack: SMIS_LOG_LEVEL=debug runs a suite at the
# most verbose level (privacy audits); SMIS_KEEP_TMP=1 keeps each stack's
# folder (smisd.log, smis.db) after the test.
LOG_LEVEL = os.environ.get("SMIS_LOG_LEVEL", "info")

# Citizen profiles seeded in the GovApp simulator.
CITIZENS = {
    "app_nl": "+32470000001",        # installed, notifications on, nl
    "app_fr": "+32470000002",        # installed, notifications on, fr, two devices
    "app_off": "+32470000003",       # installed, notifications off
    "no_app": "+32470000004",        # not registered
    "bad_key": "+32470000005",       # registered but its only device key is invalid
}

SEED = {"citizens": [
    {"phone": CITIZENS["app_nl"], "installed": True, "notifications": True, "language": "nl",
     "devices": [{"device_id": "nl-phone", "platform": "android"}]},
    {"phone": CITIZENS["app_fr"], "installed": True, "notifications": True, "language": "fr",
     "devices": [{"device_id": "fr-phone", "platform": "ios"}, {"device_id": "fr-tablet", "platform": "android"}]},
    {"phone": CITIZENS["app_off"], "installed": True, "notifications": False, "language": "de",
     "devices": [{"device_id": "off-phone", "platform": "android"}]},
    {"phone": CITIZENS["bad_key"], "installed": True, "notifications": True, "language": "en",
     "devices": [{"device_id": "bad-phone", "platform": "android",
                  "public_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]},
]}


def free_port():
    """A port nothing listens on, for a process started later. Taken below
    the kernel's ephemeral range (32768 up, by default): a port the kernel
    handed out could be handed out again, to a simulator binding port 0 or
    to any outgoing connection, before smisd binds it (seen once in CI)."""
    low, high = 20000, 32000
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            first = int(f.read().split()[0])
        if first <= high:
            low, high = 1024, first
    except (OSError, ValueError, IndexError):
        pass
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(low, high)
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free port in %d-%d" % (low, high))


def preloading(name):
    """smisd's environment to preload tests/plugins/NAME.so."""
    return {"LD_PRELOAD": os.path.join(BUILD, "tests/plugins/.libs/%s.so" % name),
            # A sanitizer build wants its runtime first; this library is not one.
            "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.raw = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return "<%d %s>" % (self.status, self.raw[:300])


# host:port of each smisd a test started -> the answers of it that departed
# from docs/openapi.yaml (conformance.py). http() checks every answer from
# these; a departure fails the test that received it, and, should that
# test have swallowed the AssertionError (a worker thread), Stack.stop().
NONCONFORMING = {}


def smisd_answers_at(base):
    """Check every answer http() receives from base (http://host:port)
    against docs/openapi.yaml."""
    NONCONFORMING.setdefault(urllib.parse.urlsplit(base).netloc, [])


def check_conformance(method, url, response):
    """Fail (AssertionError naming the path, status and departure) when the
    answer of a smisd departs from docs/openapi.yaml."""
    seen = NONCONFORMING.get(urllib.parse.urlsplit(url).netloc)
    if seen is None:
        return response  # a simulator, or a server that is not smisd
    errors = conformance.check(method, url, response)
    if errors:
        text = "%s %s answered %d, not as docs/openapi.yaml says:\n  %s" % (
            method, urllib.parse.urlsplit(url).path, response.status, "\n  ".join(errors))
        seen.append(text)
        raise AssertionError(text)
    return response


def http(method, url, body=None, headers=None, timeout=30):
    timeout *= SLOW
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = body if isinstance(body, (bytes, bytearray)) else json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            response = Response(r.status, r.headers, r.read().decode())
    except urllib.error.HTTPError as e:
        response = Response(e.code, e.headers, e.read().decode())
    return check_conformance(method, url, response)


def run_wrapped(argv, timeout=60):
    """subprocess.run of one of our programs under the wrapper, with text
    stdout and stderr. Exit 99 (the wrapper's --error-exitcode: a memory
    error or definite leak) fails the test whatever exit the test expects."""
    p = subprocess.run(WRAPPER + argv, capture_output=True, text=True, timeout=timeout * SLOW)
    if WRAPPER and p.returncode == 99:
        raise AssertionError("%s under %s: exit 99\n%s" % (argv[0], WRAPPER[0], p.stderr[-3000:]))
    return p


def poll_until(ready, timeout, failure):
    """Call ready() every 5 ms until it is true; past `timeout` seconds,
    fail with the text failure() returns."""
    timeout *= SLOW
    deadline = time.time() + timeout
    while not ready():
        if time.time() > deadline:
            raise AssertionError(failure())
        time.sleep(0.005)


def drain_to_log(stream, log_path):
    with open(log_path, "a") as log:
        for line in stream:
            log.write(line)
            log.flush()


def start_process(argv, ready_pattern, log_path, env=None):
    """Start argv, wait for a stdout/stderr line matching ready_pattern."""
    with open(log_path, "w+") as log:
        p = subprocess.Popen(WRAPPER + argv, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    deadline = time.time() + 20 * SLOW
    pat = re.compile(ready_pattern)
    while time.time() < deadline:
        line = p.stdout.readline()
        if not line:
            if p.poll() is not None:
                with open(log_path) as log:
                    raise RuntimeError("%s exited: %s" % (argv[0], log.read()[-2000:]))
            continue
        m = pat.search(line)
        if m:
            # Keep reading: a simulator that writes to a full pipe blocks
            # (and with it every request it is serving).
            threading.Thread(target=drain_to_log, args=(p.stdout, log_path), daemon=True).start()
            return p, m
    p.kill()
    raise RuntimeError("%s not ready in time" % argv[0])


class Stack:
    """smisd + govapp-sim + ringring-sim in a temporary folder."""
    # The simulators' credentials; a subclass with its own write_conf() and
    # seed_file() may run them with others (test_docs.py: the demo's).
    govapp_token = GOVAPP_TOKEN
    govapp_callback_secret = GOVAPP_CALLBACK_SECRET
    ringring_key = RINGRING_KEY

    def __init__(self, extra_conf="", channels_extra=None, max_in_flight=8192, job_timeout_ms=8000,
                 institutions_extra=None, ringring_status_url=True, prepare_threads=None, store_extra="",
                 listen_extra="", smisd_env=None, log_level=None, upstream_timeout_ms=2000, ringring_copies=0,
                 smisd_wrapper=None):
        self.dir = tempfile.mkdtemp(prefix="smis-it-")
        self.procs = []
        self.extra_conf = extra_conf
        self.channels_extra = channels_extra or {}
        # {"inst-b": {"max_sms_segments": 2}}: settings appended to an institution.
        self.institutions_extra = institutions_extra or {}
        # False: the ringring channel has no status_url (no DLR webhook).
        self.ringring_status_url = ringring_status_url
        # More instances of the RingRing plugin, "ringring-1" to
        # "ringring-<n>": the same upstream and callback token, no
        # status_url; in no strategy, their webhooks still take reports.
        self.ringring_copies = ringring_copies
        self.max_in_flight = max_in_flight
        self.job_timeout_ms = job_timeout_ms
        # Each channel's upstream timeout_ms (SLOW times more).
        self.upstream_timeout_ms = upstream_timeout_ms
        # limits.prepare_threads; None leaves smisd's default.
        self.prepare_threads = prepare_threads
        # Settings appended to the store group ("commit_delay_ms = 1000;").
        self.store_extra = store_extra
        # Settings appended to the listen group ("connection_timeout_s = 1;").
        self.listen_extra = listen_extra
        # Variables added to smisd's environment ({"LD_PRELOAD": ...}).
        self.smisd_env = smisd_env or {}
        # The command smisd runs under (a list), if not the suite's WRAPPER.
        self.smisd_wrapper = WRAPPER if smisd_wrapper is None else smisd_wrapper
        # log.level; None leaves SMIS_LOG_LEVEL's (LOG_LEVEL).
        self.log_level = log_level or LOG_LEVEL
        self.expected_log = []
        # What the log of an earlier smisd of this stack (restarted by the
        # test) had that the test did not expect: the restart starts a
        # new log, and a sanitizer's report in the old one must not go.
        self.earlier_problems = []

    # -- lifecycle ---------------------------------------------------------
    def start(self):
        try:
            self.smisd_port = free_port()
            p, m = start_process(
                [os.path.join(BUILD, "tools/govapp-sim/govapp-sim"), "--listen", "127.0.0.1:0",
                 "--token", self.govapp_token, "--seed", self.seed_file(),
                 "--callback-url", "http://127.0.0.1:%d/v1/callbacks/govapp" % self.smisd_port,
                 "--callback-secret", self.govapp_callback_secret],
                r"listening on [0-9.]+:(\d+)", os.path.join(self.dir, "govapp-sim.log"))
            self.procs.append(p)
            self.govapp = "http://127.0.0.1:%s" % m.group(1)
            p, m = start_process(
                [os.path.join(BUILD, "tools/ringring-sim/ringring-sim"), "--listen", "127.0.0.1:0",
                 "--api-key", self.ringring_key, "--dlr-delay-ms", "100"],
                r"listening on [0-9.]+:(\d+)", os.path.join(self.dir, "ringring-sim.log"))
            self.procs.append(p)
            self.ringring = "http://127.0.0.1:%s" % m.group(1)
            self.conf = os.path.join(self.dir, "smisd.conf")
            self.write_conf()
            self.start_smisd()
        except BaseException:
            # What did start must not outlive a part that did not (a simulator
            # that exits on a sanitizer report, smisd refusing its configuration).
            for p in self.procs + ([self.smisd] if getattr(self, "smisd", None) else []):
                if p.poll() is None:
                    p.kill()
                    p.wait()
            raise
        return self

    def seed_file(self):
        """The citizens govapp-sim starts with."""
        seed = os.path.join(self.dir, "seed.json")
        with open(seed, "w") as f:
            json.dump(SEED, f)
        return seed

    def write_conf(self, extra_strategy="", path=None):
        def kv(d):
            return "".join(" %s = %s;" % (k, json.dumps(v) if not isinstance(v, bool) else str(v).lower())
                           for k, v in d.items())
        conf = """
listen = { address = "127.0.0.1"; port = %(port)d; threads = 2; %(lx)s};
plugin_dir = "%(plugins)s";
store = { path = "%(db)s"; phone_hash_key = "%(hk)s"; %(sx)s};
limits = { max_in_flight = %(mif)d; job_timeout_ms = %(jt)d;%(pt)s };
log = { level = "%(ll)s"; };
channels = (
  { name = "govapp"; plugin = "govapp"; base_url = "%(govapp)s"; api_token = "%(gt)s";
    callback_secret = "%(gcs)s"; %(http)s%(gx)s },
  { name = "ringring"; plugin = "ringring"; base_url = "%(ringring)s/v1"; api_key = "%(rk)s";
    %(rsu)scallback_token = "%(rct)s";
    %(http)s%(rx)s }%(copies)s
);
strategies = (
  { name = "govapp_first"; steps = ( { plugin = "govapp_first"; app = "govapp"; sms = "ringring"; } ); },
  { name = "govapp_only"; steps = ( { plugin = "govapp_only"; channel = "govapp"; } ); },
  { name = "sms_only"; steps = ( { plugin = "sms_only"; channel = "ringring"; } ); },
  { name = "govapp_and_sms"; steps = ( { plugin = "govapp_and_sms"; app = "govapp"; sms = "ringring"; } ); },
  { name = "app_then_sms"; steps = ( { plugin = "govapp_only"; channel = "govapp"; },
                                     { plugin = "sms_only"; channel = "ringring"; } ); }%(xs)s
);
institutions = (
  { name = "inst-a"; api_keys = [ "sha256:%(ka)s" ];
    strategies = [ "govapp_first", "govapp_only", "sms_only", "govapp_and_sms", "app_then_sms" ];
    default_strategy = "govapp_first"; sender = "SMISTest"; max_per_recipient = 0;
    client_ids = [ "cbe-0123456789" ];%(ia)s },
  { name = "inst-b"; api_keys = [ "sha256:%(kb)s" ]; strategies = [ "sms_only" ];
    default_strategy = "sms_only"; sender = "32470999999";%(ib)s },
  { name = "inst-c"; api_keys = [ "sha256:%(kc)s" ]; strategies = [ "sms_only" ];
    default_strategy = "sms_only"; max_per_recipient = 3; recipient_window_s = 3600;
    daily_quota = 6; requests_per_second = 1; burst = 12;%(ic)s }
);
%(extra)s
""" % {
            "port": self.smisd_port, "plugins": os.path.join(BUILD, "plugin-dir"),
            "db": os.path.join(self.dir, "smis.db"), "hk": PHONE_HASH_KEY, "sx": self.store_extra,
            "lx": self.listen_extra, "ll": self.log_level,
            "mif": self.max_in_flight, "jt": ms(self.job_timeout_ms), "http": upstream_http(self.upstream_timeout_ms),
            "pt": "" if self.prepare_threads is None else " prepare_threads = %d;" % self.prepare_threads,
            "govapp": self.govapp, "gt": GOVAPP_TOKEN, "gcs": GOVAPP_CALLBACK_SECRET,
            "ringring": self.ringring, "rk": RINGRING_KEY, "rct": RINGRING_CALLBACK_TOKEN,
            "ka": hashlib.sha256(KEYS["inst-a"].encode()).hexdigest(),
            "kb": hashlib.sha256(KEYS["inst-b"].encode()).hexdigest(),
            "kc": hashlib.sha256(KEYS["inst-c"].encode()).hexdigest(),
            "gx": kv(self.channels_extra.get("govapp", {})),
            "rx": kv(self.channels_extra.get("ringring", {})),
            "xs": extra_strategy, "extra": self.extra_conf,
            "copies": "".join(
                ',\n  { name = "ringring-%d"; plugin = "ringring"; base_url = "%s/v1"; api_key = "%s";'
                ' callback_token = "%s"; %s }' % (i, self.ringring, RINGRING_KEY, RINGRING_CALLBACK_TOKEN,
                                                  upstream_http(self.upstream_timeout_ms))
                for i in range(1, self.ringring_copies + 1)),
            "rsu": ('status_url = "http://127.0.0.1:%d/v1/callbacks/ringring/%s"; '
                    % (self.smisd_port, RINGRING_CALLBACK_TOKEN)) if self.ringring_status_url else "",
            "ia": kv(self.institutions_extra.get("inst-a", {})),
            "ib": kv(self.institutions_extra.get("inst-b", {})),
            "ic": kv(self.institutions_extra.get("inst-c", {})),
        }
        with open(path or self.conf, "w") as f:
            f.write(conf)

    def start_smisd(self):
        argv = self.smisd_wrapper + [os.path.join(BUILD, "smisd"), "-c", self.conf]
        self.smisd_log = os.path.join(self.dir, "smisd.log")
        if os.path.exists(self.smisd_log):
            self.earlier_problems += self.unexpected_log_lines()
        with open(self.smisd_log, "w") as logf:
            self.smisd = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=logf,
                                          env=dict(os.environ, **self.smisd_env))
        self.base = "http://127.0.0.1:%d" % self.smisd_port
        smisd_answers_at(self.base)
        deadline = time.time() + 30 * SLOW
        while time.time() < deadline:
            if self.smisd.poll() is not None:
                raise RuntimeError("smisd exited: " + self.log_text()[-3000:])
            try:
                if http("GET", self.base + "/healthz", timeout=2).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("smisd did not come up: " + self.log_text()[-3000:])

    def stop(self, check_log=True):
        rc = None
        if getattr(self, "smisd", None) and self.smisd.poll() is None:
            self.smisd.send_signal(signal.SIGTERM)
            try:
                rc = self.smisd.wait(timeout=60 * SLOW)
            except subprocess.TimeoutExpired:
                self.smisd.kill()
                rc = "killed"
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10 * SLOW)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        problems = self.earlier_problems + self.unexpected_log_lines() if check_log else []
        problems += NONCONFORMING.pop(urllib.parse.urlsplit(getattr(self, "base", "")).netloc, [])
        if check_log:
            problems += self.simulator_problems()
        log = self.log_text() if os.path.exists(self.smisd_log) else ""
        for p in self.procs:
            if p.stdout:
                p.stdout.close()
        if not os.environ.get("SMIS_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)
        return rc, problems, log

    def unexpected_log_lines(self):
        bad = []
        for line in self.log_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                bad.append(line.strip())  # not our JSON: a sanitizer or crash report
                continue
            if entry.get("level") in ("warn", "error"):
                if not any(re.search(p, entry.get("msg", "")) for p in self.expected_log):
                    bad.append(line.strip())
        return bad

    def simulator_problems(self):
        """A simulator that did not exit 0 on SIGTERM (under valgrind: exit 99
        on a memory error or a definite leak), with the tail of its log."""
        bad = []
        for name, p in zip(("govapp-sim", "ringring-sim"), self.procs):
            if p.returncode != 0:
                with open(os.path.join(self.dir, name + ".log")) as f:
                    bad.append("%s exit %r: %s" % (name, p.returncode, f.read()[-3000:]))
        return bad

    def expect_log(self, *patterns):
        self.expected_log.extend(patterns)

    def log_text(self):
        with open(self.smisd_log) as f:
            return f.read()

    # -- API helpers -------------------------------------------------------
    def send(self, body, inst="inst-a", headers=None, key=None):
        h = {"Authorization": "Bearer " + (key if key is not None else KEYS[inst])}
        h.update(headers or {})
        return http("POST", self.base + "/v1/messages", body, h)

    def stored_status(self, msg_id):
        """The message's status as committed to the SQLite file (read by
        another process, as a backup or an operator would), or None."""
        con = sqlite3.connect("file:%s?mode=ro" % os.path.join(self.dir, "smis.db"), uri=True)
        try:
            row = con.execute("SELECT status FROM messages WHERE id = ?", (msg_id,)).fetchone()
        finally:
            con.close()
        return row[0] if row else None

    def wait_stored(self, msg_id, timeout=10):
        """Wait until the message's row is committed to the SQLite file. By
        default smisd answers before its commit (store.commit_before_answer
        = false) and commits within store.commit_delay_ms; a test that reads
        the file itself (not through GET) waits for that first."""
        poll_until(lambda: self.stored_status(msg_id) is not None, timeout,
                   lambda: "message %s not committed after %s s" % (msg_id, timeout))

    def store_report(self, msg_id, channel, device, status, detail=None):
        """Write a delivery report row into the store from another process,
        once the message is committed, as an older smisd may have stored it
        (one whose checks a plugin no longer passes, say); at now."""
        self.wait_stored(msg_id)
        con = sqlite3.connect(os.path.join(self.dir, "smis.db"), isolation_level=None, timeout=10)
        try:
            con.execute("INSERT INTO reports (message_id, channel, device, status, at_ms, detail)"
                        " VALUES (?, ?, ?, ?, ?, ?)", (msg_id, channel, device, status,
                                                       int(time.time() * 1000), detail))
        finally:
            con.close()

    @contextlib.contextmanager
    def polls_when_reported(self, channel):
        """For the length of the with block, a trigger in the store notes
        the message's poll count (messages.polls) as each report on
        `channel` goes in; yields a function that returns them, [(message
        id, polls)]. Polling rounds and report commits are both the store
        writer's, one after the other: a test of which rounds asked for a
        report can tell those before its commit from those after, however
        slow the machine (a round 1 s after the report is not sure to come
        after its commit)."""
        path = os.path.join(self.dir, "smis.db")
        con = sqlite3.connect(path, isolation_level=None)
        try:
            con.execute("CREATE TABLE test_polls_when_reported (message_id TEXT, polls INTEGER)")
            con.execute("CREATE TRIGGER test_polls_when_reported AFTER INSERT ON reports WHEN NEW.channel = '%s'"
                        " BEGIN INSERT INTO test_polls_when_reported SELECT id, polls FROM messages"
                        " WHERE id = NEW.message_id; END" % channel.replace("'", "''"))
            yield lambda: con.execute("SELECT message_id, polls FROM test_polls_when_reported"
                                      " ORDER BY rowid").fetchall()
        finally:
            con.execute("DROP TRIGGER test_polls_when_reported")
            con.execute("DROP TABLE test_polls_when_reported")
            con.close()

    @contextlib.contextmanager
    def column_hidden(self, table, column):
        """Rename a column of the store from another process for the length
        of the with block, as a damaged database would, so that smisd's
        reads (and writes) of it fail; renamed back after."""
        def rename(old, new):
            con = sqlite3.connect(os.path.join(self.dir, "smis.db"), isolation_level=None)
            try:
                con.execute("ALTER TABLE %s RENAME COLUMN %s TO %s" % (table, old, new))
            finally:
                con.close()
        rename(column, column + "_hidden")
        try:
            yield
        finally:
            rename(column + "_hidden", column)

    @contextlib.contextmanager
    def store_locked(self):
        """Hold the database's write lock from another process, as an
        operator's sqlite3 shell inside a transaction would, past smisd's
        busy timeout (5 s) if the body lasts that long: its store writer
        waits and tries again (logged: expected), while reads go on, and
        nothing is committed until the with block ends."""
        self.expect_log(r"^cannot write \(database is locked\): .* kept in memory, retrying$",
                        r"^written after \d+ retries$")
        lock = sqlite3.connect(os.path.join(self.dir, "smis.db"), timeout=5, isolation_level=None)
        try:
            lock.execute("BEGIN EXCLUSIVE")
            yield
        finally:
            lock.rollback()
            lock.close()

    @contextlib.contextmanager
    def store_writes_fail(self):
        """Make smisd's writes to its files fail, as on a full disk, for the
        length of the with block: a file-size limit of 1 byte, set on the
        running process with prlimit, makes each write past a file's first
        byte fail with EFBIG (smisd ignores SIGXFSZ; it starts with the
        signal's default action, as under systemd). The store's commits
        then fail (SQLITE_IOERR) and are tried again. Its log lines meanwhile are lost with them;
        a checkpoint tried meanwhile (once a second) fails too, and says so once it works again."""
        self.expect_log(r"^checkpoint failed \(", r"^checkpoint works again, after \d+ failed tries$")
        old = resource.prlimit(self.smisd.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(self.smisd.pid, resource.RLIMIT_FSIZE, (1, old[1]))
        try:
            yield
        finally:
            resource.prlimit(self.smisd.pid, resource.RLIMIT_FSIZE, old)

    def wait_idle(self, timeout=10):
        """Wait until no message is in flight (/healthz's in_flight is 0). A
        message holds its slot until its record is committed, and while any
        is in flight a report for a message SMIS does not know is kept as an
        orphan (it may have overtaken its send's answer) instead of being
        refused: a test of that refusal waits for this first."""
        last = []

        def idle():
            last[:] = [http("GET", self.base + "/healthz", timeout=2)]
            return last[0].status == 200 and last[0].json.get("in_flight") == 0
        poll_until(idle, timeout, lambda: "messages still in flight after %s s: %s" % (timeout, last[0].raw))

    def in_flight(self):
        return http("GET", self.base + "/healthz", timeout=2).json["in_flight"]

    def wait_in_flight(self, n, timeout=10):
        """Wait until exactly n messages are in flight (/healthz): a test
        that acts while a slow message runs waits for it to be admitted."""
        poll_until(lambda: self.in_flight() == n, timeout,
                   lambda: "in_flight is %d, not %d, after %s s" % (self.in_flight(), n, timeout))

    def metric(self, series):
        """The value of one series of /metrics, named as rendered (with its
        labels, e.g. 'smis_reloads_total{result="ok"}'), or None."""
        text = http("GET", self.base + "/metrics").raw
        m = re.search(r"^%s (\S+)$" % re.escape(series), text, re.M)
        return float(m.group(1)) if m else None

    def get(self, msg_id, inst="inst-a"):
        return http("GET", self.base + "/v1/messages/" + msg_id,
                    headers={"Authorization": "Bearer " + KEYS[inst]})

    def sim(self, which, method, path, body=None):
        base = self.govapp if which == "govapp" else self.ringring
        if path == "/_sim/faults" and body and "latency_ms" in body:
            body = dict(body, latency_ms=ms(body["latency_ms"]))  # as the timeouts it is set against
        return http(method, base + path, body)

    def reload(self):
        self.smisd.send_signal(signal.SIGHUP)

    def start_draining(self, timeout=10):
        """SIGTERM, then wait until smisd logs that it drains: from there on
        it refuses new work and finishes what is in flight."""
        self.smisd.send_signal(signal.SIGTERM)
        poll_until(lambda: "draining" in self.log_text(), timeout, lambda: self.log_text()[-2000:])

    def generation(self):
        return http("GET", self.base + "/healthz", timeout=2).json["generation"]

    def reload_and_wait(self, timeout=10):
        """SIGHUP, then wait until /healthz shows the next generation (the
        configuration on disk must be one smisd accepts)."""
        want = self.generation() + 1
        self.reload()
        poll_until(lambda: self.generation() >= want, timeout,
                   lambda: "generation %d not active after %s s: %s" % (want, timeout, self.log_text()[-1500:]))


def message(recipient, strategy=None, langs=("nl",), html=False, **extra):
    content = {}
    for lang in langs:
        content[lang] = {"title": "Titel %s" % lang, "body": "Bericht in %s" % lang}
        if html:
            content[lang]["body"] = "<p>Bericht <b>%s</b> <script>alert(1)</script></p>" % lang
            content[lang]["format"] = "html"
    body = {"recipient": recipient, "content": content}
    if strategy:
        body["strategy"] = strategy
    body.update(extra)
    return body


class StackTestCase(unittest.TestCase):
    """One stack for the whole class; each test resets the simulators."""
    stack_kwargs = {}

    @classmethod
    def setUpClass(cls):
        cls.stack = Stack(**cls.stack_kwargs).start()

    @classmethod
    def tearDownClass(cls):
        rc, problems, log = cls.stack.stop()
        if rc != 0 or problems:
            raise AssertionError("smisd exit %r, unexpected log lines:\n%s" % (rc, "\n".join(problems[:20])))

    def setUp(self):
        self.stack.sim("govapp", "POST", "/_sim/reset", {})
        self.stack.sim("ringring", "POST", "/_sim/reset", {})


class PreloadedFaultCase(StackTestCase):
    """A stack whose smisd preloads tests/plugins/PRELOAD.so, which makes
    some calls fail while the file named by its environment variable
    FLAG_ENV exists: self.flag, there for the length of self.failing().
    (Or which writes what it counts there: walsync.so.)"""
    preload = flag_env = None

    @classmethod
    def setUpClass(cls):
        cls.flag_dir = tempfile.mkdtemp(prefix="smis-%s-" % cls.preload)
        cls.flag = os.path.join(cls.flag_dir, "flag")
        env = dict(preloading(cls.preload), **{cls.flag_env: cls.flag})
        cls.stack_kwargs = dict(cls.stack_kwargs, smisd_env=env)
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.flag_dir, ignore_errors=True)

    @contextlib.contextmanager
    def failing(self):
        open(self.flag, "w").close()
        try:
            yield
        finally:
            os.unlink(self.flag)
