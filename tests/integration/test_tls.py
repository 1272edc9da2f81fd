"""
TLS towards an upstream, over real TLS on loopback. A relay ends TLS with a
certificate made here (openssl) and forwards the bytes to ringring-sim, so
that the RingRing channel's `base_url` is https:// and its `http` settings
are what is tested, end to end through smisd:

- verify_tls on (the default) and no ca_file: the test certificate is not
  trusted, the send fails as upstream_unreachable, nothing reaches RingRing;
- ca_file naming it: the message goes, over TLS;
- the same CA but a certificate for another name: refused (host check);
- verify_tls = false: goes (for test set-ups only).

Every process is started here and stopped by PID.
"""
import os
import re
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import CITIZENS, UPSTREAM_HTTP, StackTestCase, message  # noqa: E402


def make_cert(folder, name, san):
    """A self-signed P-256 certificate (its own CA) for `san`."""
    cert, key = os.path.join(folder, name + ".pem"), os.path.join(folder, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "2", "-subj", "/CN=smis-test-" + name, "-addext",
                    "subjectAltName=" + san, "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    return cert, key


class TLSRelay:
    """Accepts TLS on 127.0.0.1, forwards the plain bytes to `target_port`."""

    def __init__(self, cert, key, target_port):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.handshakes = 0
        self.refused = 0  # handshakes the client broke off
        self.open = True
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while self.open:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        try:
            tls = self.ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            with self.lock:
                self.refused += 1
            conn.close()
            return
        with self.lock:
            self.handshakes += 1
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        try:
            while True:
                # TLS may hold decrypted bytes that select() cannot see.
                ready = [tls] if tls.pending() else select.select([tls, upstream], [], [], 30)[0]
                if not ready:
                    return
                for src, dst in ((tls, upstream), (upstream, tls)):
                    if src in ready:
                        data = src.recv(65536)
                        if not data:
                            return
                        dst.sendall(data)
        except (ssl.SSLError, OSError):
            return
        finally:
            upstream.close()
            tls.close()

    def close(self):
        self.open = False
        self.listener.close()


class UpstreamTLS(StackTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        d = cls.stack.dir
        cls.ca, key = make_cert(d, "upstream", "IP:127.0.0.1")
        other, other_key = make_cert(d, "other", "DNS:other.example")
        # The other name's certificate, trusted through its own file.
        cls.other_ca = other
        rr_port = int(cls.stack.ringring.rsplit(":", 1)[1])
        cls.relay = TLSRelay(cls.ca, key, rr_port)
        cls.wrong_name = TLSRelay(other, other_key, rr_port)

    @classmethod
    def tearDownClass(cls):
        cls.relay.close()
        cls.wrong_name.close()
        super().tearDownClass()

    def use(self, relay, http_settings):
        """Point the ringring channel at `relay` over https with these
        `http` settings, reload, and wait for the new generation."""
        s = self.stack
        s.write_conf()
        with open(s.conf) as f:
            text = f.read()
        head, tail = text.split('name = "ringring";', 1)
        tail = re.sub(r'base_url = "http://127\.0\.0\.1:\d+/v1";',
                      'base_url = "https://127.0.0.1:%d/v1";' % relay.port, tail, count=1)
        # Loading the system's CA bundle takes over a second with smisd
        # under valgrind: the timeouts leave room for it.
        tail = tail.replace(UPSTREAM_HTTP,
                            "http = { timeout_ms = 10000; connect_timeout_ms = 8000; %s };" % http_settings, 1)
        with open(s.conf, "w") as f:
            f.write(head + 'name = "ringring";' + tail)
        s.reload_and_wait()

    def sms(self):
        r = self.stack.send(message(CITIZENS["no_app"], "sms_only"))
        self.assertEqual(r.status, 201, r.raw)
        return r.json

    def received(self):
        return len(self.stack.sim("ringring", "GET", "/_sim/requests").json)

    def test_untrusted_certificate_is_refused(self):
        self.stack.expect_log(r"upstream send failed")
        self.use(self.relay, "")
        refused = self.relay.refused
        answer = self.sms()
        self.assertEqual((answer["status"], answer["attempts"][0]["error"]), ("failed", "upstream_unreachable"),
                         answer)
        self.assertEqual(self.received(), 0)
        # smisd answers as soon as its side of the handshake fails; the
        # relay's thread counts the break-off when its side sees it.
        deadline = time.monotonic() + 5
        while self.relay.refused == refused and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertGreater(self.relay.refused, refused)

    def test_trusted_through_ca_file(self):
        self.use(self.relay, 'ca_file = "%s";' % self.ca)
        handshakes = self.relay.handshakes
        for _ in range(3):
            answer = self.sms()
            self.assertEqual((answer["status"], answer["channel"]), ("sent", "ringring"), answer)
        self.assertEqual(self.received(), 3)
        # Over TLS, and over one kept-alive connection per loop at most.
        self.assertGreaterEqual(self.relay.handshakes - handshakes, 1)
        self.assertLessEqual(self.relay.handshakes - handshakes, 2)

    def test_certificate_for_another_name_is_refused(self):
        self.stack.expect_log(r"upstream send failed")
        self.use(self.wrong_name, 'ca_file = "%s";' % self.other_ca)
        answer = self.sms()
        self.assertEqual((answer["status"], answer["attempts"][0]["error"]), ("failed", "upstream_unreachable"),
                         answer)
        self.assertEqual(self.received(), 0)

    def test_verification_off(self):
        self.use(self.wrong_name, "verify_tls = false;")
        answer = self.sms()
        self.assertEqual(answer["status"], "sent", answer)
        self.assertEqual(self.received(), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
