"""
The install tree, as an operator and a plugin author get it:

1. `make install DESTDIR=<tmp>` from the build tree, and the layout (daemon,
   smisctl, plugin header and .pc, bundled plugins, man pages, systemd unit);
2. the two examples of examples/ built out of tree with their own Makefiles,
   using nothing but the installed smis-plugin.pc (PKG_CONFIG_SYSROOT_DIR
   maps its paths into the DESTDIR tree), and their fake-core tests;
3. the installed smisd started on a plugin folder holding the installed
   plugins and the examples: a message through a strategy on the example
   webhook channel reaches a loopback HTTP receiver as the right JSON; then
   the round-robin example is added to the configuration, smisd reloaded
   with the installed smisctl, and messages alternate between two webhooks.

Every process is started here and stopped by PID.
"""
import hashlib
import http.server as http_server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (BUILD, LOG_LEVEL, PHONE_HASH_KEY, SLOW, SRC, WRAPPER, free_port, http, valgrind,  # noqa: E402
                     smisd_answers_at)

KEY = "install-test-key-0123456789"
BUNDLED = ("govapp", "ringring", "govapp_first", "govapp_only", "sms_only", "govapp_and_sms")
MANS = ("man8/smisd.8", "man5/smis.conf.5", "man1/smisctl.1")


def clean_env(**extra):
    """The environment of a child make/smisd: nothing of the make that runs
    this test (jobserver, DESTDIR) leaks into it."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "DESTDIR", "SMIS_API_KEY")}
    env.update(extra)
    return env


def read(path):
    with open(path) as f:
        return f.read()


class Recorder(http_server.ThreadingHTTPServer):
    """A webhook receiver on loopback: records every POST; /a and /b answer
    200 with an id, /down answers 503."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), RecorderHandler)
        self.posts = []
        self.lock = threading.Lock()
        self.url = "http://127.0.0.1:%d" % self.server_address[1]

    def taken(self):
        with self.lock:
            return list(self.posts)


class RecorderHandler(http_server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:
            self.server.posts.append({"path": self.path, "headers": dict(self.headers.items()),
                                      "body": body.decode("utf-8", "replace")})
            n = len(self.server.posts)
        if self.path == "/down":
            status, answer = 503, b'{"error":"maintenance"}'
        else:
            status, answer = 200, json.dumps({"ok": True, "id": "wh-%d" % n}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, fmt, *args):
        pass


class Install(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="smis-install-")
        cls.dest = os.path.join(cls.tmp, "dest")
        cls.smisd = None
        cls.recorder = None
        r = subprocess.run(["make", "install", "DESTDIR=" + cls.dest], cwd=BUILD, env=clean_env(),
                           capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            raise AssertionError("make install failed:\n" + (r.stdout + r.stderr)[-4000:])
        # The prefix is whatever configure was given: find it from smisd.
        found = [root for root, dirs, files in os.walk(cls.dest)
                 if "smisd" in files and os.path.basename(root) == "sbin"]
        if len(found) != 1:
            raise AssertionError("sbin/smisd not found once in %s: %r" % (cls.dest, found))
        cls.root = os.path.dirname(found[0])              # <dest><prefix>
        cls.prefix = cls.root[len(cls.dest):]             # <prefix> as configured
        cls.pcdir = os.path.join(cls.root, "lib", "pkgconfig")

    @classmethod
    def tearDownClass(cls):
        if cls.smisd and cls.smisd.poll() is None:
            cls.smisd.kill()
            cls.smisd.wait()
        if cls.recorder:
            cls.recorder.shutdown()
            cls.recorder.server_close()
        if not os.environ.get("SMIS_KEEP_TMP"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- 1. layout ---------------------------------------------------------
    def test_1_layout(self):
        def path(rel):
            return os.path.join(self.root, rel)

        for exe in ("sbin/smisd", "bin/smisctl"):
            self.assertTrue(os.access(path(exe), os.X_OK), exe)
        self.assertEqual(read(path("include/smis/smis-plugin.h")),
                         read(os.path.join(SRC, "include/smis/smis-plugin.h")))
        pc = read(os.path.join(self.pcdir, "smis-plugin.pc"))
        self.assertRegex(pc, r"(?m)^plugindir=")
        self.assertRegex(pc, r"(?m)^Cflags: -I\$\{includedir\}")
        for name in BUNDLED:
            so = path("lib/smis/plugins/%s.so" % name)
            self.assertTrue(os.path.isfile(so), so)
        for man in MANS:
            text = read(path("share/man/" + man))
            self.assertTrue(text.startswith(".\\\""), man)
            self.assertIsNone(re.search(r"@[A-Za-z_]+@", text), man + ": unsubstituted path")
            self.assertIn(".SH NAME", text)
            if shutil.which("groff"):
                g = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", path("share/man/" + man)],
                                   capture_output=True, text=True)
                self.assertEqual(g.stderr, "", man)
        unit = read(path("lib/systemd/system/smisd.service"))
        self.assertIsNone(re.search(r"@[A-Za-z_]+@", unit))
        self.assertRegex(unit, r"(?m)^ExecStart=%s/sbin/smisd -c /\S+/smis/smisd\.conf "
                               r"--pidfile /run/smis/smisd\.pid$" % re.escape(self.prefix))
        for line in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure",
                     "NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=",
                     "StateDirectory=smis", "RuntimeDirectory=smis", "TimeoutStopSec=45s",
                     "SystemCallFilter=@system-service", "MemoryDenyWriteExecute=yes"):
            self.assertRegex(unit, r"(?m)^%s$" % re.escape(line))
        # systemd's own check, with the paths moved into the DESTDIR tree
        # (verify wants the binaries to exist).
        analyze = shutil.which("systemd-analyze")
        if analyze:
            moved = os.path.join(self.tmp, "unit", "smisd.service")
            os.makedirs(os.path.dirname(moved), exist_ok=True)
            with open(moved, "w") as f:
                f.write(unit.replace("=%s/" % self.prefix, "=%s/" % self.root))
            r = subprocess.run([analyze, "verify", "--man=no", moved], capture_output=True, text=True,
                               env=clean_env())
            self.assertEqual((r.returncode, r.stderr), (0, ""), r.stdout)

    # -- 2. examples, out of tree ----------------------------------------
    def build_example(self, name):
        src = os.path.join(SRC, "examples", name)
        work = os.path.join(self.tmp, "examples", name)
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(src, work)
        env = clean_env(PKG_CONFIG_PATH=self.pcdir, PKG_CONFIG_SYSROOT_DIR=self.dest)
        env.pop("PKG_CONFIG_LIBDIR", None)
        r = subprocess.run(["make", "CFLAGS=-O2 -g -Werror"], cwd=work, env=env,
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # Built against the installed header, not the source tree.
        self.assertIn("-I" + os.path.join(self.root, "include"), r.stdout)
        check = ["make", "check", "CFLAGS=-O2 -g -Werror"]
        if valgrind():
            check.append("VALGRIND=%s --quiet --error-exitcode=1 --leak-check=full" % os.environ["VALGRIND"])
        r = subprocess.run(check, cwd=work, env=env, capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("all checks passed", r.stdout)
        # The plugin folder pkg-config names is the installed one.
        r = subprocess.run(["pkg-config", "--variable=plugindir", "smis-plugin"], env=env,
                           capture_output=True, text=True)
        self.assertEqual(r.stdout.strip(), os.path.join(self.root, "lib/smis/plugins"))
        return work

    def test_2_examples_build_and_run_in_the_installed_smisd(self):
        webhook = self.build_example("webhook-channel")
        rr = self.build_example("round-robin-strategy")
        plugins = os.path.join(self.tmp, "plugins")
        os.makedirs(plugins, exist_ok=True)
        for name in BUNDLED:
            shutil.copy(os.path.join(self.root, "lib/smis/plugins/%s.so" % name), plugins)
        shutil.copy(os.path.join(webhook, "webhook.so"), plugins)
        shutil.copy(os.path.join(rr, "round_robin.so"), plugins)

        smisctl = os.path.join(self.root, "bin/smisctl")
        r = subprocess.run([smisctl, "plugins", "--dir", plugins], capture_output=True, text=True,
                           env=clean_env())
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"(?m)^  webhook\.so\s+channel\s+webhook 1\.0\.0 ABI 1 caps send$")
        self.assertRegex(r.stdout, r"(?m)^  round_robin\.so\s+strategy round_robin 1\.0\.0 ABI 1$")

        type(self).recorder = Recorder()
        threading.Thread(target=self.recorder.serve_forever, daemon=True).start()
        port = free_port()
        base = "http://127.0.0.1:%d" % port
        smisd_answers_at(base)
        conf = os.path.join(self.tmp, "smisd.conf")
        self.write_conf(conf, port, plugins, with_rr=False)

        # The installed smisctl finds the installed smisd (../sbin).
        r = subprocess.run([smisctl, "check-config", "-c", conf], capture_output=True, text=True,
                           env=clean_env())
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

        pidfile = os.path.join(self.tmp, "smisd.pid")
        log_path = os.path.join(self.tmp, "smisd.log")
        argv = WRAPPER + [os.path.join(self.root, "sbin/smisd"), "-c", conf, "--pidfile", pidfile]
        with open(log_path, "w") as log:
            type(self).smisd = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log,
                                                env=clean_env())
        self.wait_up(base, log_path)
        self.assertEqual(read(pidfile).strip(), str(self.smisd.pid))

        # A message through a strategy on the webhook channel, sent with
        # the installed smisctl.
        r = subprocess.run([smisctl, "send", "--url", base, "--to", "0470 12 34 56", "--title",
                            "Uw \"document\"", "--body", "Het is klaar.\nTot ziens.", "--strategy",
                            "via_hook"], capture_output=True, text=True,
                           env=clean_env(SMIS_API_KEY=KEY))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        answer = json.loads(r.stdout)
        self.assertEqual((answer["status"], answer["channel"]), ("sent", "hook-a"))
        self.assertEqual(answer["attempts"][-1]["provider_reference"], "wh-1")
        posts = self.recorder.taken()
        self.assertEqual(len(posts), 1)
        self.assertEqual(posts[0]["path"], "/a")
        self.assertEqual(posts[0]["headers"].get("Authorization"), "Bearer token-a")
        self.assertTrue(posts[0]["headers"].get("Content-Type", "").startswith("application/json"))
        self.assertEqual(json.loads(posts[0]["body"]),
                         {"message_id": answer["id"], "to": "+32470123456", "title": "Uw \"document\"",
                          "body": "Het is klaar.\nTot ziens.", "lang": "nl"})

        # A 503 is a temporary failure: the next step takes over.
        r = self.send(base, "down_then_b")
        self.assertEqual(r.status, 201, r.raw)
        self.assertEqual((r.json["status"], r.json["channel"]), ("sent", "hook-b"), r.raw)
        self.assertEqual(r.json["attempts"][0]["error"], "upstream_5xx", r.raw)
        self.assertEqual([p["path"] for p in self.recorder.taken()[1:]], ["/down", "/b"])
        self.assertNotIn("Authorization", self.recorder.taken()[2]["headers"])

        # Add the round-robin strategy, reload with the installed smisctl.
        self.assertEqual(self.send(base, "rr").json["code"], "unknown_strategy")
        generation = http("GET", base + "/healthz").json["generation"]
        self.write_conf(conf, port, plugins, with_rr=True)
        r = subprocess.run([smisctl, "reload", "--pidfile", pidfile, "-c", conf], capture_output=True,
                           text=True, env=clean_env())
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        deadline = time.time() + 20 * SLOW
        while http("GET", base + "/healthz").json["generation"] == generation:
            self.assertLess(time.time(), deadline, read(log_path)[-3000:])
            time.sleep(0.05)
        before = len(self.recorder.taken())
        channels = []
        for _ in range(4):
            r = self.send(base, "rr")
            self.assertEqual(r.status, 201, r.raw)
            self.assertEqual(r.json["status"], "sent", r.raw)
            channels.append(r.json["channel"])
        self.assertEqual(channels, ["hook-a", "hook-b", "hook-a", "hook-b"])
        self.assertEqual([p["path"] for p in self.recorder.taken()[before:]], ["/a", "/b", "/a", "/b"])

        # Stop by PID: a clean exit that removes its pid file.
        self.smisd.send_signal(signal.SIGTERM)
        self.assertEqual(self.smisd.wait(timeout=60 * SLOW), 0)
        self.assertFalse(os.path.exists(pidfile))
        bad = []
        for line in read(log_path).splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                bad.append(line)
                continue
            if entry.get("level") in ("warn", "error"):
                bad.append(line)
        self.assertEqual(bad, [])

    # -- helpers -------------------------------------------------------------
    def write_conf(self, path, port, plugins, with_rr):
        rr = """,
  { name = "rr"; steps = ( { plugin = "round_robin"; channels = "hook-a, hook-b"; failover = true; } ); }"""
        conf = """
listen = { address = "127.0.0.1"; port = %(port)d; threads = 2; };
plugin_dir = "%(plugins)s";
store = { path = "%(db)s"; phone_hash_key = "%(hk)s"; };
log = { level = "%(ll)s"; };
channels = (
  { name = "hook-a"; plugin = "webhook"; url = "%(hook)s/a"; bearer = "token-a";
    http = { timeout_ms = 3000; connect_timeout_ms = 1000; }; },
  { name = "hook-b"; plugin = "webhook"; url = "%(hook)s/b"; },
  { name = "hook-down"; plugin = "webhook"; url = "%(hook)s/down"; }
);
strategies = (
  { name = "via_hook"; steps = ( { plugin = "sms_only"; channel = "hook-a"; } ); },
  { name = "down_then_b"; steps = ( { plugin = "sms_only"; channel = "hook-down"; },
                                    { plugin = "sms_only"; channel = "hook-b"; } ); }%(rr)s
);
institutions = (
  { name = "inst"; api_keys = [ "sha256:%(key)s" ];
    strategies = [ "via_hook", "down_then_b"%(rr_name)s ]; default_strategy = "via_hook";
    max_per_recipient = 0; }
);
""" % {"port": port, "plugins": plugins, "db": os.path.join(self.tmp, "smis.db"),
            "hk": PHONE_HASH_KEY, "ll": LOG_LEVEL, "hook": self.recorder.url, "rr": rr if with_rr else "",
            "rr_name": ', "rr"' if with_rr else "", "key": hashlib.sha256(KEY.encode()).hexdigest()}
        with open(path + ".tmp", "w") as f:
            f.write(conf)
        os.replace(path + ".tmp", path)

    def wait_up(self, base, log_path):
        deadline = time.time() + 30 * SLOW
        while time.time() < deadline:
            if self.smisd.poll() is not None:
                self.fail("smisd exited: " + read(log_path)[-3000:])
            try:
                # The pid file is written right after the socket accepts.
                if http("GET", base + "/healthz", timeout=2).status == 200 and \
                        os.path.exists(os.path.join(self.tmp, "smisd.pid")):
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.fail("smisd did not come up: " + read(log_path)[-3000:])

    def send(self, base, strategy):
        body = {"recipient": "+32470123456", "strategy": strategy,
                "content": {"nl": {"title": "Titel", "body": "Tekst"}}}
        return http("POST", base + "/v1/messages", body, {"Authorization": "Bearer " + KEY})


if __name__ == "__main__":
    unittest.main()
