"""The Python client against the real brokerd.

`broker/tests/e2e_python.rs` starts the brokers (with a fake authorization
server) and passes their sockets:

- OAUTH_BROKER_TEST_SOCKET: logged in;
- OAUTH_BROKER_TEST_LOGGED_OUT_SOCKET: no login;
- OAUTH_BROKER_TEST_REVOKED_SOCKET: logged in, but the server has revoked the
  refresh token's family (the next refresh ends in relogin_required).

Run by hand without them, these tests are skipped; the Rust test fails if any
is skipped.
"""

import http.server
import os
import shutil
import socket
import sys
import tempfile
import threading
import unittest
import urllib.error
import urllib.request
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import oauth_broker_client as obc  # noqa: E402

LOGGED_IN = os.environ.get("OAUTH_BROKER_TEST_SOCKET")
LOGGED_OUT = os.environ.get("OAUTH_BROKER_TEST_LOGGED_OUT_SOCKET")
REVOKED = os.environ.get("OAUTH_BROKER_TEST_REVOKED_SOCKET")
WHY = "run through `cargo test --test e2e_python`, which starts the brokers"


@unittest.skipUnless(LOGGED_IN, WHY)
class LoggedInTest(unittest.TestCase):
    def test_token_status_and_welcome(self):
        with obc.Client(LOGGED_IN, client_name="py-test") as client:
            self.assertEqual(client.welcome["protocol"], obc.PROTOCOL_VERSION)
            self.assertEqual(client.welcome["account"], "default")
            token = client.token(min_valid=30)
            self.assertTrue(token.access_token)
            self.assertEqual(token.token_type, "Bearer")
            self.assertEqual(token.token_id, obc.token_fingerprint(token.access_token))
            self.assertGreater(token.remaining(), 30)
            self.assertFalse(token.expired)
            self.assertNotIn(token.access_token, repr(token))
            status = client.status()
            self.assertEqual(status["state"], "valid")
            self.assertEqual(status["account"], "default")
            self.assertEqual(status["token_id"], token.token_id)
            self.assertFalse(status["relogin_required"])
            self.assertNotIn("type", status)
            # The connection is reused for many requests.
            self.assertEqual(client.token(), token)

    def test_unauthorized_refreshes_once_and_stale_reports_get_the_new_token(self):
        with obc.Client(LOGGED_IN) as client:
            old = client.token()
            new = client.unauthorized(old)
            self.assertNotEqual(new, old)
            self.assertNotEqual(new.access_token, old.access_token)
            # A second report of the old token (another agent) does not refresh
            # again: it gets the token that replaced it. The raw string works too.
            self.assertEqual(client.unauthorized(old.access_token), new)
            self.assertEqual(client.token(), new)
            self.assertEqual(client.status()["token_id"], new.token_id)

    def test_socket_from_the_environment(self):
        with mock.patch.dict(os.environ, {"OAUTH_BROKER_SOCKET": LOGGED_IN}):
            with obc.Client() as client:
                self.assertEqual(client.socket_path, LOGGED_IN)
                self.assertTrue(client.token().access_token)

    def test_context_manager_closes_and_a_closed_client_reconnects(self):
        client = obc.Client(LOGGED_IN)
        with client:
            client.status()
        self.assertIn("connected=False", repr(client))
        self.assertEqual(client.status()["state"], "valid")
        client.close()

    def test_other_protocol_versions_are_refused_with_a_typed_error(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with sock:
            sock.settimeout(10)
            sock.connect(LOGGED_IN)
            sock.sendall(obc.encode_frame({"protocol": 999, "client": "py-test"}))
            err = obc.error_from_frame(obc.read_frame(sock))
        self.assertIsInstance(err, obc.UnsupportedProtocolError)
        self.assertIn("999", err.message)
        self.assertTrue(err.hint)

    def test_malformed_requests_get_bad_request_and_the_connection_stays(self):
        with obc.Client(LOGGED_IN) as client:
            with self.assertRaises(obc.BadRequestError):
                client._request({"type": "no_such_request"}, "token")
            self.assertEqual(client.status()["state"], "valid")


@unittest.skipUnless(LOGGED_IN, WHY)
class ReadmeExampleTest(unittest.TestCase):
    """The README's agent example, against an API that rejects the first token."""

    def test_401_then_unauthorized_then_success(self):
        rejected = set()

        class Api(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                auth = self.headers.get("Authorization", "")
                if not rejected:
                    rejected.add(auth)  # the first token "was revoked"
                ok = auth.startswith("Bearer ") and auth not in rejected
                self.send_response(200 if ok else 401)
                self.end_headers()
                self.wfile.write(b"hello" if ok else b"")

            def log_message(self, *args):
                pass

        server = http.server.HTTPServer(("127.0.0.1", 0), Api)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = "http://127.0.0.1:%d/v1/me" % server.server_address[1]
        try:
            # --- as in the README ---
            def get(url, token):
                req = urllib.request.Request(url, headers={"Authorization": token.bearer_header()})
                return urllib.request.urlopen(req).read()

            with obc.Client(LOGGED_IN, client_name="my-agent") as broker:
                token = broker.token(min_valid=60)
                try:
                    body = get(url, token)
                except urllib.error.HTTPError as e:
                    if e.code != 401:
                        raise
                    body = get(url, broker.unauthorized(token))
            # ---
            self.assertEqual(body, b"hello")
            self.assertEqual(len(rejected), 1)
        finally:
            server.shutdown()
            server.server_close()


@unittest.skipUnless(LOGGED_OUT, WHY)
class LoggedOutTest(unittest.TestCase):
    def test_not_logged_in_is_typed_and_names_the_fix(self):
        with obc.Client(LOGGED_OUT) as client:
            with self.assertRaises(obc.NotLoggedInError) as caught:
                client.token()
            err = caught.exception
            self.assertTrue(err.needs_login)
            self.assertIsInstance(err, obc.NeedsLoginError)
            self.assertEqual(err.code, "not_logged_in")
            self.assertIn("brokerctl", err.hint)
            self.assertTrue(str(err).startswith("not_logged_in: "))
            self.assertEqual(client.status()["state"], "logged_out")


@unittest.skipUnless(REVOKED, WHY)
class RevokedTest(unittest.TestCase):
    def test_relogin_required_carries_the_reason(self):
        with obc.Client(REVOKED) as client:
            token = client.token()  # still cached and valid
            with self.assertRaises(obc.ReloginRequiredError) as caught:
                client.unauthorized(token)
            err = caught.exception
            self.assertTrue(err.needs_login)
            self.assertTrue(err.reason)
            self.assertIn("brokerctl relogin", err.hint)
            self.assertNotIn(token.access_token, str(err))
            with self.assertRaises(obc.ReloginRequiredError):
                client.token()
            self.assertTrue(client.status()["relogin_required"])


#: The uid (and gid) of `nobody`, the other user of the impostor test.
NOBODY = 65534



def _start_impostor(path):
    """Forks a child that, as `nobody`, listens on `path` (never accepting:
    the kernel knows the listener's uid anyway) until the returned pipe is
    closed. Forked rather than executed: `nobody` may not be able to run this
    Python (e.g. one installed under /root). Returns (pid, pipe to close)."""
    ready_r, ready_w = os.pipe()
    stop_r, stop_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the test runner
        code = 1
        try:
            os.close(ready_r)
            os.close(stop_w)
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind(path)
            server.listen(8)
            os.write(ready_w, b"listening")
            os.read(stop_r, 1)
            code = 0
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(stop_r)
    try:
        ready = os.read(ready_r, 9)
    finally:
        os.close(ready_r)
    if ready != b"listening":
        os.close(stop_w)
        os.waitpid(pid, 0)
        raise AssertionError("the impostor did not start listening")
    return pid, stop_w


@unittest.skipUnless(LOGGED_IN, WHY)
class ForeignSocketTest(unittest.TestCase):
    """A socket served by another user is refused before a byte is sent
    (like client/tests/peer_check.rs for the Rust client)."""

    def test_a_socket_served_by_another_user_is_refused(self):
        if os.getuid() == 0:
            self._refuse_an_impostor_running_as_nobody()
        else:
            self._refuse_brokerd_when_it_looks_foreign()

    def _refuse_an_impostor_running_as_nobody(self):
        # The impostor listens under /tmp, where another user could
        # pre-create the fallback socket directory.
        d = tempfile.mkdtemp(prefix="oauth-broker-peer-", dir="/tmp")
        os.chmod(d, 0o777)
        path = os.path.join(d, "impostor.sock")
        pid, stop = _start_impostor(path)
        try:
            with self.assertRaises(obc.UntrustedPeerError) as caught:
                obc.Client(path, connect_timeout=5).connect()
            err = caught.exception
            self.assertEqual((err.uid, err.path), (NOBODY, path))
            self.assertTrue(
                str(err).startswith(
                    "the socket at {} is served by uid {}, not by this user or root".format(path, NOBODY)
                ),
                str(err),
            )
            self.assertIn("OAUTH_BROKER_SOCKET", err.hint)
        finally:
            os.close(stop)
            _, status = os.waitpid(pid, 0)
            shutil.rmtree(d, ignore_errors=True)
        self.assertEqual(status, 0, "the impostor failed")

    def _refuse_brokerd_when_it_looks_foreign(self):
        # Not root: nobody else's process can be started, so this client
        # pretends to be another (non-root) user; the real brokerd then
        # serves the socket under a uid that is not "ours".
        me = os.getuid()
        with mock.patch("os.getuid", return_value=me + 1):
            with self.assertRaises(obc.UntrustedPeerError) as caught:
                obc.Client(LOGGED_IN).connect()
        self.assertEqual(caught.exception.uid, me)

    def test_the_real_brokerd_is_served_by_us(self):
        with obc.Client(LOGGED_IN) as client:
            self.assertEqual(obc.peer_uid(client._sock), os.getuid())


class UnreachableTest(unittest.TestCase):
    def test_no_broker_is_a_typed_error_with_a_hint(self):
        client = obc.Client("/nonexistent/oauth-broker/x.sock")
        with self.assertRaises(obc.BrokerUnreachableError) as caught:
            client.token()
        self.assertIn("/nonexistent/oauth-broker/x.sock", str(caught.exception))
        self.assertIn("systemctl --user start oauth-broker", caught.exception.hint)
        self.assertTrue(caught.exception.retryable)


if __name__ == "__main__":
    unittest.main()
