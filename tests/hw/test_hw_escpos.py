"""ESC/POS codec: exact bytes, layout widths, sanitising, status answers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.hw.escpos import (
    COLUMNS_80MM,
    RULE,
    EscPosBuilder,
    PrinterStatus,
    ReceiptDoc,
    ReceiptRow,
    StatusKind,
    encode_text,
    layout_two_columns,
    parse_status,
    parse_status_answers,
    render_lines,
    render_receipt,
    status_request,
    text_width,
)

ZHANG_SAN_GB = bytes.fromhex("d5c5c8fd")  # "张三" in GB18030 / GBK


def sample_doc(**kw: object) -> ReceiptDoc:
    base = dict(
        title="幸福里照料中心",
        header=["2026-01-05 11:32", "午餐"],
        rows=[
            ("张三", ""),
            ("红烧肉套餐", "12.00"),
            ("补贴", "-5.00"),
            RULE,
            ReceiptRow("实付", "7.00", bold=True),
            ("余额", "93.00"),
            ("单号", "01JH8Z3Q4W5E6R7T8Y9V0A1B2C"),
        ],
        footer=["谢谢惠顾"],
        verify_code="7K3F",
        verify_label="核验码",
    )
    base.update(kw)
    return ReceiptDoc(**base)  # type: ignore[arg-type]


def test_receipt_starts_with_init_and_chinese_mode_and_ends_with_cut() -> None:
    out = render_receipt(sample_doc())
    assert out.startswith(b"\x1b@\x1c&")  # ESC @, FS &
    assert out.endswith(b"\x1bd\x03\x1dVB\x00")  # ESC d 3 (feed 3 lines), GS V B 0 (cut)
    assert ZHANG_SAN_GB in out
    assert "幸福里照料中心".encode("gb18030") in out
    assert b"01JH8Z3Q4W5E6R7T8Y9V0A1B2C" in out


def test_receipt_title_is_centred_bold_double_then_reset() -> None:
    out = render_receipt(sample_doc())
    title = "幸福里照料中心".encode("gb18030")
    i = out.index(title)
    before = out[:i]
    assert before.endswith(b"\x1bE\x01\x1d!\x11\x1c!\x0c")  # bold, GS ! double, FS ! double
    assert b"\x1ba\x01" in before  # centred
    assert out[i + len(title) :].startswith(b"\n\x1d!\x00\x1c!\x00\x1bE\x00")


def test_receipt_row_layout_bytes_58mm() -> None:
    out = render_receipt(sample_doc())
    line = "红烧肉套餐" + " " * (32 - 10 - 5) + "12.00"
    assert (line + "\n").encode("gb18030") in out
    assert b"-" * 32 + b"\n" in out
    # the bold row is wrapped in ESC E 1 / ESC E 0
    paid = ("实付" + " " * 24 + "7.00\n").encode("gb18030")
    assert b"\x1bE\x01" + paid + b"\x1bE\x00" in out


def test_receipt_80mm_uses_48_columns() -> None:
    out = render_receipt(sample_doc(), columns=COLUMNS_80MM)
    assert b"-" * 48 + b"\n" in out
    line = "红烧肉套餐" + " " * (48 - 10 - 5) + "12.00"
    assert line.encode("gb18030") in out


def test_verify_code_large_after_label_and_optional_parts() -> None:
    out = render_receipt(sample_doc(banner="补打"))
    assert "核验码\n".encode("gb18030") + b"\x1bE\x01\x1d!\x11\x1c!\x0c7K3F\n" in out
    assert out.index("补打".encode("gb18030")) < out.index("幸福里".encode("gb18030"))
    bare = render_receipt(ReceiptDoc(title="X"), cut=False, tail_feed=2)
    assert b"\x1dV" not in bare
    assert bare.endswith(b"\x1bd\x02")
    cutter = render_receipt(ReceiptDoc(title="X"), tail_feed=0)
    assert cutter.endswith(b"\x1bE\x00\x1ba\x00\x1dVB\x00")


@pytest.mark.parametrize(
    ("text", "width"),
    [("", 0), ("abc", 3), ("张三", 4), ("张a", 3), ("·", 2), ("é", 2), ("￥12.00", 7)],
)
def test_text_width(text: str, width: int) -> None:
    assert text_width(text) == width


@pytest.mark.parametrize(
    ("left", "right", "cols", "expected"),
    [
        ("餐费", "12.00", 32, ["餐费" + " " * 23 + "12.00"]),
        ("abc", "", 8, ["abc"]),
        ("", "9.00", 8, ["    9.00"]),
        # exactly one space between fits
        ("红烧肉套餐啊", "12.00", 18, ["红烧肉套餐啊 12.00"]),
        # left wraps, right fits beside the last piece
        ("红烧肉套餐配米饭", "9.00", 12, ["红烧肉套餐配", "米饭    9.00"]),
        # right does not fit beside the last piece: own line
        ("红烧肉套餐配米饭", "9.00", 8, ["红烧肉套", "餐配米饭", "    9.00"]),
        # a double-width char never straddles the edge
        ("a张三李四", "1", 6, ["a张三", "李四 1"]),
    ],
)
def test_two_column_layout(left: str, right: str, cols: int, expected: list[str]) -> None:
    assert layout_two_columns(left, right, cols) == expected


_text = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E),
        st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5),
        st.sampled_from("·￥（）、：—"),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(left=_text, right=_text, cols=st.sampled_from([8, 16, 24, 32, 48]))
def test_two_column_never_overflows_and_keeps_content(left: str, right: str, cols: int) -> None:
    lines = layout_two_columns(left, right, cols)
    assert all(text_width(ln) <= cols for ln in lines)
    squashed = "".join(lines).replace(" ", "")
    assert squashed == (left + right).replace(" ", "")


def test_control_characters_cannot_inject_commands() -> None:
    # ESC, GS, DLE would start printer commands (cut, drawer kick, status)
    evil = "菜\x1bi\x1dV\x00\x10\x14\x01\x02\x7f\u2028名\ufeff"
    out = encode_text(evil)
    assert all(b >= 0x20 for b in out)
    assert out == ("菜 i V" + " " * 7 + "名").encode("gb18030")
    doc = render_receipt(ReceiptDoc(title="A", rows=[(evil, "1.00")]))
    body = doc[doc.index("菜".encode("gb18030")) :]
    assert b"\x1bi" not in body and b"\x1dV\x00" not in body and b"\x10\x14" not in body


def test_gb18030_four_byte_characters_and_gbk_fallback() -> None:
    rare = "𠮷"  # four bytes in GB18030
    assert encode_text(rare) == bytes.fromhex("9534b235")
    assert encode_text(rare, "gbk") == b"?"
    assert encode_text("¥5", "gbk") == bytes.fromhex("a3a4") + b"5"  # full-width yen
    assert encode_text("¥5") == bytes.fromhex("81308436") + b"5"
    assert text_width("¥5", "gbk") == 3
    assert encode_text("张三", "ascii") == b"??"
    b = EscPosBuilder(charset="ascii").init()
    assert b.build() == b"\x1b@\x1c."  # FS . leaves Chinese mode


def test_builder_commands_exact() -> None:
    b = (
        EscPosBuilder(32)
        .init()
        .align("right")
        .bold()
        .size(2, 1)
        .two_column("ab", "cd")
        .size()
        .feed(4)
        .cut(partial=False, feed=24)
        .status_request(StatusKind.PAPER_SENSOR)
    )
    assert b.build() == (
        b"\x1b@\x1c&"
        + b"\x1ba\x02"
        + b"\x1bE\x01"
        + b"\x1d!\x10\x1c!\x04"
        + b"ab"
        + b" " * 12
        + b"cd\n"  # 16 columns at double width
        + b"\x1d!\x00\x1c!\x00"
        + b"\x1bd\x04"
        + b"\x1dVA\x18"
        + b"\x10\x04\x04"
    )
    with pytest.raises(ValueError):
        EscPosBuilder().size(9, 1)
    with pytest.raises(ValueError):
        EscPosBuilder().rule("张")


def test_status_request_bytes() -> None:
    assert status_request(1) == b"\x10\x04\x01"
    assert status_request(StatusKind.OFFLINE_CAUSE) == b"\x10\x04\x02"
    with pytest.raises(ValueError):
        status_request(7)


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        (1, 0x12, {"online": True}),
        (1, 0x16, {"online": True}),  # drawer pin high, still online
        (1, 0x1A, {"online": False}),
        (2, 0x12, {"cover_open": False, "paper_out": False, "error": False}),
        (2, 0x16, {"cover_open": True}),
        (2, 0x32, {"paper_out": True}),
        (2, 0x52, {"error": True}),
        (3, 0x1A, {"cutter_error": True}),
        (3, 0x32, {"unrecoverable_error": True}),
        (4, 0x12, {"paper_near_end": False, "paper_out": False}),
        (4, 0x1E, {"paper_near_end": True, "paper_out": False}),
        (4, 0x7E, {"paper_near_end": True, "paper_out": True}),
    ],
)
def test_parse_status(kind: int, value: int, expected: dict[str, bool]) -> None:
    st_ = parse_status(kind, value)
    assert st_ is not None
    for k, v in expected.items():
        assert getattr(st_, k) is v, k
    assert st_.answered == {StatusKind(kind)}


@pytest.mark.parametrize("value", [0x00, 0xFF, 0x10, 0x13, 0x92, 0x41])
def test_non_status_bytes_are_rejected(value: int) -> None:
    assert parse_status(1, value) is None


def test_status_answers_skip_noise_and_worst_wins() -> None:
    kinds = [StatusKind.PRINTER, StatusKind.OFFLINE_CAUSE, StatusKind.PAPER_SENSOR]
    st_ = parse_status_answers(kinds, [0x00, 0x1A, 0x41, 0x32, 0x12])
    assert st_.online is False
    assert st_.paper_out is True  # offline cause says paper end; sensor says fine: worse wins
    assert st_.problem == "paper_out"
    assert st_.answered == set(kinds)
    partial = parse_status_answers(kinds, [0x12])
    assert partial.online is True and partial.paper_out is None
    assert partial.problem is None and partial.known
    assert not PrinterStatus().known
    assert parse_status_answers(kinds, [0x12, 0x16, 0x12]).problem == "cover_open"
    assert parse_status_answers(kinds, [0x1A, 0x12, 0x12]).problem == "offline"


def test_render_lines_for_pre_laid_out_text() -> None:
    out = render_lines(["  幸福里照料中心", "实付" + " " * 26 + "7.00", "a\x1bb"], tail_feed=0)
    assert out == (
        b"\x1b@\x1c&"
        + "  幸福里照料中心\n".encode("gb18030")
        + ("实付" + " " * 26 + "7.00\n").encode("gb18030")
        + b"a b\n"
        + b"\x1dVB\x00"
    )
