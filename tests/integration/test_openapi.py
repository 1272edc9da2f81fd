"""
test_openapi.py - docs/openapi.yaml must not drift from the code.

Reads the C sources (no build needed) and checks that the specification
names every problem code of daemon/problem.c (in the Problem `code` enum
and in the root `x-problem-codes` table, with the HTTP statuses the code is
answered with), every route of route_of() in daemon/http_server.c, and
every attempt/message error string the daemon and the channel plugins can
put in an answer. And that the file is YAML at all, loaded by PyYAML
(python3-yaml, which tools/bootstrap.sh installs): those checks are skipped
where it cannot be imported; the others need the standard library only. Run
by `make check` (top_srcdir set) or by hand.
"""
import functools
import glob
import os
import re
import sys
import unittest

try:
    import yaml
except ImportError:  # the YAML checks skip, the others run
    yaml = None

SRC = os.environ.get("top_srcdir") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SPEC = os.path.join(SRC, "docs", "openapi.yaml")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


# ---- a small C reader ---------------------------------------------------------

def strip_c(text):
    """Blank out comments and preprocessor lines, keep strings and offsets."""
    out = []
    i, n = 0, len(text)
    at_line_start = True
    while i < n:
        c = text[i]
        if at_line_start and c == "#":
            # Preprocessor line, with its backslash continuations.
            while i < n and text[i] != "\n":
                if text[i] == "\\" and i + 1 < n and text[i + 1] == "\n":
                    out.append("  ")
                    i += 2
                    continue
                out.append(" ")
                i += 1
            continue
        if c == "/" and text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
            continue
        if c == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(" " * (end - i))
            i = end
            continue
        if c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
            at_line_start = False
            continue
        out.append(c)
        if c == "\n":
            at_line_start = True
        elif not c.isspace():
            at_line_start = False
        i += 1
    return "".join(out)


def skip_literal(text, i):
    """Index just past the string/char literal starting at text[i]."""
    q = text[i]
    j = i + 1
    while j < len(text) and text[j] != q:
        j += 2 if text[j] == "\\" else 1
    return j + 1


def functions(code):
    """[(name, [param names], body)] for every top-level function definition."""
    found = []
    depth, i, start = 0, 0, 0
    while i < len(code):
        c = code[i]
        if c in "\"'":
            i = skip_literal(code, i)
            continue
        if c == "{":
            if depth == 0:
                head = code[start:i]
                m = re.search(r"\b([A-Za-z_]\w*)\s*\(([^()]*(?:\([^()]*\)[^()]*)*)\)\s*$", head)
                body_start = i
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                if m and not re.search(r"=\s*$", head):
                    params = []
                    for p in split_args(m.group(2)):
                        ids = re.findall(r"[A-Za-z_]\w*", p)
                        params.append(ids[-1] if ids and p.strip() != "..." else "...")
                    found.append((m.group(1), params, code[body_start:i + 1]))
                start = i + 1
        elif c == ";" and depth == 0:
            start = i + 1
        i += 1
    return found


def split_args(s):
    """Split a C argument list on its top-level commas."""
    args, depth, cur, i = [], 0, [], 0
    while i < len(s):
        c = s[i]
        if c in "\"'":
            j = skip_literal(s, i)
            cur.append(s[i:j])
            i = j
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c == "," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    if "".join(cur).strip():
        args.append("".join(cur).strip())
    return args


def calls(body, name):
    """Argument lists of every call to `name` in body."""
    for m in re.finditer(r"\b%s\s*\(" % re.escape(name), body):
        i, depth = m.end(), 1
        while i < len(body) and depth:
            if body[i] in "\"'":
                i = skip_literal(body, i)
                continue
            depth += {"(": 1, ")": -1}.get(body[i], 0)
            i += 1
        yield split_args(body[m.end():i - 1])


LITERAL = re.compile(r'^"((?:[^"\\]|\\.)*)"$')
ERROR_FIELD = re.compile(r"^\w+\s*(?:->|\.)\s*error$")


def literal_stem(lit):
    """The fixed part of a string that may be a printf format: "a_%d" -> "a_"."""
    return lit.split("%", 1)[0]


def error_strings(paths):
    """Every string the code can store in smis_outcome.error or job->error.

    A helper such as govapp_fail(out, kind, error, ...) that copies one of
    its parameters into out->error is followed to its callers (to a fixed
    point), and a local buffer passed as that parameter contributes the
    snprintf() formats written into it."""
    funcs = []
    for p in paths:
        funcs += [(p, f) for f in functions(strip_c(read(p)))]
    sinks = {}  # function name -> index of the parameter that becomes the error

    def mark(name, idx):
        if sinks.get(name) != idx:
            sinks[name] = idx
            return True
        return False

    changed = True
    while changed:
        changed = False
        for _, (name, params, body) in funcs:
            for args in calls(body, "SMIS_OUTCOME_SET"):
                if len(args) == 2 and ERROR_FIELD.match(args[0]) and args[1] in params:
                    changed |= mark(name, params.index(args[1]))
            for sink, idx in list(sinks.items()):
                for args in calls(body, sink):
                    if idx < len(args) and args[idx] in params:
                        changed |= mark(name, params.index(args[idx]))
    found = {}

    def add(lit, where):
        stem = literal_stem(lit)
        if stem:
            found.setdefault(stem, where)

    for path, (name, params, body) in funcs:
        where = "%s:%s()" % (os.path.relpath(path, SRC), name)
        for args in calls(body, "SMIS_OUTCOME_SET"):
            if len(args) == 2 and ERROR_FIELD.match(args[0]) and LITERAL.match(args[1]):
                add(LITERAL.match(args[1]).group(1), where)
        for args in calls(body, "snprintf"):
            # snprintf(job->error, size, "fmt", a ? b : "literal"): the
            # format and every literal among its arguments.
            if len(args) >= 3 and ERROR_FIELD.match(args[0]):
                for arg in args[2:]:
                    for lit in re.findall(r'"((?:[^"\\]|\\.)*)"', arg):
                        add(lit, where)
        for sink, idx in sinks.items():
            for args in calls(body, sink):
                if idx >= len(args):
                    continue
                arg = args[idx]
                if LITERAL.match(arg):
                    add(LITERAL.match(arg).group(1), where)
                elif re.match(r"^[A-Za-z_]\w*$", arg) and arg not in params:
                    for sargs in calls(body, "snprintf"):
                        if len(sargs) >= 3 and sargs[0] == arg and LITERAL.match(sargs[2]):
                            add(LITERAL.match(sargs[2]).group(1), where)
    return found, sinks


# ---- what the code says -------------------------------------------------------

@functools.lru_cache(maxsize=None)
def problem_codes():
    text = read(os.path.join(SRC, "daemon", "problem.c"))
    table = re.search(r"titles\[\]\s*=\s*\{(.*?)\n\};", text, re.S)
    assert table, "titles[] table not found in daemon/problem.c"
    # Entries are PROBLEM("code", "title"), the end { NULL, ... }.
    return tuple(re.findall(r'PROBLEM\(\s*"([a-z0-9_]+)"\s*,\s*"', table.group(1)))


@functools.lru_cache(maxsize=None)
def problem_statuses():
    """{code: {status, ...}} for every problem raised with a literal code."""
    pairs = {}
    for path in sorted(glob.glob(os.path.join(SRC, "daemon", "*.c"))):
        bodies = [body for _, _, body in functions(strip_c(read(path)))]
        for fn, skip in (("smisd_problem_set", 1), ("respond_code", 2)):
            for body in bodies:
                for args in calls(body, fn):
                    if len(args) > skip + 1 and args[skip].isdigit() and LITERAL.match(args[skip + 1]):
                        pairs.setdefault(LITERAL.match(args[skip + 1]).group(1), set()).add(int(args[skip]))
    return pairs


def routes():
    code = strip_c(read(os.path.join(SRC, "daemon", "http_server.c")))
    for name, _, body in functions(code):
        if name == "route_of":
            return sorted(set(re.findall(r'"(/[^"]*)"', body)))
    raise AssertionError("route_of() not found in daemon/http_server.c")


def id_len():
    """SMISD_ID_LEN of daemon/job.h: ids this long or longer are not looked up."""
    m = re.search(r"(?m)^#define\s+SMISD_ID_LEN\s+(\d+)", read(os.path.join(SRC, "daemon", "job.h")))
    assert m, "SMISD_ID_LEN not found in daemon/job.h"
    return int(m.group(1))


def error_sources():
    paths = sorted(glob.glob(os.path.join(SRC, "plugins", "channels", "*", "*.c")))
    paths += sorted(glob.glob(os.path.join(SRC, "daemon", "*.c")))
    return paths


# ---- what the specification says ------------------------------------------------

def block(lines, i):
    """Lines indented deeper than lines[i], up to the next sibling or parent."""
    ind = len(lines[i]) - len(lines[i].lstrip())
    out = []
    for line in lines[i + 1:]:
        if line.strip() and not line.lstrip().startswith("#") and len(line) - len(line.lstrip()) <= ind:
            break
        out.append(line)
    return out


def find_key(lines, key, indent=None):
    for i, line in enumerate(lines):
        s = line.lstrip()
        if (s.startswith(key + ":") and (indent is None or len(line) - len(s) == indent)):
            return i
    return -1


class OpenApiMatchesCode(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.spec = read(SPEC)
        cls.lines = cls.spec.splitlines()

    def test_is_openapi_31(self):
        self.assertRegex(self.spec, r"(?m)^openapi: ['\"]?3\.1\.\d+")
        for top in ("info", "paths", "components"):
            self.assertNotEqual(find_key(self.lines, top, 0), -1, "no top-level '%s'" % top)
        self.assertNotIn("\t", self.spec, "YAML must not contain tabs")

    def test_every_route_is_a_path(self):
        p = find_key(self.lines, "paths", 0)
        keys = [l.strip()[:-1].strip("'\"") for l in block(self.lines, p)
                if re.match(r"^  ['\"]?/\S*['\"]?:\s*$", l)]
        self.assertTrue(keys, "no paths found")
        for r in routes():
            if r.endswith("/"):
                ok = any(k.startswith(r) and len(k) > len(r) for k in keys)
            else:
                ok = r in keys
            self.assertTrue(ok, "route %r of route_of() has no path in docs/openapi.yaml (paths: %s)" % (r, keys))

    def test_problem_code_enum_is_complete(self):
        codes = problem_codes()
        self.assertGreater(len(codes), 10, "could not read the titles table of daemon/problem.c")
        comp = block(self.lines, find_key(self.lines, "components", 0))
        schemas = block(comp, find_key(comp, "schemas", 2))
        s = find_key(schemas, "Problem", 4)
        self.assertNotEqual(s, -1, "components/schemas/Problem not found")
        schema = block(schemas, s)
        c = find_key(schema, "code")
        self.assertNotEqual(c, -1, "Problem has no 'code' property")
        e = find_key(block(schema, c), "enum")
        self.assertNotEqual(e, -1, "Problem.code has no enum")
        enum = [l.strip()[2:].strip().strip("'\"") for l in block(block(schema, c), e)
                if l.strip().startswith("- ")]
        self.assertEqual(sorted(enum), sorted(codes),
                         "Problem.code enum differs from daemon/problem.c: missing %s, extra %s"
                         % (sorted(set(codes) - set(enum)), sorted(set(enum) - set(codes))))

    def test_problem_table_has_every_code_and_status(self):
        x = find_key(self.lines, "x-problem-codes", 0)
        self.assertNotEqual(x, -1, "no top-level x-problem-codes table")
        table = block(self.lines, x)
        documented = {}
        cur = None
        for line in table:
            m = re.match(r"^  - code:\s*(\w+)\s*$", line)
            if m:
                cur = m.group(1)
                documented[cur] = set()
                continue
            m = re.match(r"^    status:\s*\[?([\d,\s]+)\]?\s*$", line)
            if m and cur:
                documented[cur] |= {int(v) for v in re.findall(r"\d+", m.group(1))}
        for code in problem_codes():
            self.assertIn(code, documented, "x-problem-codes lacks %s" % code)
            self.assertTrue(documented[code], "x-problem-codes: %s has no status" % code)
        for code, statuses in problem_statuses().items():
            self.assertIn(code, documented, "%s is raised in daemon/ but not documented" % code)
            self.assertTrue(statuses <= documented[code],
                            "%s is answered with %s, x-problem-codes says %s"
                            % (code, sorted(statuses), sorted(documented[code])))
        # Each status a code is answered with appears among the responses,
        # except 405 and 501: they answer methods that have no operation to
        # hang them on, and a reserved code (documented as answered nowhere yet).
        for code, statuses in documented.items():
            if code in ("method_not_allowed", "method_not_implemented") or code not in problem_statuses():
                continue
            for st in statuses:
                self.assertIsNotNone(re.search(r"(?m)^\s+['\"]%d['\"]:" % st, self.spec),
                                     "status %d (of %s) is not a documented response" % (st, code))

    def test_message_id_length_matches_the_code(self):
        comp = block(self.lines, find_key(self.lines, "components", 0))
        params = block(comp, find_key(comp, "parameters", 2))
        schema = block(params, find_key(params, "MessageId", 4))
        m = re.search(r"maxLength:\s*(\d+)", "\n".join(schema))
        self.assertIsNotNone(m, "components/parameters/MessageId has no maxLength")
        self.assertEqual(int(m.group(1)), id_len() - 1, "MessageId maxLength differs from SMISD_ID_LEN - 1")
        self.assertIn("id of %d characters or more" % id_len(), self.spec,
                      "GET /v1/messages/{id}'s 404 does not say which ids are not looked up")

    def test_every_problem_code_mentioned(self):
        for code in problem_codes():
            self.assertIsNotNone(re.search(r"(?<![A-Za-z0-9_])%s(?![A-Za-z0-9_])" % code, self.spec),
                                 "problem code %s is not in docs/openapi.yaml" % code)

    def test_every_error_string_mentioned(self):
        found, sinks = error_strings(error_sources())
        # The reader must have understood the helpers, or it checks nothing.
        self.assertIn("fail_current", sinks, "error helpers not recognised: %s" % sinks)
        self.assertGreater(len(found), 10, found)
        for stem, where in sorted(found.items()):
            self.assertIsNotNone(re.search(r"(?<![A-Za-z0-9_])%s" % re.escape(stem), self.spec),
                                 "error %r (%s) is not in docs/openapi.yaml" % (stem, where))


def load_yaml(text):
    """docs/openapi.yaml as PyYAML reads it, a key repeated in one mapping
    refused (PyYAML would keep the last one silently)."""
    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, "key %r appears twice in one mapping" % (key,), key_node.start_mark)
            seen.add(key)
        return loader.construct_mapping(node, deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return yaml.load(text, Loader=Loader)


@unittest.skipIf(yaml is None, "PyYAML (python3-yaml) is not installed")
class OpenApiIsYaml(unittest.TestCase):
    """The line-based checks above read the file as text: a quoting mistake
    that makes it unreadable to every OpenAPI tool goes through them."""

    METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

    @classmethod
    def setUpClass(cls):
        try:
            cls.doc = load_yaml(read(SPEC))
        except yaml.YAMLError as e:
            raise AssertionError("docs/openapi.yaml is not valid YAML: %s" % e) from None

    def test_top_level(self):
        d = self.doc
        self.assertIsInstance(d, dict)
        self.assertRegex(str(d.get("openapi")), r"^3\.1\.\d+$")
        self.assertTrue(d["info"]["title"] and d["info"]["version"])
        for key in ("paths", "components"):
            self.assertIsInstance(d.get(key), dict, key)
        self.assertIsInstance(d["components"].get("schemas"), dict)

    def test_operations_have_responses(self):
        ops = 0
        for path, item in self.doc["paths"].items():
            self.assertTrue(path.startswith("/"), path)
            self.assertIsInstance(item, dict, path)
            for method in set(item) & set(self.METHODS):
                op = item[method]
                ops += 1
                where = "%s %s" % (method.upper(), path)
                self.assertIsInstance(op.get("responses"), dict, where)
                for status in op["responses"]:
                    self.assertRegex(str(status), r"^[1-5]\d\d$", where)
                    self.assertIsInstance(status, str, "%s: quote status %s" % (where, status))
        self.assertGreater(ops, 5)

    def test_refs_resolve(self):
        refs = set()

        def walk(node):
            if isinstance(node, dict):
                for k, v in node.items():
                    if k == "$ref":
                        refs.add(v)
                    walk(v)
            elif isinstance(node, list):
                for v in node:
                    walk(v)
        walk(self.doc)
        self.assertTrue(refs)
        for ref in sorted(refs):
            self.assertTrue(ref.startswith("#/"), ref)
            node = self.doc
            for part in ref[2:].split("/"):
                self.assertIsInstance(node, dict, ref)
                self.assertIn(part, node, "%s does not resolve" % ref)
                node = node[part]

    def test_problem_table_entries(self):
        table = self.doc.get("x-problem-codes")
        self.assertIsInstance(table, list)
        for entry in table:
            self.assertIsInstance(entry, dict)
            self.assertEqual(sorted(set(entry) - {"headers"}), ["code", "status", "when", "where"], entry)
            # The headers its answer always carries: documented headers
            # (conformance.py checks each answer for them).
            for name in entry.get("headers", []):
                self.assertIn(name, self.doc["components"]["headers"], entry)
            for k in ("code", "where", "when"):
                self.assertIsInstance(entry[k], str, entry)
            statuses = entry["status"] if isinstance(entry["status"], list) else [entry["status"]]
            for st in statuses:
                self.assertIsInstance(st, int, entry)
        self.assertEqual(sorted(e["code"] for e in table), sorted(problem_codes()))

    def test_each_operation_documents_its_problems(self):
        """An x-problem-codes entry that names an operation ("POST /v1/x",
        "POST|GET /v1/callbacks/{channel}[/{rest}]") has its status among
        that operation's responses."""
        paths = self.doc["paths"]
        checked = 0
        for entry in self.doc["x-problem-codes"]:
            statuses = entry["status"] if isinstance(entry["status"], list) else [entry["status"]]
            for where in entry["where"].split(", "):
                m = re.match(r"^([A-Z|]+) (/\S+?)(\[(/\S+)\]|/\.\.\.)?$", where)
                if not m:
                    continue  # "any", "any known path"
                base, tail = m.group(2), m.group(3)
                # "[/{rest}]": with and without it; "/...": with a rest.
                variants = ([base] if tail != "/..." else []) + ([base + "/{rest}"] if tail else [])
                for path in variants:
                    self.assertIn(path, paths, "%s: %r names no path" % (entry["code"], where))
                    for method in m.group(1).split("|"):
                        op = paths[path].get(method.lower())
                        self.assertIsNotNone(op, "%s: no %s %s" % (entry["code"], method, path))
                        for st in statuses:
                            checked += 1
                            self.assertTrue(str(st) in op["responses"], "%s: %s %s does not document %s"
                                            % (entry["code"], method, path, st))
        self.assertGreater(checked, 50)

    # The handler of each route in daemon/http_server.c, and the operations
    # it answers.
    CALLBACKS = [(m, p) for m in ("post", "get") for p in ("/v1/callbacks/{channel}", "/v1/callbacks/{channel}/{rest}")]
    HANDLERS = {"handle_send": [("post", "/v1/messages")], "handle_get_message": [("get", "/v1/messages/{id}")],
                "handle_keys": [("post", "/v1/recipients/keys")], "keys_answer": [("post", "/v1/recipients/keys")],
                "handle_health": [("get", "/healthz")], "handle_callback": CALLBACKS}

    def test_each_handler_status_is_documented(self):
        """Every status a route's handler answers with a literal is among
        its operations' responses; respond() answers 500 internal_error for
        a body it could not make (out of memory), and on_request() on every
        path when no request id can be made, so every operation has a
        500."""
        bodies = {name: body for name, _, body in
                  functions(strip_c(read(os.path.join(SRC, "daemon", "http_server.c"))))}
        for name, ops in self.HANDLERS.items():
            self.assertIn(name, bodies, "daemon/http_server.c has no %s()" % name)
            statuses = set()
            for fn, at in (("respond_code", 2), ("respond_retry_soon", 2), ("smisd_problem_set", 1), ("respond", 2)):
                statuses.update(int(args[at]) for args in calls(bodies[name], fn)
                                if len(args) > at and args[at].isdigit())
            for method, path in ops:
                for status in statuses:
                    self.assertIn(str(status), self.doc["paths"][path][method]["responses"],
                                  "%s() answers %d, not documented for %s %s" % (name, status, method.upper(), path))
        for path, item in self.doc["paths"].items():
            for method in set(item) & set(self.METHODS):
                self.assertIn("500", item[method]["responses"], "%s %s has no 500" % (method.upper(), path))


if __name__ == "__main__":
    prog = unittest.main(exit=False, verbosity=2)
    sys.exit(0 if prog.result.wasSuccessful() else 1)
