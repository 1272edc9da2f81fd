"""
conformance.py - check an answer of smisd against docs/openapi.yaml.

harness.http() hands every answer it receives from a smisd it knows of to
check(), so that every integration test also proves that what it was
answered is what the document promises: a status the operation documents,
its Content-Type, a JSON body valid against that response's schema (JSON
Schema 2020-12, which OpenAPI 3.1 schemas are; $refs resolved within the
document), the headers documented for it, and for a problem the rules the
document states for every problem (its code's status in x-problem-codes,
`type`, `request_id`, the headers x-problem-codes lists for the code).

Needs PyYAML and jsonschema >= 4.0 (Debian 12: python3-yaml and
python3-jsonschema 4.10, tools/bootstrap.sh installs both). Without them
AVAILABLE is false and the check is skipped; test_conformance.py then fails,
so that a machine without them cannot pass the suite unchecked.
"""
import datetime
import json
import os
import re
import urllib.parse

try:
    import jsonschema
    import yaml
    AVAILABLE = hasattr(jsonschema, "Draft202012Validator")
except ImportError:
    AVAILABLE = False

SPEC = os.path.join(os.environ.get("top_srcdir") or os.path.join(os.path.dirname(__file__), "..", ".."),
                    "docs", "openapi.yaml")
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# The document's info.description: "Every response carries X-Request-Id
# ... and Cache-Control: no-store", whatever its status or path.
COMMON_HEADERS = ("X-Request-Id", "Cache-Control")

# Paths smisd answers that the document does not describe on purpose, with
# why. None today: /healthz and /metrics are documented operations (the
# /metrics text is checked for its Content-Type only, its schema being a
# string), and any other path must answer the documented 404 not_found.
EXEMPT = {}

# Statuses that libmicrohttpd answers before smisd reads the request, with
# a short HTML body (info.description: a request line that does not fit in
# 12 KiB): outside the problem model, on any path.
HTTP_LAYER_STATUSES = {414: "request line too long"}
# And those it answers, the same way, for a Content-Length it cannot read
# or a head that does not fit in 12 KiB (info.description): smisd answers
# these statuses too, but always with X-Request-Id, which an answer of the
# HTTP layer never has.
HTTP_LAYER_FRAMING = {400: "Content-Length not a number", 413: "Content-Length past 64 bits",
                      431: "request head past 12 KiB"}

# The answer info.description gives a known path's other methods (405,
# with Allow) and any other path (404 not_found): a problem.
ANY_PROBLEM = {"content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def _date_time(value):
    """RFC 3339 date-time, checked here: jsonschema checks the format only
    with optional packages that Debian 12 does not install with it."""
    if not isinstance(value, str):
        return True
    if not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", value):
        return False
    try:
        datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def closed(node):
    """A copy of a schema in which every object schema that names its
    members (`properties`) and says nothing of others takes no others: an
    answer's member the document does not name is a gap in the document."""
    if isinstance(node, list):
        return [closed(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: closed(v) for k, v in node.items()}
    if "properties" in out and "additionalProperties" not in out and "patternProperties" not in out:
        out["additionalProperties"] = False
    return out


def operations_named(where):
    """The (METHOD, path) pairs an x-problem-codes `where` names ("POST
    /v1/messages", "POST|GET /v1/callbacks/{channel}[/{rest}]",
    "POST|GET /v1/callbacks/{channel}/..."), and whether it says "any"."""
    ops = set()
    for methods, path, tail in re.findall(r"([A-Z|]+) (/[^\s,;\[]+?)(\[/\{rest\}\]|/\.\.\.)?(?=[\s,;]|$)", where):
        paths = ([path] if tail != "/..." else []) + ([path + "/{rest}"] if tail else [])
        ops.update((m, p) for m in methods.split("|") for p in paths)
    return ops, re.search(r"\bany\b", where) is not None


def media_type(value):
    """(type/subtype in lower case, {param: value}) of a Content-Type."""
    parts = [p.strip() for p in (value or "").split(";")]
    params = {}
    for p in parts[1:]:
        name, _, val = p.partition("=")
        if name:
            params[name.strip().lower()] = val.strip().strip('"')
    return parts[0].lower(), params


class Spec:
    """docs/openapi.yaml, read once, with a validator per schema used."""

    def __init__(self, doc):
        self.doc = doc
        self.components = closed(doc["components"])
        self.validators = {}
        self.codes = {e["code"]: e for e in doc.get("x-problem-codes", [])}
        self.formats = jsonschema.FormatChecker()
        self.formats.checks("date-time")(_date_time)
        self.routes = [(self.path_regex(path, item), path, item) for path, item in doc["paths"].items()]

    @classmethod
    def load(cls, path=SPEC):
        with open(path, encoding="utf-8") as f:
            return cls(yaml.safe_load(f))

    # -- the document ------------------------------------------------------
    def resolve(self, node):
        while isinstance(node, dict) and "$ref" in node:
            target = self.doc
            for part in node["$ref"][2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node = target
        return node

    def path_regex(self, template, item):
        """The paths a template takes: a parameter is one non-empty segment,
        unless its schema has a pattern (Rest's '^.*$': any characters,
        '/' too, or none)."""
        patterns = {}
        params = item.get("parameters", []) + [p for m in METHODS for p in item.get(m, {}).get("parameters", [])]
        for param in map(self.resolve, params):
            if param.get("in") == "path" and "pattern" in param.get("schema", {}):
                patterns[param["name"]] = re.sub(r"^\^|\$$", "", param["schema"]["pattern"])
        rx = re.sub(r"\\\{(\w+)\\\}", lambda m: "(?:%s)" % patterns.get(m.group(1), "[^/]+"),
                    re.escape(template))
        return re.compile("^%s$" % rx)

    def validator(self, key, schema):
        """A 2020-12 validator for `schema`, whose $refs ("#/components/...")
        resolve in the document: the schema is checked from a root that
        carries the document's components."""
        if key not in self.validators:
            root = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                    "components": self.components, "allOf": [closed(schema)]}
            self.validators[key] = jsonschema.Draft202012Validator(root, format_checker=self.formats)
        return self.validators[key]

    def operation(self, method, path):
        """(template, operation or None, allowed methods) for a request, or
        (None, None, None) for a path the document does not have. HEAD is
        taken wherever GET is, except on /v1/callbacks/... (info.description:
        there a HEAD must not record a report, and is refused with 405)."""
        for rx, template, item in self.routes:
            if rx.match(path):
                allowed = [m.upper() for m in METHODS if m in item]
                # Method names are case-sensitive: "get" is no operation.
                m = method.lower() if method.isupper() else None
                if m == "head" and "get" in item and not template.startswith("/v1/callbacks/"):
                    m = "get"
                return template, item.get(m), allowed
        return None, None, None

    # -- the check ---------------------------------------------------------
    def check(self, method, url, status, headers, body):
        """The ways an answer (status, headers with a case-insensitive get(),
        body text) departs from the document; empty when it conforms."""
        path = urllib.parse.urlsplit(url).path
        if path in EXEMPT or status in HTTP_LAYER_STATUSES or (
                status in HTTP_LAYER_FRAMING and headers.get("X-Request-Id") is None):
            return []
        errors = []
        template, op, allowed = self.operation(method, path)
        where = "%s %s" % (method, template or path)
        if op is not None and str(status) not in op["responses"] and self.answered_anywhere(status, body):
            op = None  # an x-problem-codes code "where: any" (malformed_request): not the operation's
        if op is not None:
            response = op["responses"].get(str(status)) or op["responses"].get("default")
            if response is None:
                return ["%s: status %d is not documented for this operation (documented: %s)"
                        % (where, status, ", ".join(sorted(op["responses"])))]
            key = (template, method.lower(), str(status))
        elif status == 405 and template is not None:
            # A known path without this method: info.description's 405 with
            # Allow listing the path's methods.
            response = ANY_PROBLEM
            key = ("405",)
            got = {m.strip().upper() for m in (headers.get("Allow") or "").split(",") if m.strip()}
            if got != set(allowed):
                errors.append("%s: 405 with Allow %r, the document's methods are %s"
                              % (where, headers.get("Allow"), ", ".join(allowed)))
        elif (status in (404, 500) and template is None) or self.answered_anywhere(status, body):
            # Any other path: 404 not_found (or 500 when no request id can
            # be made, x-problem-codes internal_error); on any path, a code
            # x-problem-codes answers anywhere.
            response = ANY_PROBLEM
            key = ("any",)
        else:
            return ["%s: status %d, but the document has no %s"
                    % (where, status, "such path" if template is None else "operation " + method)]
        response = self.resolve(response)
        # The operation (HEAD is answered as a GET) and the response the
        # answer is, None for info.description's 405 and 404.
        here = None if op is None else ("GET" if method == "HEAD" else method, template, response)
        errors += self.check_headers(where, status, response.get("headers", {}), headers)
        errors += self.check_body(where, method, status, key, response, headers, body, here)
        return errors

    def answered_anywhere(self, status, body):
        """Whether the answer is a problem whose code x-problem-codes
        answers with this status on any path (`where: any`)."""
        try:
            entry = self.codes.get(json.loads(body).get("code"))
        except (ValueError, AttributeError, TypeError):
            return False
        statuses = entry and (entry["status"] if isinstance(entry["status"], list) else [entry["status"]])
        return bool(entry) and entry["where"] == "any" and status in statuses

    def check_headers(self, where, status, documented, headers, common=COMMON_HEADERS):
        errors = []
        names = dict.fromkeys(common)
        names.update(documented)
        for name, spec in names.items():
            spec = self.resolve(spec if spec is not None else {"$ref": "#/components/headers/" + name})
            value = headers.get(name)
            if value is None:
                if spec.get("required") or name in common:
                    errors.append("%s: %d without its %s header" % (where, status, name))
                continue
            schema = spec.get("schema", {})
            typed = int(value) if schema.get("type") == "integer" and re.match(r"^\d+$", value) else value
            for e in self.validator(("header", name), schema).iter_errors(typed):
                errors.append("%s: %d header %s: %r: %s" % (where, status, name, value, e.message))
        return errors

    def check_body(self, where, method, status, key, response, headers, body, here):
        content = response.get("content")
        ctype = headers.get("Content-Type")
        if not content:
            return [] if not body else ["%s: %d has a body, the document none" % (where, status)]
        got, got_params = media_type(ctype)
        for documented, media in content.items():
            want, want_params = media_type(documented)
            if got == want and all(got_params.get(k) == v for k, v in want_params.items()):
                break
        else:
            return ["%s: %d with Content-Type %r, the document has %s"
                    % (where, status, ctype, ", ".join(content))]
        if method == "HEAD" or not (got == "application/json" or got.endswith("+json")):
            return []
        try:
            value = json.loads(body)
        except ValueError as e:
            return ["%s: %d body is not JSON (%s): %r" % (where, status, e, body[:200])]
        errors = ["%s: %d body%s: %s (schema: %s)" % (where, status, "".join("/%s" % p for p in e.absolute_path),
                                                     e.message, "/".join(str(p) for p in e.absolute_schema_path))
                  for e in self.validator(key + (documented,), media.get("schema", {})).iter_errors(value)]
        if got == "application/problem+json" and isinstance(value, dict):
            errors += self.check_problem(where, status, value, headers, here)
        return errors

    def check_problem(self, where, status, problem, headers, here):
        """What the document says of every problem beyond its schema: its
        status, type and request_id repeat the answer's, and its code's
        entry in x-problem-codes has this status, this operation ("where")
        and the headers it lists; the response's description names it."""
        code = problem.get("code")
        errors = []
        if problem.get("status") != status:
            errors.append("%s: %d with a problem whose status is %r" % (where, status, problem.get("status")))
        if problem.get("type") != "/problems/%s" % code:
            errors.append("%s: %d %s with type %r" % (where, status, code, problem.get("type")))
        if problem.get("request_id") != headers.get("X-Request-Id"):
            errors.append("%s: %d %s with request_id %r, X-Request-Id %r"
                          % (where, status, code, problem.get("request_id"), headers.get("X-Request-Id")))
        entry = self.codes.get(code)
        if entry is None:
            return errors  # not in the Problem schema's enum: reported by check_body
        statuses = entry["status"] if isinstance(entry["status"], list) else [entry["status"]]
        if status not in statuses:
            errors.append("%s: %d %s, x-problem-codes answers it with %s" % (where, status, code, statuses))
        ops, anywhere = operations_named(entry["where"])
        if not anywhere and (here is None or here[:2] not in ops):
            errors.append("%s: %s is not answered here by x-problem-codes (where: %s)" % (where, code, entry["where"]))
        if here is not None and "`%s`" % code not in here[2].get("description", ""):
            errors.append("%s: the description of this response does not name %s" % (where, code))
        for name in entry.get("headers", []):
            if headers.get(name) is None:
                errors.append("%s: %d %s without its %s header" % (where, status, code, name))
            else:
                errors += self.check_headers(where, status, {name: {"$ref": "#/components/headers/" + name}},
                                             headers, common=())
        return errors


_spec = None


def spec():
    global _spec
    if _spec is None:
        _spec = Spec.load()
    return _spec


def check(method, url, response):
    """The departures of a harness Response from the document ([] when the
    checker is not available)."""
    if not AVAILABLE:
        return []
    return spec().check(method, url, response.status, response.headers, response.raw)
