"""Unit tests of the Python client that need no broker: framing, socket
discovery, error mapping, secrecy of tokens, and the one-retry rule (against a
scripted socket server in a thread)."""

import os
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import oauth_broker_client as obc  # noqa: E402


class FramingTest(unittest.TestCase):
    def test_frame_is_big_endian_length_and_compact_json(self):
        frame = obc.encode_frame({"type": "status"})
        self.assertEqual(frame, struct.pack(">I", 17) + b'{"type":"status"}')

    def test_oversized_frames_are_refused_both_ways(self):
        with self.assertRaises(obc.ProtocolError):
            obc.encode_frame({"x": "a" * obc.MAX_FRAME_LEN})
        a, b = socket.socketpair()
        with a, b:
            a.sendall(struct.pack(">I", obc.MAX_FRAME_LEN + 1))
            with self.assertRaises(obc.ProtocolError) as caught:
                obc.read_frame(b)
            self.assertIn("64 KiB", str(caught.exception))

    def test_malformed_json_is_a_protocol_error(self):
        a, b = socket.socketpair()
        with a, b:
            a.sendall(struct.pack(">I", 3) + b"{x}")
            with self.assertRaises(obc.ProtocolError):
                obc.read_frame(b)


class DiscoveryTest(unittest.TestCase):
    def test_socket_env_wins(self):
        env = {"OAUTH_BROKER_SOCKET": "/env.sock", "OAUTH_BROKER_ACCOUNT": "w", "XDG_RUNTIME_DIR": "/x"}
        self.assertEqual(obc.default_socket_path(None, env), "/env.sock")
        self.assertEqual(obc.default_socket_path("other", env), "/env.sock")

    def test_account_precedence_and_runtime_dir(self):
        env = {"OAUTH_BROKER_ACCOUNT": "work", "XDG_RUNTIME_DIR": "/xdg"}
        self.assertEqual(obc.default_socket_path("me", env), "/xdg/oauth-broker/me.sock")
        self.assertEqual(obc.default_socket_path(None, env), "/xdg/oauth-broker/work.sock")
        self.assertEqual(
            obc.default_socket_path(None, {"XDG_RUNTIME_DIR": "/xdg"}), "/xdg/oauth-broker/default.sock"
        )

    def test_empty_means_unset_and_relative_runtime_dir_is_ignored(self):
        env = {"OAUTH_BROKER_SOCKET": "", "OAUTH_BROKER_ACCOUNT": "", "XDG_RUNTIME_DIR": "rel"}
        self.assertEqual(
            obc.default_socket_path(None, env, uid=1234, isdir=lambda p: p == "/run/user/1234"),
            "/run/user/1234/oauth-broker/default.sock",
        )

    def test_without_run_user_the_temp_dir_fallback_like_the_rust_client(self):
        # client/src/discovery.rs: /run/user/<uid> only if it exists, else
        # $TMPDIR/oauth-broker-<uid>, with /tmp when TMPDIR is unset.
        missing = lambda p: False  # noqa: E731
        self.assertEqual(
            obc.default_socket_path(None, {}, uid=1234, isdir=missing),
            "/tmp/oauth-broker-1234/oauth-broker/default.sock",
        )
        self.assertEqual(
            obc.default_socket_path("w", {"TMPDIR": "/var/tmp/me", "XDG_RUNTIME_DIR": "rel"}, uid=7, isdir=missing),
            "/var/tmp/me/oauth-broker-7/oauth-broker/w.sock",
        )
        checked = []
        obc.default_socket_path(None, {}, uid=42, isdir=lambda p: checked.append(p) or True)
        self.assertEqual(checked, ["/run/user/42"])
        # An absolute XDG_RUNTIME_DIR needs no fallback at all.
        self.assertEqual(
            obc.default_socket_path(None, {"XDG_RUNTIME_DIR": "/xdg"}, uid=1, isdir=lambda p: self.fail(p)),
            "/xdg/oauth-broker/default.sock",
        )

    def test_the_process_uid_is_the_default(self):
        path = obc.default_socket_path(None, {}, isdir=lambda p: False)
        self.assertIn("/oauth-broker-{}/".format(os.getuid()), path)


class AccountNameTest(unittest.TestCase):
    """The broker's rule (client/src/account.rs), case for case."""

    def test_safe_names_pass(self):
        for good in ["default", "work", "a", "Work-2_x.y", "a..b", "x" * 64]:
            obc.validate_account_name(good)
            self.assertTrue(obc.default_socket_path(good, {"XDG_RUNTIME_DIR": "/x"}).endswith(good + ".sock"))

    def test_names_the_broker_refuses_are_refused(self):
        for bad in ["", "../x", "a/b", ".hidden", ".", "..", "a\0b", "a\nb", "a b", "\u00e4", "a:b", "a*",
                    "~user", "x" * 65]:
            with self.assertRaises(obc.ConfigError) as caught:
                obc.default_socket_path(bad, {"XDG_RUNTIME_DIR": "/x"})
            self.assertTrue(str(caught.exception).startswith("invalid account name"), bad)
            self.assertNotIn("\n", str(caught.exception))
        with self.assertRaises(obc.ConfigError):
            obc.default_socket_path(None, {"OAUTH_BROKER_ACCOUNT": "../../etc", "XDG_RUNTIME_DIR": "/x"})

    def test_a_client_with_a_bad_account_fails_before_connecting(self):
        client = obc.Client(account="../escape")
        with self.assertRaises(obc.ConfigError):
            client.connect()


class PeerTest(unittest.TestCase):
    def test_only_the_same_user_or_root_is_trusted(self):
        obc.check_peer("/s.sock", 1000, my_uid=1000)
        obc.check_peer("/s.sock", 0, my_uid=1000)
        for peer, me in [(1001, 1000), (1000, 0), (65534, 1000)]:
            with self.assertRaises(obc.UntrustedPeerError) as caught:
                obc.check_peer("/tmp/oauth-broker-1000/oauth-broker/default.sock", peer, my_uid=me)
            err = caught.exception
            self.assertEqual(err.uid, peer)
            self.assertIsInstance(err, PermissionError)
            self.assertFalse(err.retryable)
            self.assertIsNone(err.code)
            text = str(err)
            self.assertTrue(
                text.startswith(
                    "the socket at /tmp/oauth-broker-1000/oauth-broker/default.sock is served by uid {}, "
                    "not by this user or root — refusing to talk to it".format(peer)
                ),
                text,
            )
            self.assertIn("another user", text)
            self.assertNotIn("\n", text)

    def test_a_socket_of_our_own_is_served_by_us(self):
        d = tempfile.mkdtemp()
        try:
            path = os.path.join(d, "s.sock")
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind(path)
            server.listen(1)
            with server, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(path)
                self.assertEqual(obc.peer_uid(sock), os.getuid())
        finally:
            shutil.rmtree(d, ignore_errors=True)


class ErrorsTest(unittest.TestCase):
    def test_every_code_has_its_class(self):
        expected = {
            "not_logged_in": obc.NotLoggedInError,
            "relogin_required": obc.ReloginRequiredError,
            "upstream_unavailable": obc.UpstreamUnavailableError,
            "permission_denied": obc.PermissionDeniedError,
            "bad_request": obc.BadRequestError,
            "unsupported_protocol": obc.UnsupportedProtocolError,
            "busy": obc.BusyError,
            "internal": obc.InternalBrokerError,
        }
        for code, cls in expected.items():
            err = obc.error_from_frame({"type": "error", "code": code, "message": "m"})
            self.assertIs(type(err), cls)
            self.assertEqual(err.code, code)
        self.assertTrue(obc.error_from_frame({"code": "not_logged_in", "message": "m"}).needs_login)
        self.assertFalse(obc.error_from_frame({"code": "busy", "message": "m"}).needs_login)

    def test_fields_and_text(self):
        err = obc.error_from_frame(
            {
                "code": "upstream_unavailable",
                "message": "token endpoint failing",
                "hint": "retry later",
                "retry_after_secs": 7,
            }
        )
        self.assertEqual(err.retry_after, 7)
        self.assertTrue(err.retryable)
        self.assertEqual(str(err), "upstream_unavailable: token endpoint failing (retry after 7s); retry later")
        err = obc.error_from_frame({"code": "relogin_required", "message": "dead", "reason": "refresh_token_reused"})
        self.assertEqual(err.reason, "refresh_token_reused")
        self.assertIn("(reason: refresh_token_reused)", str(err))

    def test_unknown_codes_keep_the_code(self):
        err = obc.error_from_frame({"code": "from_the_future", "message": "m"})
        self.assertIs(type(err), obc.BrokerError)
        self.assertEqual(err.code, "from_the_future")


class TokenTest(unittest.TestCase):
    def test_repr_and_str_hide_the_secret(self):
        token = obc.Token.from_frame(
            {"type": "token", "access_token": "s3cr3t-value", "expires_at": 2000000000, "token_id": "abc"}
        )
        self.assertEqual(token.access_token, "s3cr3t-value")
        for text in (repr(token), str(token), "{}".format(token), repr([token])):
            self.assertNotIn("s3cr3t", text)
        self.assertFalse(hasattr(token, "__dict__"))
        self.assertEqual(token.bearer_header(), "Bearer s3cr3t-value")

    def test_fingerprint_matches_the_brokers(self):
        # proto::token_fingerprint: first 12 hex digits of SHA-256.
        self.assertEqual(obc.token_fingerprint("abc"), "ba7816bf8f01")
        self.assertEqual(obc.Token("abc").token_id, "ba7816bf8f01")

    def test_a_token_response_without_token_is_refused(self):
        with self.assertRaises(obc.ProtocolError):
            obc.Token.from_frame({"type": "token", "expires_at": 1})


class ScriptedBroker:
    """A socket server that speaks just enough protocol: each connection gets
    a welcome and then answers `answers_per_connection` requests before it
    closes. Records every request."""

    def __init__(self, answers_per_connection, busy_first=0, retry_after=None):
        self.busy_first = busy_first
        self.retry_after = retry_after
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "s.sock")
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(4)
        self.answers = answers_per_connection
        self.requests = []
        self.connections = 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                hello = obc.read_frame(conn)
                assert hello["protocol"] == 1
                if self.connections <= self.busy_first:
                    busy = {"type": "error", "code": "busy", "message": "at the connection limit"}
                    if self.retry_after is not None:
                        busy["retry_after_secs"] = self.retry_after
                    conn.sendall(obc.encode_frame(busy))
                    continue
                conn.sendall(obc.encode_frame({"type": "welcome", "protocol": 1, "broker_version": "x", "account": "a"}))
                for _ in range(self.answers):
                    self.requests.append(obc.read_frame(conn))
                    conn.sendall(
                        obc.encode_frame(
                            {"type": "token", "access_token": "t%d" % len(self.requests), "expires_at": 1, "token_id": "i"}
                        )
                    )

    def close(self):
        self.server.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class RetryTest(unittest.TestCase):
    def test_a_reused_connection_that_broke_is_retried_once(self):
        broker = ScriptedBroker(answers_per_connection=1)
        try:
            with obc.Client(broker.path) as client:
                self.assertEqual(client.welcome["account"], "a")
                self.assertEqual(client.token().access_token, "t1")
                # The broker closed that connection: the next request reconnects.
                self.assertEqual(client.token(min_valid=5).access_token, "t2")
                self.assertEqual(broker.connections, 2)
                self.assertEqual(broker.requests[1], {"type": "token", "min_valid_secs": 5})
        finally:
            broker.close()


class BusyTest(unittest.TestCase):
    """Like the Rust client: `busy` is waited out within a budget."""

    def test_a_busy_broker_is_waited_out(self):
        broker = ScriptedBroker(answers_per_connection=5, busy_first=2)
        try:
            with obc.Client(broker.path) as client:
                self.assertEqual(broker.connections, 3)
                self.assertEqual(client.token().access_token, "t1")
        finally:
            broker.close()

    def test_retry_after_is_honoured_and_the_budget_bounds_the_wait(self):
        broker = ScriptedBroker(answers_per_connection=5, busy_first=100, retry_after=1)
        try:
            client = obc.Client(broker.path, busy_retry_budget=0.5)
            started = time.monotonic()
            with self.assertRaises(obc.BusyError) as caught:
                client.token()
            # A one-second retry_after does not fit a half-second budget.
            self.assertLess(time.monotonic() - started, 0.5)
            self.assertEqual(caught.exception.retry_after, 1)
            self.assertEqual(broker.connections, 1)
        finally:
            broker.close()

    def test_without_retry_after_it_backs_off_within_the_budget(self):
        broker = ScriptedBroker(answers_per_connection=5, busy_first=100)
        try:
            client = obc.Client(broker.path, busy_retry_budget=0.2)
            with self.assertRaises(obc.BusyError):
                client.connect()
            # Waits of 50 and 100 ms fit 0.2 s; 200 ms more would not.
            self.assertEqual(broker.connections, 3)
        finally:
            broker.close()


if __name__ == "__main__":
    unittest.main()
