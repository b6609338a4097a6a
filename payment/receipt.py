"""Receipt model and its rendering to text lines (the ESC/POS bytes, with
GB18030 for Chinese, are produced by ``terminal.hw``).

Lines are laid out for a fixed number of printer columns (32 for 58 mm paper
with font A); CJK characters take two columns. zh_CN is the default language;
English is available through the same key table.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from enum import StrEnum

from payment.domain import MealSlot, OrderLine, SeniorCategory, VerificationMethod
from payment.errors import DomainError
from terminal.core.clock import CHINA_TZ
from terminal.core.money import Money

_ZERO = Money(0)

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class ReceiptKind(StrEnum):
    CHARGE = "charge"
    TOPUP = "topup"
    VOID = "void"
    REFUND = "refund"


RECEIPT_TEXT: Mapping[str, Mapping[str, str]] = {
    "zh_CN": {
        "title.charge": "就餐小票",
        "title.topup": "充值凭证",
        "title.void": "撤销凭证",
        "title.refund": "退款凭证",
        "reprint": "(补打)",
        "time": "时间",
        "name": "姓名",
        "category": "类别",
        "slot": "餐次",
        "list": "原价",
        "subsidy": "补贴",
        "paid": "实付",
        "amount": "金额",
        "balance": "余额",
        "method": "方式",
        "record": "单号",
        "code": "校验码",
        "ref": "原单号",
        "thanks": "谢谢惠顾，祝您健康",
        "method.face": "刷脸",
        "method.card": "刷卡",
        "method.id_card": "身份证",
        "method.staff": "工作人员代办",
    },
    "en": {
        "title.charge": "MEAL RECEIPT",
        "title.topup": "TOP-UP RECEIPT",
        "title.void": "VOID RECEIPT",
        "title.refund": "REFUND RECEIPT",
        "reprint": "(REPRINT)",
        "time": "Time",
        "name": "Name",
        "category": "Category",
        "slot": "Meal",
        "list": "List price",
        "subsidy": "Subsidy",
        "paid": "Paid",
        "amount": "Amount",
        "balance": "Balance",
        "method": "Method",
        "record": "Record",
        "code": "Check code",
        "ref": "Original",
        "thanks": "Thank you, stay healthy",
        "method.face": "face",
        "method.card": "card",
        "method.id_card": "ID card",
        "method.staff": "staff",
    },
}


def verification_code(record_id: str, record_hash: str = "") -> str:
    """A short code printed on the receipt: 8 Crockford base32 characters of
    sha256(record id | record hash), shown as ``XXXX-XXXX``. With the record's
    chain hash (kept on the device, not printed) staff can check that a paper
    receipt matches the stored record."""
    if not record_id.strip():
        raise DomainError("a receipt needs a record id", code="bad_receipt")
    digest = hashlib.sha256(f"{record_id}|{record_hash}".encode()).digest()
    value = int.from_bytes(digest[:5], "big")  # 40 bits = 8 characters
    chars = "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(8)))
    return f"{chars[:4]}-{chars[4:]}"


@dataclass(frozen=True, slots=True)
class ReceiptItem:
    name: str
    quantity: int
    amount: Money


@dataclass(frozen=True, slots=True)
class Receipt:
    centre_name: str
    kind: ReceiptKind
    record_id: str
    at: datetime
    resident_masked: str
    paid: Money  # the wallet movement: due for a charge, the amount otherwise
    balance_after: Money
    verification_code: str
    category: SeniorCategory | None = None
    slot: MealSlot | None = None
    items: tuple[ReceiptItem, ...] = ()
    list_total: Money = _ZERO
    subsidy: Money = _ZERO
    method: VerificationMethod | None = None
    ref_id: str | None = None  # the charge a void/refund compensates
    reprint: bool = False


def receipt_for_charge(
    *,
    centre_name: str,
    record_id: str,
    at: datetime,
    resident_masked: str,
    lines: tuple[OrderLine, ...],
    list_total: Money,
    subsidy: Money,
    paid: Money,
    balance_after: Money,
    method: VerificationMethod,
    slot: MealSlot,
    category: SeniorCategory | None = None,
    record_hash: str = "",
    reprint: bool = False,
) -> Receipt:
    return Receipt(
        centre_name=centre_name,
        kind=ReceiptKind.CHARGE,
        record_id=record_id,
        at=at,
        resident_masked=resident_masked,
        paid=paid,
        balance_after=balance_after,
        verification_code=verification_code(record_id, record_hash),
        category=category,
        slot=slot,
        items=tuple(ReceiptItem(ln.name, ln.quantity, ln.amount) for ln in lines),
        list_total=list_total,
        subsidy=subsidy,
        method=method,
        reprint=reprint,
    )


# --------------------------------------------------------------------------- layout


def char_width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def display_width(text: str) -> int:
    """Printer columns taken by ``text`` (CJK and full-width forms take two)."""
    return sum(char_width(c) for c in text)


def wrap(text: str, width: int) -> list[str]:
    """Split into pieces of at most ``width`` columns (never splitting a wide char)."""
    out, cur, w = [], "", 0
    for ch in text:
        cw = char_width(ch)
        if w + cw > width and cur:
            out.append(cur)
            cur, w = "", 0
        cur += ch
        w += cw
    if cur or not out:
        out.append(cur)
    return out


def two_columns(left: str, right: str, width: int) -> list[str]:
    """``left`` and ``right`` on one line, right-aligned; wraps when too long."""
    gap = width - display_width(left) - display_width(right)
    if gap >= 1:
        return [left + " " * gap + right]
    lines = wrap(left, width)
    pad = width - display_width(right)
    return [*lines, " " * max(0, pad) + right]


def center(text: str, width: int) -> list[str]:
    out = []
    for piece in wrap(text, width):
        pad = (width - display_width(piece)) // 2
        out.append(" " * max(0, pad) + piece)
    return out


def render_receipt(
    receipt: Receipt, *, lang: str = "zh_CN", width: int = 32, tz: tzinfo = CHINA_TZ
) -> list[str]:
    """Text lines, each at most ``width`` columns. Unknown languages fall back
    to zh_CN."""
    if width < 20:
        raise DomainError("receipt width must be at least 20 columns", code="bad_receipt")
    t = RECEIPT_TEXT.get(lang, RECEIPT_TEXT["zh_CN"])
    sep = "-" * width
    label_lang = lang if lang in RECEIPT_TEXT else "zh_CN"

    def kv(key: str, value: str) -> list[str]:
        return two_columns(t[key], value, width)

    title = t[f"title.{receipt.kind.value}"] + (t["reprint"] if receipt.reprint else "")
    out: list[str] = [*center(receipt.centre_name, width), *center(title, width), sep]
    out += kv("time", receipt.at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S"))
    out += kv("name", receipt.resident_masked)
    if receipt.category is not None:
        out += kv("category", receipt.category.label(label_lang))
    if receipt.slot is not None:
        out += kv("slot", receipt.slot.label(label_lang))
    if receipt.items:
        out.append(sep)
        for item in receipt.items:
            out += two_columns(f"{item.name} x{item.quantity}", item.amount.yuan_str(), width)
    out.append(sep)
    if receipt.kind is ReceiptKind.CHARGE:
        out += kv("list", receipt.list_total.yuan_str())
        out += kv("subsidy", (-receipt.subsidy).yuan_str() if receipt.subsidy else "0.00")
        out += kv("paid", receipt.paid.yuan_str())
    else:
        out += kv("amount", receipt.paid.yuan_str())
    out += kv("balance", receipt.balance_after.yuan_str())
    out.append(sep)
    if receipt.method is not None:
        out += kv("method", t[f"method.{receipt.method.value}"])
    if receipt.ref_id:
        out += kv("ref", receipt.ref_id)
    out += kv("record", receipt.record_id)
    out += kv("code", receipt.verification_code)
    out += center(t["thanks"], width)
    return out
