"""Receipt model and text rendering."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from payment.domain import MealSlot, OrderLine, SeniorCategory, VerificationMethod
from payment.errors import DomainError
from payment.receipt import (
    Receipt,
    ReceiptKind,
    display_width,
    receipt_for_charge,
    render_receipt,
    verification_code,
    wrap,
)
from terminal.core.money import Money

RID = "01JGZ7Q9X8K3M2N4P5R6S7T8V9"


def charge_receipt(**kw: object) -> Receipt:
    r = receipt_for_charge(
        centre_name="阳光社区居家养老服务照料中心",
        record_id=RID,
        at=datetime(2026, 1, 5, 3, 32, 10, tzinfo=UTC),  # 11:32:10 in Beijing
        resident_masked="张*华",
        lines=(
            OrderLine("L1", "午餐套餐", Money(1500)),
            OrderLine("D1", "现磨豆浆加热特大杯", Money(300), 2, False),
        ),
        list_total=Money(2100),
        subsidy=Money(750),
        paid=Money(1350),
        balance_after=Money(3650),
        method=VerificationMethod.FACE,
        slot=MealSlot.LUNCH,
        category=SeniorCategory.DIBAO,
        record_hash="abc",
    )
    return replace(r, **kw)  # type: ignore[arg-type]


def test_verification_code_is_short_stable_and_bound_to_hash() -> None:
    code = verification_code(RID, "abc")
    assert len(code) == 9 and code[4] == "-"
    assert code == verification_code(RID, "abc")
    assert code != verification_code(RID, "abd")
    assert code != verification_code(RID[:-1] + "W", "abc")
    assert set(code.replace("-", "")) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    with pytest.raises(DomainError):
        verification_code(" ")


def test_render_zh_contains_every_line() -> None:
    lines = render_receipt(charge_receipt())
    text = "\n".join(lines)
    for needle in (
        "就餐小票",
        "2026-01-05 11:32:10",
        "张*华",
        "低保",
        "午餐",
        "午餐套餐 x1",
        "15.00",
        "原价",
        "21.00",
        "补贴",
        "-7.50",
        "实付",
        "13.50",
        "余额",
        "36.50",
        "刷脸",
        RID,
        verification_code(RID, "abc"),
    ):
        assert needle in text, needle
    assert all(display_width(ln) <= 32 for ln in lines)
    assert "张三华" not in text


def test_render_english_and_width() -> None:
    lines = render_receipt(charge_receipt(), lang="en", width=42)
    text = "\n".join(lines)
    for needle in (
        "MEAL RECEIPT",
        "Subsidy",
        "-7.50",
        "Paid",
        "Balance",
        "face",
        "Meal",
        "lunch",
        "minimum living allowance",
    ):
        assert needle in text, needle
    assert all(display_width(ln) <= 42 for ln in lines)
    # unknown language falls back to zh_CN
    assert render_receipt(charge_receipt(), lang="fr")[1].strip() == "就餐小票"


def test_other_kinds_and_reprint() -> None:
    void = charge_receipt(kind=ReceiptKind.VOID, ref_id="01JORIGINAL", reprint=True, items=())
    text = "\n".join(render_receipt(void))
    assert "撤销凭证(补打)" in text and "原单号" in text and "金额" in text
    assert "实付" not in text


def test_layout_helpers() -> None:
    assert display_width("abc") == 3 and display_width("张*华") == 5
    assert wrap("一二三四五", 4) == ["一二", "三四", "五"]
    assert wrap("", 4) == [""]
    with pytest.raises(DomainError):
        render_receipt(charge_receipt(), width=10)
