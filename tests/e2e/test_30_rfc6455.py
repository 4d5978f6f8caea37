"""End-to-end: RFC 6455 conformance of herald's /ws endpoint, with a raw-socket
client that can send any frame (masking, fragmentation, opcodes, RSV bits, lying
lengths), in the spirit of the Autobahn testsuite categories: 1 framing, 2 pings,
3 reserved bits, 4 opcodes, 5 fragmentation, 6 UTF-8, 7 close, 9 limits.

Every error case reads the server's close frame and asserts its code, then checks
that a new connection is still served."""
import json
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, ServerCase,  # noqa: E402
                     close_payload, encode_frame, run, uniq, ws_alive)

MAX_MSG = 65536
PING_HEAD = b'{"type":"ping","id":"'
PING_TAIL = b'"}'


def ping_json(size):
    """A native ping message of exactly `size` bytes (size >= 24)."""
    pad = size - len(PING_HEAD) - len(PING_TAIL)
    assert pad >= 1
    return PING_HEAD + b"a" * pad + PING_TAIL


class Rfc6455(ServerCase):
    CONFIG = {"limits": {"max_message_bytes": MAX_MSG, "messages_per_second": 10000}}

    # -- helpers ---------------------------------------------------------------------
    def conn(self):
        return self.ws()

    def expect_pong_json(self, c, id_, timeout=5.0):
        msg, skipped = c.recv_until(lambda m: m.get("type") in ("pong", "error"), timeout)
        self.assertEqual(msg.get("type"), "pong", msg)
        self.assertEqual(msg.get("id"), id_)

    def expect_ws_pong(self, c, payload, timeout=3.0):
        op, got = c.recv_message(timeout, answer_pings=True, skip_pings=False)
        while op == OP_PING:
            op, got = c.recv_message(timeout, answer_pings=True, skip_pings=False)
        self.assertEqual(op, OP_PONG, "expected a pong frame, got opcode %d %r" % (op, got[:100]))
        self.assertEqual(got, payload)

    def fails_with(self, code, frames, codes=None, settle=None):
        """Sends the raw bytes `frames` on a fresh connection and expects a close with
        `code` (or one of `codes`), then checks the server still serves."""
        c = self.conn()
        try:
            c.send_raw(frames)
        except OSError:
            pass   # the server may close while we still write
        if settle:
            time.sleep(settle)
        got, _reason = c.expect_close(None, timeout=5.0)
        if codes:
            self.assertIn(got, codes)
        else:
            self.assertEqual(got, code)
        c.close()
        ws_alive(self.server)
        return got

    def text(self, payload, **kw):
        return encode_frame(OP_TEXT, payload, **kw)

    # -- 1. framing -----------------------------------------------------------------
    def test_text_sizes_one_write(self):
        c = self.conn()
        for size in (125, 126, 127, 65535, MAX_MSG):
            c.send_frame(OP_TEXT, ping_json(size))
            self.expect_pong_json(c, "a" * (size - len(PING_HEAD) - len(PING_TAIL)))

    def test_text_split_byte_by_byte(self):
        c = self.conn()
        for size in (125, 126, 300):
            c.send_frame(OP_TEXT, ping_json(size), bytewise=True)
            self.expect_pong_json(c, "a" * (size - len(PING_HEAD) - len(PING_TAIL)))

    def test_large_text_split_into_small_writes(self):
        c = self.conn()
        for size in (65535, MAX_MSG):
            c.send_raw(encode_frame(OP_TEXT, ping_json(size)), chunk=997)
            self.expect_pong_json(c, "a" * (size - len(PING_HEAD) - len(PING_TAIL)))

    def test_empty_text_frame_is_bad_json_not_protocol_error(self):
        c = self.conn()
        c.send_frame(OP_TEXT, b"")
        msg = c.recv_json()
        self.assertEqual((msg["type"], msg["data"]["code"]), ("error", "bad_request"))
        c.send_frame(OP_TEXT, b'{"type":"ping","id":1}')
        self.expect_pong_json(c, 1)

    def test_several_frames_in_one_write(self):
        c = self.conn()
        c.send_raw(b"".join(encode_frame(OP_TEXT, b'{"type":"ping","id":%d}' % i) for i in range(5)))
        for i in range(5):
            self.expect_pong_json(c, i)

    def test_16bit_length_for_small_payload_accepted(self):
        # RFC 6455 asks for the shortest length form; herald accepts a longer one
        c = self.conn()
        p = b'{"type":"ping","id":2}'
        key = os.urandom(4)
        from harness import mask_bytes
        c.send_raw(struct.pack("!BBH", 0x81, 0x80 | 126, len(p)) + key + mask_bytes(p, key))
        self.expect_pong_json(c, 2)

    def test_frames_in_the_same_write_as_the_handshake(self):
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        req = ("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode()
        req += encode_frame(OP_TEXT, b'{"type":"ping","id":"early"}') + encode_frame(OP_PING, b"early")
        c = self.raw(request=req, key=key)
        self.assertEqual(c.status, 101)
        msgs = []
        pong_seen = False
        for _ in range(3):
            op, payload = c.recv_message(3, skip_pings=False)
            if op == OP_PONG:
                self.assertEqual(payload, b"early")
                pong_seen = True
            else:
                msgs.append(json.loads(payload))
        self.assertTrue(pong_seen)
        self.assertEqual([m["type"] for m in msgs], ["connected", "pong"])
        self.assertEqual(msgs[1]["id"], "early")

    # -- 2. pings -------------------------------------------------------------------
    def test_ping_payload_echoed(self):
        c = self.conn()
        for payload in (b"", b"hello", bytes(range(125)), b"\xff\xfe binary is fine"):
            c.send_frame(OP_PING, payload)
            self.expect_ws_pong(c, payload)

    def test_ping_byte_by_byte(self):
        c = self.conn()
        c.send_frame(OP_PING, b"slow ping", bytewise=True)
        self.expect_ws_pong(c, b"slow ping")

    def test_ping_126_bytes_is_1002(self):
        self.fails_with(1002, encode_frame(OP_PING, b"x" * 126))

    def test_fragmented_ping_is_1002(self):
        self.fails_with(1002, encode_frame(OP_PING, b"abc", fin=False))

    def test_unsolicited_pong_ignored(self):
        c = self.conn()
        c.send_frame(OP_PONG, b"unasked")
        c.send_frame(OP_PONG, b"")
        c.send_frame(OP_TEXT, b'{"type":"ping","id":"after-pong"}')
        self.expect_pong_json(c, "after-pong")

    def test_ten_pings_answered_in_order(self):
        c = self.conn()
        c.send_raw(b"".join(encode_frame(OP_PING, b"p%d" % i) for i in range(10)))
        for i in range(10):
            self.expect_ws_pong(c, b"p%d" % i)

    # -- 3. reserved bits -----------------------------------------------------------
    def test_rsv_bits_are_1002(self):
        for rsv in (4, 2, 1, 7):
            self.fails_with(1002, encode_frame(OP_TEXT, b'{"type":"ping"}', rsv=rsv))
        self.fails_with(1002, encode_frame(OP_PING, b"x", rsv=4))
        self.fails_with(1002, encode_frame(OP_CLOSE, close_payload(1000), rsv=2))

    def test_rsv_after_valid_message_is_1002(self):
        c = self.conn()
        c.send_frame(OP_TEXT, b'{"type":"ping","id":"ok"}')
        c.send_frame(OP_TEXT, b'{"type":"ping","id":"bad"}', rsv=1)
        self.expect_pong_json(c, "ok")
        c.expect_close(1002)
        ws_alive(self.server)

    # -- 4. opcodes -----------------------------------------------------------------
    def test_reserved_opcodes_are_1002(self):
        for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF):
            self.fails_with(1002, encode_frame(op, b"payload"))

    def test_reserved_opcode_inside_fragmented_message_is_1002(self):
        self.fails_with(1002, self.text(b'{"type":', fin=False) + encode_frame(0xB, b"") +
                        encode_frame(OP_CONT, b'"ping"}'))

    # -- 5. fragmentation -----------------------------------------------------------
    def subscribe_in_fragments(self, n, extra_between=None, empty=False):
        ch = uniq("frag")
        msg = json.dumps({"type": "subscribe", "id": "f%d" % n, "channels": [ch]}).encode()
        cuts = [len(msg) * k // n for k in range(n + 1)]   # exactly n non-empty parts
        parts = [msg[cuts[k]:cuts[k + 1]] for k in range(n)]
        self.assertEqual(len(parts), n)
        c = self.conn()
        frames = b""
        for i, p in enumerate(parts):
            op = OP_TEXT if i == 0 else OP_CONT
            frames += encode_frame(op, p, fin=(i == n - 1))
            if empty and i < n - 1:
                frames += encode_frame(OP_CONT, b"", fin=False)
            if extra_between is not None and i == 0:
                frames += extra_between
        return c, ch, frames

    def test_text_in_2_fragments(self):
        c, ch, frames = self.subscribe_in_fragments(2)
        c.send_raw(frames)
        msg = c.recv_json()
        self.assertEqual((msg["type"], msg["id"], msg["data"]["channels"]), ("subscribed", "f2", [ch]))

    def test_text_in_10_fragments_byte_by_byte(self):
        c, ch, frames = self.subscribe_in_fragments(10)
        c.send_raw(frames, bytewise=True)
        msg = c.recv_json()
        self.assertEqual((msg["type"], msg["id"], msg["data"]["channels"]), ("subscribed", "f10", [ch]))
        self.server.publish_ok(ch, "after_frag", {"ok": True})
        ev, _ = c.recv_until(lambda m: m.get("type") == "after_frag")
        self.assertEqual(ev["channel"], ch)

    def test_empty_fragments(self):
        c, ch, frames = self.subscribe_in_fragments(3, empty=True)
        c.send_raw(frames)
        self.assertEqual(c.recv_json()["type"], "subscribed")

    def test_ping_between_fragments(self):
        c, ch, frames = self.subscribe_in_fragments(2, extra_between=encode_frame(OP_PING, b"mid"))
        c.send_raw(frames)
        op, payload = c.recv_message(3, answer_pings=False, skip_pings=False)
        self.assertEqual((op, payload), (OP_PONG, b"mid"))
        msg = c.recv_json()
        self.assertEqual((msg["type"], msg["data"]["channels"]), ("subscribed", [ch]))

    def test_continuation_without_start_is_1002(self):
        self.fails_with(1002, encode_frame(OP_CONT, b'{"type":"ping"}', fin=True))
        self.fails_with(1002, encode_frame(OP_CONT, b'{"type":', fin=False))

    def test_continuation_after_complete_message_is_1002(self):
        c = self.conn()
        c.send_raw(self.text(b'{"type":"ping","id":"x"}') + encode_frame(OP_CONT, b"more"))
        self.expect_pong_json(c, "x")
        c.expect_close(1002)
        ws_alive(self.server)

    def test_new_text_frame_inside_fragmented_message_is_1002(self):
        self.fails_with(1002, self.text(b'{"type":', fin=False) + self.text(b'{"type":"ping"}'))
        self.fails_with(1002, self.text(b'{"type":', fin=False) + self.text(b'"ping"', fin=False))

    def test_fragmented_binary_is_1003(self):
        self.fails_with(1003, encode_frame(OP_BINARY, b"\x00\x01", fin=False) + encode_frame(OP_CONT, b"\x02"))

    def test_fragmented_close_is_1002(self):
        self.fails_with(1002, encode_frame(OP_CLOSE, close_payload(1000), fin=False))

    # -- 6. UTF-8 ---------------------------------------------------------------------
    INVALID = [b"\xff", b"\xfe", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xed\xbf\xbf",
               b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\x80", b"\xc3\x28", b"\xe2\x28\xa1"]

    def test_invalid_utf8_single_frame_is_1007(self):
        for seq in self.INVALID:
            self.fails_with(1007, self.text(PING_HEAD + seq + PING_TAIL))

    def test_truncated_utf8_at_end_is_1007(self):
        self.fails_with(1007, self.text(b'{"type":"ping","id":"a"}\xe2\x82'))
        self.fails_with(1007, self.text(b'{"type":"ping","id":"a"}\xf0\x9f\x98'))

    def test_invalid_utf8_across_fragments_is_1007(self):
        self.fails_with(1007, self.text(PING_HEAD + b"\xe2\x82", fin=False) + encode_frame(OP_CONT, b"(" + PING_TAIL))
        self.fails_with(1007, self.text(PING_HEAD + b"\xf0", fin=False) + encode_frame(OP_CONT, b"\x9f", fin=False) +
                        encode_frame(OP_CONT, b"\x98\x28" + PING_TAIL))

    def test_invalid_utf8_fails_fast(self):
        # the message never ends: the error must come from the first fragment
        c = self.conn()
        c.send_frame(OP_TEXT, PING_HEAD + b"ok\xc0\xaf", fin=False)
        c.expect_close(1007, timeout=3.0)
        ws_alive(self.server)

    def test_valid_multibyte_split_across_fragments(self):
        c = self.conn()
        whole = PING_HEAD + "€😀\U0010ffff\uffff".encode() + PING_TAIL
        i = len(PING_HEAD)
        cuts = [0, i + 1, i + 2, i + 4, i + 5, i + 6, i + 10, len(whole)]   # inside € and 😀
        frames = b""
        for k in range(len(cuts) - 1):
            frames += encode_frame(OP_TEXT if k == 0 else OP_CONT, whole[cuts[k]:cuts[k + 1]],
                                   fin=(k == len(cuts) - 2))
        c.send_raw(frames, bytewise=True)
        self.expect_pong_json(c, "€😀\U0010ffff\uffff")

    def test_valid_utf8_single_frame(self):
        c = self.conn()
        s = "κόσμε ü 中文 \U0001F600 \u200b"
        c.send_frame(OP_TEXT, PING_HEAD + s.encode() + PING_TAIL)
        self.expect_pong_json(c, s)

    # -- 7. close -------------------------------------------------------------------
    def close_roundtrip(self, payload, want_codes):
        c = self.conn()
        c.send_frame(OP_CLOSE, payload)
        got, _ = c.expect_close(None, reply=False)
        self.assertIn(got, want_codes, "close payload %r" % payload)
        c.close()
        ws_alive(self.server)

    def test_close_1000_echoed(self):
        self.close_roundtrip(close_payload(1000, "bye"), (1000,))

    def test_close_empty_payload(self):
        self.close_roundtrip(b"", (None, 1000))

    def test_close_valid_codes_echoed(self):
        for code in (1001, 1003, 1007, 1011, 3000, 3999, 4000, 4999):
            self.close_roundtrip(close_payload(code), (code,))

    def test_close_max_reason_echoed(self):
        self.close_roundtrip(close_payload(1000, "r" * 123), (1000,))

    def test_close_payload_1_byte_is_1002(self):
        self.fails_with(1002, encode_frame(OP_CLOSE, b"\x03"))

    def test_close_invalid_codes_are_1002(self):
        for code in (0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999, 5000, 65535):
            self.fails_with(1002, encode_frame(OP_CLOSE, close_payload(code)))

    def test_close_reason_invalid_utf8_is_1007(self):
        self.fails_with(1007, encode_frame(OP_CLOSE, close_payload(1000, b"bad \xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80")))

    def test_close_payload_over_125_is_1002(self):
        self.fails_with(1002, encode_frame(OP_CLOSE, close_payload(1000, "r" * 124)))

    def test_data_after_close_is_ignored(self):
        c = self.conn()
        c.send_raw(encode_frame(OP_CLOSE, close_payload(1000)) + self.text(b'{"type":"ping","id":1}'))
        got, _ = c.expect_close(None, reply=False)
        self.assertEqual(got, 1000)
        ws_alive(self.server)

    def test_close_during_fragmented_message(self):
        c = self.conn()
        c.send_raw(self.text(b'{"type":', fin=False) + encode_frame(OP_CLOSE, close_payload(1000)))
        got, _ = c.expect_close(None, reply=False)
        self.assertEqual(got, 1000)
        ws_alive(self.server)

    # -- masking --------------------------------------------------------------------
    def test_unmasked_client_frame_is_1002(self):
        self.fails_with(1002, encode_frame(OP_TEXT, b'{"type":"ping"}', mask=False))
        self.fails_with(1002, encode_frame(OP_PING, b"x", mask=False))

    def test_zero_mask_key_is_fine(self):
        c = self.conn()
        c.send_frame(OP_TEXT, b'{"type":"ping","id":"zero"}', mask_key=b"\x00\x00\x00\x00")
        self.expect_pong_json(c, "zero")

    # -- 9. limits --------------------------------------------------------------------
    def test_message_over_limit_is_1009(self):
        self.fails_with(1009, encode_frame(OP_TEXT, ping_json(MAX_MSG + 1)))

    def test_fragmented_message_over_limit_is_1009(self):
        body = ping_json(MAX_MSG + 10)
        self.fails_with(1009, encode_frame(OP_TEXT, body[:40000], fin=False) +
                        encode_frame(OP_CONT, body[40000:], fin=True))

    def test_huge_length_header_is_1009_at_once(self):
        c = self.conn()
        t0 = time.monotonic()
        c.send_raw(struct.pack("!BBQ", 0x81, 0x80 | 127, 1 << 62) + os.urandom(4) + b"x" * 100)
        c.expect_close(1009, timeout=3.0)
        self.assertLess(time.monotonic() - t0, 2.0)
        ws_alive(self.server)

    def test_length_with_top_bit_set_is_refused(self):
        self.fails_with(None, struct.pack("!BBQ", 0x81, 0x80 | 127, 1 << 63) + os.urandom(4),
                        codes=(1002, 1009))

    def test_binary_frame_is_1003(self):
        self.fails_with(1003, encode_frame(OP_BINARY, b"\x00\x01\x02"))
        self.fails_with(1003, encode_frame(OP_BINARY, b""))

    # -- server frames: length boundaries ------------------------------------------
    def test_server_frames_around_length_boundaries(self):
        # replies of 125/126/127 bytes (pongs) and events of 65535/65536/65537 bytes reach
        # the client intact, each length in its shortest form (checked by RawWS.recv_frame)
        c = self.conn()
        c.send_json({"type": "ping", "id": ""})
        op, probe = c.recv_message()
        overhead = len(probe)
        seen = set()
        for target in (125, 126, 127):
            for delta in range(-2, 3):
                pad = target - overhead + delta
                c.send_json({"type": "ping", "id": "i" * pad})
                op, payload = c.recv_message()
                self.assertEqual(json.loads(payload)["id"], "i" * pad)
                seen.add(len(payload))
        ch = uniq("bounds")
        c.subscribe(ch)
        self.server.publish_ok(ch, "b", "")
        op, probe = c.recv_message()
        overhead = len(probe)   # envelope size with empty string data, offset 1
        pads = sorted({t - overhead + d for t in (65535, 65536, 65537) for d in range(-3, 4)})
        for pad in pads:
            self.server.publish_ok(ch, "b", "p" * pad)
        for pad in pads:
            op, payload = c.recv_message()
            self.assertEqual(op, OP_TEXT)
            self.assertEqual(json.loads(payload)["data"], "p" * pad)
            seen.add(len(payload))
        for target in (125, 126, 65535, 65536):
            self.assertIn(target, seen, "no frame of exactly %d bytes was produced" % target)

    def test_server_survives_abrupt_disconnects(self):
        for cut in (1, 2, 5, 9):
            c = self.conn()
            c.send_raw(encode_frame(OP_TEXT, ping_json(200))[:cut])
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))   # RST
            c.close()
        ws_alive(self.server)


if __name__ == "__main__":
    run()
