"""GA/T 467 frame codec, base-info decoding, the poller and the keyboard-wedge parser."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from terminal.core.errors import DeviceError
from terminal.hw.cardreader import (
    FIND_CARD,
    HEADER,
    READ_BASE,
    SELECT_CARD,
    CardDataError,
    CardReadFailed,
    Frame,
    FrameError,
    FrameParser,
    IcCardRead,
    IdCardPoller,
    IdCardRead,
    WedgeParser,
    build_base_info_data,
    build_frame,
    build_request,
    build_response,
    classify_card_number,
    decode_base_info,
    decode_base_text,
    encode_base_text,
    id_number_checksum_ok,
)

# The example number from GB 11643 (valid check digit); not a real person.
SAMPLE_ID = "11010519491231002X"
SAMPLE = dict(
    name="张三丰",
    sex_code="1",
    nation_code="01",
    birth_date="19491231",
    address="北京市西城区某某街道１号",
    id_number=SAMPLE_ID,
    issuer="北京市公安局西城分局",
    valid_from="20200101",
    valid_until="长期",
)


def sample_text(**kw: str) -> bytes:
    return encode_base_text(**{**SAMPLE, **kw})


def base_info_frame(text: bytes | None = None) -> bytes:
    return build_response(0x90, build_base_info_data(text or sample_text()))


# ------------------------------------------------------------------ known bytes


def test_request_frames_match_published_bytes() -> None:
    assert bytes.fromhex("AAAAAA96690003200122") == FIND_CARD
    assert bytes.fromhex("AAAAAA96690003200221") == SELECT_CARD
    assert bytes.fromhex("AAAAAA96690003300132") == READ_BASE
    assert build_request(0x12, 0xFF) == bytes.fromhex("AAAAAA9669000312FFEE")


def test_published_responses_parse() -> None:
    find_ok = bytes.fromhex("AAAAAA9669000800009F0000000097")
    select_ok = bytes.fromhex("AAAAAA9669000C00009000000000000000009C")
    p = FrameParser()
    out = p.feed(find_ok + select_ok)
    assert out == [
        Frame(bytes.fromhex("00009F00000000")),
        Frame(bytes.fromhex("0000900000000000000000")),
    ]
    assert out[0].sw3 == 0x9F and out[0].ok  # type: ignore[union-attr]
    assert out[1].sw3 == 0x90 and out[1].data == b"\x00" * 8  # type: ignore[union-attr]
    assert p.buffered == 0


def test_base_info_response_length_is_0x0508() -> None:
    frame = base_info_frame()
    assert frame[5:7] == b"\x05\x08"
    assert len(frame) == 7 + 0x508


# ------------------------------------------------------------------ base info


def test_decode_base_info_round_trip() -> None:
    (frame,) = FrameParser().feed(base_info_frame())
    assert isinstance(frame, Frame)
    info = decode_base_info(frame)
    assert info.name == "张三丰"
    assert info.sex == "male" and info.sex_code == "1"
    assert info.nation_code == "01"
    assert info.birth_date == "19491231"
    assert info.address == "北京市西城区某某街道１号"
    assert info.id_number == SAMPLE_ID and isinstance(info.id_number, str)
    assert info.issuer == "北京市公安局西城分局"
    assert (info.valid_from, info.valid_until) == ("20200101", "长期")
    assert info.card_type == "resident_id"
    assert info.id_checksum_ok


def test_card_info_repr_hides_personal_data() -> None:
    info = decode_base_text(sample_text())
    text = repr(info) + str(info)
    for secret in (SAMPLE_ID, "张三丰", "北京市西城区", "19491231", "西城分局"):
        assert secret not in text
    assert SAMPLE_ID not in info.card_key() and len(info.card_key()) == 64
    assert repr(IcCardRead("12345678", "decimal")).count("12345678") == 0


def test_text_block_is_ucs2le_fixed_width() -> None:
    text = sample_text()
    assert len(text) == 256
    assert text[:6] == "张三丰".encode("utf-16-le")
    assert text[6:30] == " ".encode("utf-16-le") * 12  # name is padded to 15 chars
    assert text[122:158] == SAMPLE_ID.encode("utf-16-le")  # offset 30+2+4+16+70


def test_hmt_residence_permit_type_and_foreign_card_rejected() -> None:
    info = decode_base_text(sample_text(nation_code="", id_number="810000199001010011"))
    assert info.card_type == "resident_id"
    permit = decode_base_text(encode_base_text(**{**SAMPLE, "nation_code": ""}, card_type="J"))
    assert permit.card_type == "hmt_residence_permit"
    with pytest.raises(CardDataError) as ei:
        decode_base_text(encode_base_text(**SAMPLE, card_type="I"))
    assert ei.value.code == "card_unsupported"


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (Frame(b"\x00\x00\x41"), "reading the card failed"),
        (Frame(b"\x00\x00\x90\x01"), "too short"),
        (Frame(b"\x00\x00\x90" + build_base_info_data(sample_text())[:-1]), "do not add up"),
        (Frame(b"\x00\x00\x90" + build_base_info_data(sample_text()[:-2], b"")), "wrong size"),
        (Frame(b"\x00\x00\x90" + build_base_info_data(b"\x00\xd8" * 128, b"")), "UCS-2"),
        (Frame(b"\x00\x00\x90" + build_base_info_data(sample_text(id_number=""), b"")), "no ID"),
    ],
)
def test_decode_base_info_errors(frame: Frame, message: str) -> None:
    with pytest.raises(CardDataError) as ei:
        decode_base_info(frame)
    assert message in str(ei.value)
    assert isinstance(ei.value, DeviceError)


def test_fingerprint_variant_lengths_accepted() -> None:
    text = sample_text()
    data = (256).to_bytes(2, "big") + (1024).to_bytes(2, "big") + (1024).to_bytes(2, "big")
    data += text + b"\x00" * 2048
    assert decode_base_info(Frame(b"\x00\x00\x90" + data)).id_number == SAMPLE_ID


@pytest.mark.parametrize(
    ("number", "ok"),
    [
        (SAMPLE_ID, True),
        ("11010519491231002x", False),
        ("110105194912310021", False),
        ("11010519491231002", False),
        ("", False),
    ],
)
def test_id_number_checksum(number: str, ok: bool) -> None:
    assert id_number_checksum_ok(number) is ok


# ------------------------------------------------------------------ parser


def test_parser_resyncs_after_garbage_and_bad_checksum() -> None:
    good = build_response(0x9F, b"\x00" * 4)
    bad = bytearray(good)
    bad[-1] ^= 0x55
    p = FrameParser()
    out = p.feed(b"\x01\x02\xaa\xaa" + bytes(bad) + good)
    assert out == [FrameError("checksum", 4 + len(bad)), Frame(good[7:-1])]
    assert p.buffered == 0


def test_parser_byte_by_byte_keeps_header_prefix_only() -> None:
    good = base_info_frame()
    p = FrameParser()
    frames = []
    for b in b"\x00\xaa" + good:
        frames += p.feed(bytes([b]))
        assert p.buffered <= p.max_buffer
    assert frames[-1] == Frame(good[7:-1])
    assert frames[:-1] == [FrameError("garbage", 1), FrameError("garbage", 1)]  # 00, lone AA


def test_parser_rejects_huge_and_tiny_lengths_immediately() -> None:
    good = build_response(0x90)
    p = FrameParser(max_length=2400)
    huge = HEADER + b"\xff\xff" + b"\x00" * 10
    tiny = HEADER + b"\x00\x01\x00"
    out = p.feed(huge + tiny + good)
    assert out[-1] == Frame(good[7:-1])
    assert out[0] == FrameError("bad_length", len(huge) + len(tiny))


def test_truncated_frame_waits_then_on_idle_recovers_following_frame() -> None:
    good = build_response(0x9F, b"\x00" * 4)
    fake = HEADER + b"\x01\x00" + b"\x11" * 3  # claims 256 bytes, only 3 arrive
    p = FrameParser()
    assert p.feed(fake + good) == []
    assert p.pending
    out = p.on_idle()
    assert out == [FrameError("truncated", len(fake)), Frame(good[7:-1])]
    assert p.buffered == 0 and not p.pending
    assert p.on_idle() == []


def test_build_frame_limits() -> None:
    with pytest.raises(ValueError):
        build_frame(b"\x00" * 0x10000)
    with pytest.raises(ValueError):
        FrameParser(max_length=2)


# ------------------------------------------------------------------ fuzzing

_valid_frames = st.lists(
    st.binary(min_size=2, max_size=300).map(build_frame), min_size=1, max_size=4
)
_no_header_garbage = st.binary(max_size=80).map(lambda b: b.replace(b"\xaa", b"\x55"))


def _chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for c in [*points, len(data)]:
        out.append(data[prev:c])
        prev = c
    return out


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.binary(max_size=600), max_size=12), max_len=st.integers(3, 3000))
def test_fuzz_random_bytes_never_raise_and_stay_bounded(chunks: list[bytes], max_len: int) -> None:
    p = FrameParser(max_length=max_len)
    for c in chunks:
        for item in p.feed(c):
            assert isinstance(item, Frame | FrameError)
        assert p.buffered <= p.max_buffer
    p.on_idle()
    assert p.buffered == 0


@settings(max_examples=200, deadline=None)
@given(
    frames=_valid_frames,
    garbage=st.lists(_no_header_garbage, min_size=5, max_size=5),
    cuts=st.lists(st.integers(0, 5000), max_size=8),
)
def test_fuzz_frames_behind_garbage_are_all_recovered(
    frames: list[bytes], garbage: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(g + f for g, f in zip(garbage, frames, strict=False))
    p = FrameParser()
    got: list[Frame | FrameError] = []
    for chunk in _chunked(stream, cuts):
        got += p.feed(chunk)
        assert p.buffered <= p.max_buffer
    assert [x for x in got if isinstance(x, Frame)] == [Frame(f[7:-1]) for f in frames]
    assert sum(x.dropped for x in got if isinstance(x, FrameError)) == sum(
        len(g) for g in garbage[: len(frames)]
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    frame=st.binary(min_size=2, max_size=200).map(build_frame),
    pos=st.integers(0, 10_000),
    flip=st.integers(1, 255),
    truncate=st.booleans(),
    follow=st.binary(min_size=2, max_size=50).map(build_frame),
)
def test_fuzz_damaged_frame_then_good_frame(
    frame: bytes, pos: int, flip: int, truncate: bool, follow: bytes
) -> None:
    damaged = bytearray(frame)
    i = pos % len(damaged)
    if truncate:
        del damaged[max(1, i) :]
    else:
        damaged[i] ^= flip
    p = FrameParser()
    # the line goes quiet after the damaged frame (as it does between answers)
    out = p.feed(bytes(damaged)) + p.on_idle() + p.feed(follow)
    assert p.buffered == 0
    frames = [x for x in out if isinstance(x, Frame)]
    assert frames[-1:] == [Frame(follow[7:-1])]
    assert Frame(frame[7:-1]) not in frames[:-1]
    assert any(isinstance(x, FrameError) for x in out)


@settings(max_examples=200, deadline=None)
@given(length=st.integers(0, 0xFFFF), tail=st.binary(max_size=300), repeat=st.integers(1, 30))
def test_fuzz_huge_length_fields(length: int, tail: bytes, repeat: int) -> None:
    p = FrameParser()
    data = (HEADER + length.to_bytes(2, "big") + tail) * repeat
    p.feed(data)
    assert p.buffered <= p.max_buffer
    p.on_idle()
    assert p.buffered == 0


def test_large_adversarial_input_is_bounded_and_fast() -> None:
    p = FrameParser()
    bogus = (HEADER + b"\x00\x05\x01\x02\x03\x04\x00") * 20_000  # bad checksums, 240 kB
    out = p.feed(bogus)
    assert len(out) == 1 and isinstance(out[0], FrameError) and out[0].kind == "checksum"
    assert p.buffered <= p.max_buffer


# ------------------------------------------------------------------ poller


def _answer(data: bytes) -> Frame:
    (f,) = FrameParser().feed(data)
    assert isinstance(f, Frame)
    return f


FIND_OK = _answer(build_response(0x9F, b"\x00" * 4))
NO_CARD = _answer(build_response(0x80, b"\x00" * 4))
SELECT_OK = _answer(build_response(0x90, b"\x00" * 8))
READ_OK = _answer(base_info_frame())


def test_poller_reads_a_card_once_while_it_stays() -> None:
    p = IdCardPoller(poll_interval=0.5)
    p.reset(0.0)
    assert p.tick(0.0) == (FIND_CARD, [])
    assert p.tick(0.1) == (None, [])
    assert p.on_frame(FIND_OK, 0.1) == (SELECT_CARD, [])
    assert p.on_frame(SELECT_OK, 0.2) == (READ_BASE, [])
    send, events = p.on_frame(READ_OK, 0.4)
    assert send is None and len(events) == 1
    assert isinstance(events[0], IdCardRead) and events[0].info.id_number == SAMPLE_ID
    assert p.tick(0.5) == (None, [])  # waits poll_interval
    assert p.tick(0.9) == (FIND_CARD, [])
    # a reader that keeps answering "found" for a card left in place: not reported again
    p.on_frame(FIND_OK, 0.9)
    p.on_frame(SELECT_OK, 0.9)
    assert p.on_frame(READ_OK, 1.0) == (None, [])
    # card taken away, then presented again: reported again
    p.tick(1.5)
    assert p.on_frame(NO_CARD, 1.5) == (None, [])
    p.tick(2.0)
    p.on_frame(FIND_OK, 2.0)
    p.on_frame(SELECT_OK, 2.0)
    assert len(p.on_frame(READ_OK, 2.1)[1]) == 1


def test_poller_timeouts_and_failures() -> None:
    p = IdCardPoller(poll_interval=0.1, response_timeout=0.5, read_timeout=2.0)
    p.reset(0.0)
    p.tick(0.0)
    assert p.tick(0.6) == (None, [])  # find unanswered: silently back to idle
    assert p.unanswered == 1 and p.state == "idle"
    assert p.tick(0.7) == (FIND_CARD, [])
    p.on_frame(FIND_OK, 0.7)
    p.on_frame(SELECT_OK, 0.7)
    _, events = p.tick(2.8)
    assert events == [CardReadFailed("timeout", "the card reader did not answer in time")]
    p.tick(3.0)
    p.on_frame(FIND_OK, 3.0)
    p.on_frame(SELECT_OK, 3.0)
    _, events = p.on_frame(_answer(build_response(0x41)), 3.1)
    assert events == [CardReadFailed("sw_41", "reading the card failed")]
    p.tick(3.3)
    p.on_frame(FIND_OK, 3.3)
    p.on_frame(SELECT_OK, 3.3)
    _, events = p.on_frame_error(FrameError("checksum", 1295), 3.4)
    assert [e.reason for e in events] == ["bad_frame"]  # type: ignore[union-attr]
    # unsolicited frames while idle are ignored
    assert p.on_frame(READ_OK, 3.5) == (None, [])


# ------------------------------------------------------------------ keyboard wedge


def _type(parser: WedgeParser, text: str, start: float, gap: float) -> list[object]:
    events = []
    t = start
    for ch in [*text, "\r"]:
        ev = parser.feed(ch, t)
        if ev is not None:
            events.append(ev)
        t += gap
    return events


@pytest.mark.parametrize(
    ("typed", "gap", "expected"),
    [
        ("0012345678", 0.01, IcCardRead("0012345678", "decimal")),
        ("12345678", 0.02, IcCardRead("12345678", "decimal")),
        ("04a1b2c3d4e5f6", 0.01, IcCardRead("04A1B2C3D4E5F6", "hex")),
        ("DEADBEEF", 0.01, IcCardRead("DEADBEEF", "hex")),
        ("0123456789ABCDEF0123", 0.005, IcCardRead("0123456789ABCDEF0123", "hex")),
        ("12345678", 0.2, None),  # a person typing
        ("123", 0.01, None),  # too short to be anything
        ("12AB5", 0.01, CardReadFailed("bad_card_number", "not a card number", source="wedge")),
        (
            "12345678901",
            0.01,
            CardReadFailed("bad_card_number", "not a card number", source="wedge"),
        ),
    ],
)
def test_wedge_parser(typed: str, gap: float, expected: object) -> None:
    events = _type(WedgeParser(max_gap=0.06), typed, 100.0, gap)
    assert events == ([] if expected is None else [expected])


def test_wedge_late_enter_and_interleaving() -> None:
    w = WedgeParser(max_gap=0.05)
    for i, ch in enumerate("12345678"):
        assert w.feed(ch, 1.0 + i * 0.01) is None
    assert w.feed("Enter", 1.5) is None  # Enter long after the digits: not a card
    # a person's slow keys followed by a fast reader burst: only the burst counts
    w.feed("9", 2.0)
    w.feed("9", 2.3)
    assert _type(w, "87654321", 2.6, 0.01) == [IcCardRead("87654321", "decimal")]
    # non-character keys reset; overlong bursts reset
    w.feed("1", 3.0)
    w.feed("Shift", 3.01)
    assert w.pending == 0
    assert _type(WedgeParser(max_len=10), "1" * 12, 4.0, 0.01) == []


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        ("12345678", "decimal"),
        ("1234567890", "decimal"),
        ("ABCDEF12", "hex"),
        ("1234567", None),
        ("ABCDEF1", None),
        ("GHIJKLMN", None),
        ("", None),
    ],
)
def test_classify_card_number(text: str, fmt: str | None) -> None:
    card = classify_card_number(text)
    assert (card.format if card else None) == fmt
