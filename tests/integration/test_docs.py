"""
test_docs.py - what a newcomer reads first must be what smisd does.

- README.md, "Sending a message": its curl command (parsed from the README,
  not copied here) is sent to a smisd started on conf/smisd.conf with the
  simulators as tools/demo.sh starts them, and must get the answer that the
  README shows (values written with "..." and times aside); so must the
  README's sentence on an unknown number and a retry with the same key.
- conf/smisd.conf passes `smisd --check-config` (only plugin_dir and the
  store moved to this build), with its commented token_issuers example
  too, and so does the EXAMPLE of smis.conf(5).
- man/smis.conf.5.in documents every setting the configuration parser
  (daemon/generation.c) and the bundled plugins read, with the range the
  code checks.
- docs/architecture.md's source map names every daemon/*.c.
- README.md, docs/, the examples and the man pages name the configuration
  file as $(sysconfdir)/smis/smisd.conf, never a fixed /etc/smis.
- smis-plugin.pc's abi_version, which the plugin guide tells authors to
  ask pkg-config for, is the header's SMIS_PLUGIN_ABI_VERSION.

docs/openapi.yaml has its own tests (test_openapi.py, conformance.py).
"""
import glob
import json
import os
import re
import shlex
import shutil
import tempfile
import unittest

import harness
from harness import BUILD, SRC, http, run_wrapped

README = os.path.join(SRC, "README.md")
DEMO_CONF = os.path.join(SRC, "conf", "smisd.conf")
MAN_CONF = os.path.join(SRC, "man", "smis.conf.5.in")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def rewrite(text, old, new):
    """text with `old` replaced; fails when `old` is gone, so that a change
    of conf/smisd.conf cannot leave the test checking something else."""
    if old not in text:
        raise AssertionError("conf/smisd.conf has no %r any more: update test_docs.py" % old)
    return text.replace(old, new)


def demo_conf(plugin_dir, db, port=None, govapp=None, ringring=None, log_level=None):
    """conf/smisd.conf moved to this build, as tools/demo.sh moves it."""
    conf = read(DEMO_CONF)
    conf = rewrite(conf, 'plugin_dir = "../plugin-dir";', 'plugin_dir = "%s";' % plugin_dir)
    conf = rewrite(conf, 'path = "../smis-demo.db";', 'path = "%s";' % db)
    if port:
        conf = rewrite(conf, "port = 8080;", "port = %d;" % port)
        conf = rewrite(conf, '"http://127.0.0.1:8080/v1/callbacks/ringring/',
                       '"http://127.0.0.1:%d/v1/callbacks/ringring/' % port)
    if govapp:
        conf = rewrite(conf, '"http://127.0.0.1:18081"', '"%s"' % govapp)
    if ringring:
        conf = rewrite(conf, '"http://127.0.0.1:18082/v1"', '"%s/v1"' % ringring)
    if log_level:
        conf = rewrite(conf, 'log = { level = "info"; };', 'log = { level = "%s"; };' % log_level)
    return conf


class DemoStack(harness.Stack):
    """smisd on conf/smisd.conf, the simulators with tools/demo.sh's
    credentials and citizens (conf/demo-citizens.json), on free ports."""
    govapp_token = "govapp-demo-token"
    govapp_callback_secret = "govapp-demo-callback-secret"
    ringring_key = "ringring-demo-key"

    def seed_file(self):
        return os.path.join(SRC, "conf", "demo-citizens.json")

    def write_conf(self, extra_strategy="", path=None):
        assert not extra_strategy, "the demo configuration takes no extra strategy"
        conf = demo_conf(os.path.join(BUILD, "plugin-dir"), os.path.join(self.dir, "smis.db"),
                         self.smisd_port, self.govapp, self.ringring, self.log_level)
        # Under valgrind (harness.SLOW) the timeouts grow with everything else.
        conf = re.sub(r"\b(timeout_ms|connect_timeout_ms|job_timeout_ms) = (\d+);",
                      lambda m: "%s = %d;" % (m.group(1), harness.ms(int(m.group(2)))), conf)
        with open(path or self.conf, "w") as f:
            f.write(conf)


def readme_example():
    """(method, url, headers, body, status, answer): README's curl
    command, the HTTP status its answer is said to have, the answer shown."""
    text = read(README)
    section = text[text.index("## Sending a message"):]
    section = section[:section.index("\n## ")]
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", section, re.S | re.M)
    curl = [b for lang, b in blocks if lang == "sh" and b.startswith("curl ")]
    answers = [b for lang, b in blocks if lang == "json"]
    assert len(curl) == 1 and len(answers) == 1, "README's example: one curl command, one answer"
    argv = shlex.split(curl[0].replace("\\\n", " "))
    method, url, headers, body = "GET", None, {}, None
    i = 1
    while i < len(argv):
        a = argv[i]
        if a == "-X":
            method, i = argv[i + 1], i + 1
        elif a == "-H":
            name, _, value = argv[i + 1].partition(":")
            headers[name.strip()] = value.strip()
            i += 1
        elif a == "-d":
            body, i = argv[i + 1], i + 1
        elif a.startswith("http://"):
            url = a
        elif a != "-sS":
            raise AssertionError("README's curl: option %r not understood by test_docs.py" % a)
        i += 1
    status = re.search(r"Answer \(`(\d{3}) ", section)
    assert status, "README's example: 'Answer (`NNN ...`' names the status"
    return method, url, headers, body, int(status.group(1)), json.loads(answers[0])


# Values README writes as examples: their type (and the text before "…")
# must match, not the value.
VOLATILE = {"id", "created_at", "started_at", "duration_ms", "provider_reference"}


class ReadmeExample(harness.StackTestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = DemoStack().start()

    def send(self, headers=None, body=None):
        method, url, doc_headers, doc_body, _, _ = readme_example()
        url = url.replace("http://127.0.0.1:8080", self.stack.base)
        self.assertNotIn("127.0.0.1:8080", url)
        return http(method, url, (body or doc_body).encode(), dict(doc_headers, **(headers or {})))

    def assert_like(self, doc, got, where="answer"):
        if isinstance(doc, dict):
            self.assertIsInstance(got, dict, where)
            self.assertEqual(sorted(doc), sorted(got), "%s: members differ from README's" % where)
            for k in doc:
                if k in VOLATILE:
                    self.assertIsInstance(got[k], type(doc[k]), "%s.%s" % (where, k))
                    if isinstance(doc[k], str) and "…" in doc[k]:
                        self.assertTrue(got[k].startswith(doc[k].split("…")[0]), "%s.%s" % (where, k))
                else:
                    self.assert_like(doc[k], got[k], "%s.%s" % (where, k))
        elif isinstance(doc, list):
            self.assertIsInstance(got, list, where)
            self.assertEqual(len(doc), len(got), "%s: length differs from README's" % where)
            for n, (d, g) in enumerate(zip(doc, got)):
                self.assert_like(d, g, "%s[%d]" % (where, n))
        else:
            self.assertEqual(doc, got, where)

    def test_curl_gets_the_answer_shown(self):
        status, answer = readme_example()[4:]
        r = self.send()
        self.assertEqual(r.status, status, r.raw)
        self.assertEqual(r.headers["Location"], "/v1/messages/" + r.json["id"])
        self.assert_like(answer, r.json)
        # "a retry returns the first answer with Idempotent-Replayed: true"
        again = self.send()
        self.assertEqual(again.status, 200, again.raw)
        self.assertEqual(again.headers.get("Idempotent-Replayed"), "true")
        self.assertEqual(again.json, r.json)

    def test_unknown_number_gets_the_sms(self):
        body = json.loads(readme_example()[3])
        self.assertIn("0470 12 34 56", read(README), "README names the unknown number")
        body["recipient"] = "0470 12 34 56"
        r = self.send({"Idempotency-Key": "case-2026-0042-sms"}, json.dumps(body))
        self.assertEqual(r.status, 201, r.raw)
        self.assertEqual((r.json["status"], r.json["channel"]), ("sent", "ringring"))
        self.assertEqual([(a["channel"], a["operation"], a.get("reachability")) for a in r.json["attempts"]],
                         [("govapp", "lookup", "not_installed"), ("ringring", "send", None)])


def check_config(conf_text, beside=None):
    """smisd --check-config on conf_text, written to a fresh folder with the
    files of `beside` ({name: source path}) copied next to it."""
    d = tempfile.mkdtemp(prefix="smis-docs-")
    try:
        path = os.path.join(d, "smisd.conf")
        with open(path, "w") as f:
            f.write(conf_text)
        for name, src in (beside or {}).items():
            shutil.copy(src, os.path.join(d, name))
        return run_wrapped([os.path.join(BUILD, "smisd"), "--check-config", "-c", path])
    finally:
        shutil.rmtree(d, ignore_errors=True)


def man_text(s):
    """The text of roff source lines: escapes of '-', '\\' and quotes undone."""
    return s.replace("\\-", "-").replace("\\e", "\\").replace("\\(dq", '"')


class ExampleConfigurations(unittest.TestCase):
    def test_conf_smisd_conf_is_valid(self):
        p = check_config(demo_conf(os.path.join(BUILD, "plugin-dir"), "smis.db"))
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_conf_smisd_conf_token_issuers_example_is_valid(self):
        # The commented-out gateway block, uncommented as it is: its key
        # file is a bare name, found in the configuration's folder (there,
        # a key file of the tests instead of the eHealth one). A fixed
        # /etc/smis path was wrong wherever sysconfdir is not /etc.
        conf = demo_conf(os.path.join(BUILD, "plugin-dir"), "smis.db")
        block = re.search(r"^# token_issuers = \($\n(?:#.*\n)*?^# \);$\n", conf, re.M)
        self.assertTrue(block, "conf/smisd.conf has a commented token_issuers example")
        uncommented = re.sub(r"^# ?", "", block.group(0), flags=re.M)
        key_file = re.search(r'key_file = "([^"]*)";', uncommented)
        self.assertTrue(key_file, "the token_issuers example has a key_file")
        self.assertNotIn("/", key_file.group(1), "key_file is a name in the configuration's folder")
        p = check_config(conf.replace(block.group(0), uncommented),
                         beside={key_file.group(1): os.path.join(SRC, "tests", "data", "jwt", "jwks.json")})
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("configuration OK", p.stdout)

    def test_man_page_example_is_valid(self):
        man = read(MAN_CONF)
        example = re.search(r"^\.SH EXAMPLE\n\.nf\n(.*?)^\.fi$", man, re.S | re.M)
        self.assertTrue(example, "smis.conf(5) has an EXAMPLE in .nf/.fi")
        self.assertNotIn("plugin_dir", example.group(1))
        p = check_config(man_text(example.group(1)) +
                         'plugin_dir = "%s";\n' % os.path.join(BUILD, "plugin-dir"))
        self.assertEqual(p.returncode, 0, p.stderr)


def c_constants():
    """#define NAME <integer expression> of the sources, for ranges written
    with a name."""
    consts = {}
    for path in glob.glob(os.path.join(SRC, "daemon", "*.h")) + glob.glob(os.path.join(SRC, "daemon", "*.c")):
        for m in re.finditer(r"^#define (\w+) \(?([0-9][0-9 *+LU]*)\)?\s*(?:/\*.*)?$", read(path), re.M):
            consts[m.group(1)] = m.group(2)
    return consts


def c_int(expr, consts):
    expr = consts.get(expr.strip(), expr)
    if not re.fullmatch(r"[0-9 *+LU()]+", expr):
        raise AssertionError("cannot evaluate the range bound %r" % expr)
    return eval(re.sub(r"(\d+)[LU]+", r"\1", expr))  # digits and * + only


class ConfigurationDocumented(unittest.TestCase):
    """Every key the code reads is a term of smis.conf(5), with its range."""

    @classmethod
    def setUpClass(cls):
        cls.man = read(MAN_CONF)
        cls.core = read(os.path.join(SRC, "daemon", "generation.c"))
        cls.plugins = {p: read(p) for p in glob.glob(os.path.join(SRC, "plugins", "*", "*", "*.c"))}
        cls.plugins["strategy_common.h"] = read(os.path.join(SRC, "plugins", "strategies", "strategy_common.h"))

    def keys_read(self):
        keys = set()
        for m in re.finditer(r"static const char \*const \w+\[\] = \{([^}]*)\}", self.core):
            keys |= set(re.findall(r'"(\w+)"', m.group(1)))
        reader = r"(?:config_string|config_int|config_bool|rr_cfg_string|govapp_config_range|strategy_channel_setting)"
        for text in self.plugins.values():
            keys |= set(re.findall(reader + r'\([^;"]*"(\w+)"', text))
        return keys

    def test_every_key_is_documented(self):
        keys = self.keys_read()
        self.assertGreater(len(keys), 50, "the key tables were found")
        terms = set(re.findall(r"^\.BR? (\w+)", self.man, re.M))
        self.assertEqual(sorted(keys - terms), [], "keys the code reads that smis.conf(5) does not document")

    def test_documented_ranges_are_the_checked_ones(self):
        consts = c_constants()
        calls = re.findall(r'get_int\(\w+, "(\w+)", &?[\w>.-]+, ([^,]+), ([^,]+),', self.core)
        for text in self.plugins.values():
            calls += re.findall(r'govapp_config_range\(api, cfg, "(\w+)", ([^,]+), ([^,]+),', text)
        self.assertGreater(len(calls), 20, "the range checks were found")
        for key, lo, hi in calls:
            documented = re.findall(r'^\.BR %s " \(([0-9]+)\\-([0-9]+)' % key, self.man, re.M)
            self.assertIn((str(c_int(lo, consts)), str(c_int(hi, consts))), documented,
                          "%s: smis.conf(5) gives %s, the code checks %s-%s" % (key, documented, lo, hi))


class SourceMap(unittest.TestCase):
    def test_every_daemon_file_is_in_the_source_map(self):
        arch = read(os.path.join(SRC, "docs", "architecture.md"))
        section = arch[arch.index("## 12. Source map"):]
        section = section[:section.index("\n## ")]
        files = sorted("daemon/" + os.path.basename(p) for p in glob.glob(os.path.join(SRC, "daemon", "*.c")))
        self.assertEqual([f for f in files if "`%s`" % f not in section], [],
                         "daemon files docs/architecture.md's source map does not name")


class ConfigurationPath(unittest.TestCase):
    def test_docs_name_the_installed_configuration_file(self):
        # smisd and smisctl read $(sysconfdir)/smis/smisd.conf, /usr/local/etc
        # unless configured otherwise: a fixed /etc/smis/smisd.conf in a
        # command to copy names a file that is not there. Fixed folders are
        # only shown where the text says which --sysconfdir gives which.
        docs = [README] + glob.glob(os.path.join(SRC, "docs", "*.md")) + \
            glob.glob(os.path.join(SRC, "examples", "*", "README.md")) + glob.glob(os.path.join(SRC, "man", "*.in")) + \
            [os.path.join(SRC, "conf", "smisd.service.in")]
        wrong = []
        for path in docs:
            for paragraph in re.split(r"\n\s*\n", read(path)):
                for folder in re.findall(r"(\$\(sysconfdir\)|[^\s`'\"(]*)/smis/smisd\.conf", paragraph):
                    explained = "--sysconfdir" in paragraph and folder in ("/usr/local/etc", "/etc")
                    if folder not in ("$(sysconfdir)", "@sysconfdir@") and not explained:
                        wrong.append("%s: %s/smis/smisd.conf" % (os.path.relpath(path, SRC), folder))
        self.assertEqual(wrong, [])


class PluginAbi(unittest.TestCase):
    def test_pkg_config_abi_version_is_the_headers(self):
        # Written once, in the header: configure substitutes it into the .pc.
        self.assertRegex(read(os.path.join(SRC, "smis-plugin.pc.in")), r"(?m)^abi_version=@SMIS_PLUGIN_ABI_VERSION@$")
        pc = re.search(r"^abi_version=(\d+)$", read(os.path.join(BUILD, "smis-plugin.pc")), re.M)
        header = re.search(r"^#define SMIS_PLUGIN_ABI_VERSION (\d+)u?$",
                           read(os.path.join(SRC, "include", "smis", "smis-plugin.h")), re.M)
        self.assertTrue(pc and header, "both state an ABI version")
        self.assertEqual(pc.group(1), header.group(1))


if __name__ == "__main__":
    unittest.main()
