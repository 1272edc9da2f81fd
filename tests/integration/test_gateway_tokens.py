"""
Gateway bearer tokens (JWT, RS256/ES256) as institutions present them
through the eHealth API gateway: accepted when signed by a configured
issuer for SMIS's audience and mapped to an institution by client id;
refused when forged, expired, for another audience, `alg: none`, or an
HMAC made with the public key (key confusion). Tokens are signed here with
the openssl command line and the test keys in tests/data/jwt.
"""
import base64
import json
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BUILD, CITIZENS, SRC, Stack, StackTestCase, http, message, run_wrapped  # noqa: E402
from harness import KEYS as API_KEYS  # noqa: E402

KEYS = os.path.join(SRC, "tests", "data", "jwt")
ISSUER = "https://api-acpt.ehealth.fgov.be/auth/realms/M2M"
AUDIENCE = "smis"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def der_to_raw(der):
    """ECDSA DER signature -> JWS r||s (32 bytes each)."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 3
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        v = der[i + 2:i + 2 + n].lstrip(b"\0")
        out += v.rjust(32, b"\0")
        i += 2 + n
    return out


def sign(alg, claims, key="rsa.key", header_extra=None):
    header = {"alg": alg, "typ": "JWT"}
    header.update(header_extra or {})
    signing_input = (b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())).encode()
    if alg == "none":
        return signing_input.decode() + "."
    if alg == "HS256":
        import hmac
        import hashlib
        secret = open(os.path.join(KEYS, key), "rb").read()
        sig = hmac.new(secret, signing_input, hashlib.sha256).digest()
    else:
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", os.path.join(KEYS, key)],
                             input=signing_input, capture_output=True, check=True).stdout
        if alg == "ES256":
            sig = der_to_raw(sig)
    return signing_input.decode() + "." + b64(sig)


def claims(**over):
    now = int(time.time())
    c = {"iss": ISSUER, "aud": AUDIENCE, "sub": "cbe-0123456789", "client_id": "cbe-0123456789",
         "iat": now, "exp": now + 300, "jti": "t-%d" % now}
    c.update(over)
    return c


EXTRA = """
token_issuers = (
  { issuer = "%s"; audience = "%s"; key_file = "%s"; max_skew_s = 30; }
);
""" % (ISSUER, AUDIENCE, os.path.join(KEYS, "jwks.json"))


class TokenCase(StackTestCase):
    def send(self, token):
        return http("POST", self.stack.base + "/v1/messages", message(CITIZENS["no_app"], "sms_only"),
                    {"Authorization": "Bearer " + token})

    def refused(self, token, why):
        r = self.send(token)
        self.assertEqual(r.status, 401, r.raw)
        self.assertEqual(r.json["code"], "unauthorized")
        self.assertIn(why, r.json["detail"])


class GatewayTokens(TokenCase):
    stack_kwargs = {"extra_conf": EXTRA}

    def test_valid_tokens_map_to_the_institution(self):
        for alg, key in (("RS256", "rsa.key"), ("ES256", "ec.key")):
            with self.subTest(alg=alg):
                r = self.send(sign(alg, claims(), key, {"kid": "rsa-1" if alg == "RS256" else "ec-1"}))
                self.assertEqual(r.status, 201, r.raw)
                # The message belongs to inst-a: readable with inst-a's API key.
                self.assertEqual(self.stack.get(r.json["id"], "inst-a").status, 200)
                self.assertEqual(self.stack.get(r.json["id"], "inst-b").status, 404)
        # With whitespace after it, not part of the header's value (RFC
        # 9110 5.5): the same token; an API key still reads as one too.
        for ows in (" ", "\t", " \t"):
            with self.subTest(ows=ows):
                self.assertEqual(self.send(sign("RS256", claims()) + ows).status, 201)
                self.assertEqual(self.send(API_KEYS["inst-a"] + ows).status, 201)

    def test_sub_when_no_client_id(self):
        c = claims()
        del c["client_id"]
        self.assertEqual(self.send(sign("RS256", c)).status, 201)

    def test_refusals(self):
        now = int(time.time())
        self.refused(sign("RS256", claims(), "other-rsa.key"), "bad_signature")
        self.refused(sign("ES256", claims(), "other-ec.key"), "bad_signature")
        self.refused(sign("RS256", claims(exp=now - 120, iat=now - 600)), "expired")
        self.refused(sign("RS256", claims(nbf=now + 600)), "not_yet_valid")
        self.refused(sign("RS256", claims(aud="another-service")), "wrong_audience")
        self.refused(sign("RS256", claims(iss="https://evil.example/realms/M2M")), "wrong_issuer")
        self.refused(sign("none", claims()), "alg_not_allowed")
        self.refused(sign("HS256", claims(), "rsa.pub"), "alg_not_allowed")
        # Another kind of signed JWT from the same issuer is no access token.
        self.refused(sign("RS256", claims(), "rsa.key", {"typ": "dpop+jwt"}), "typ_not_allowed")
        self.assertEqual(self.send(sign("RS256", claims(), "rsa.key", {"typ": "at+jwt"})).status, 201)
        self.refused(sign("RS256", claims(client_id="cbe-9999999999")), "unknown_client")
        self.refused(sign("RS256", claims(), "rsa.key", {"kid": "nope"}), "unknown_key")
        self.refused("eyJhbGciOiJSUzI1NiJ9.e30.AAAA", "wrong_issuer")  # an empty claim set
        # Not inst-a's client id with something after a NUL: not inst-a.
        self.refused(sign("RS256", claims(client_id="cbe-0123456789\u0000-other")), "malformed")
        # A control character makes the header malformed (RFC 9110 5.5),
        # refused before it is read as a token or a key (was unknown_key).
        token = sign("RS256", claims())
        self.refused(token[:20] + "\x01" + token[20:], "malformed")
        self.refused(token + "\x7f", "malformed")
        # Within the allowed clock skew is fine.
        self.assertEqual(self.send(sign("RS256", claims(exp=now - 10, iat=now - 300))).status, 201)
        # API keys keep working beside tokens.
        self.assertEqual(self.stack.send(message(CITIZENS["no_app"], "sms_only")).status, 201)


class ManyKeys(TokenCase):
    """A token without a kid was tried against every key of its type, with
    no bound: with an issuer of many keys, anyone could make each request
    cost that many signature checks. Past 4 keys of its type the token must
    name its key (refused before any check: kid_required), and a key file
    with more than 4 keys without a kid of one type, each tried for any
    token, is refused when loaded."""

    @classmethod
    def setUpClass(cls):
        # Key files next to the configuration (key_file is relative to its
        # folder): the stack's folder, written before smisd starts.
        cls.stack = Stack(extra_conf=cls.issuer_conf("many.json"))
        with open(os.path.join(KEYS, "jwks.json")) as f:
            rsa = json.load(f)["keys"][0]
        cls.key_file("many.json", json.dumps({"keys": [dict(rsa, kid="rsa-%d" % i) for i in range(1, 6)]}))
        cls.stack.start()

    @classmethod
    def key_file(cls, name, text):
        with open(os.path.join(cls.stack.dir, name), "w") as f:
            f.write(text)

    @staticmethod
    def issuer_conf(key_file):
        return EXTRA.replace(os.path.join(KEYS, "jwks.json"), key_file)

    def test_a_token_without_a_kid_must_name_its_key(self):
        self.refused(sign("RS256", claims()), "(kid_required)")
        self.refused(sign("RS256", claims(), "other-rsa.key"), "(kid_required)")  # no check made
        self.assertEqual(self.send(sign("RS256", claims(), "rsa.key", {"kid": "rsa-5"})).status, 201)

    def test_a_pem_file_with_five_keys_is_refused(self):
        s = self.stack
        with open(os.path.join(KEYS, "rsa.pub")) as f:
            self.key_file("five.pem", f.read() * 5)
        conf = os.path.join(s.dir, "five.conf")
        extra, s.extra_conf = s.extra_conf, self.issuer_conf("five.pem")
        try:
            s.write_conf(path=conf)
        finally:
            s.extra_conf = extra
        p = run_wrapped([os.path.join(BUILD, "smisd"), "--check-config", "-c", conf])
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("five.pem: 5 RS256 keys without a kid, at most 4", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
