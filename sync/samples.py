"""Spec-valid sample payloads for every record kind and a demo seed for the
reference platform (tests, the benchmark and demos). Fictional data only."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from terminal.core.clock import rfc3339

_LIVENESS = {
    "live": True,
    "method": "passive+blink",
    "signals": {"passive": 0.93, "blink": 1.0},
    "reason": None,
}


def meal_transaction(i: int, now: datetime) -> dict[str, Any]:
    price = 1200 + (i % 5) * 100
    qty = 1 + (i % 2)
    line = price * qty
    subsidy = 300 if i % 3 else 0
    before = 50_000 - (i % 1000)
    due = line - subsidy
    return {
        "resident_id": f"R{i % 400:05d}",
        "categories": ["age_80_89"] if subsidy else ["none"],
        "meal_date": now.date().isoformat(),
        "slot": ("breakfast", "lunch", "dinner")[i % 3],
        "items": [
            {
                "item_id": f"M{i % 7}",
                "name": "红烧肉套餐",
                "quantity": qty,
                "unit_price_fen": price,
                "line_total_fen": line,
                "subsidisable": True,
            }
        ],
        "list_total_fen": line,
        "subsidy_lines": [
            {
                "policy_id": "district-2026",
                "policy_version": 3,
                "category": "age_80_89",
                "rule": "age_80_89/lunch: fixed 3.00",
                "amount_fen": subsidy,
            }
        ]
        if subsidy
        else [],
        "subsidy_total_fen": subsidy,
        "amount_due_fen": due,
        "payment_source": "wallet",
        "wallet_before_fen": before,
        "wallet_after_fen": before - due,
        "verification": {
            "method": "face",
            "match_score": 0.71,
            "match_threshold": 0.5,
            "liveness": _LIVENESS,
            "card_id_hmac": None,
            "id_number_hmac": None,
            "staff_id": None,
        },
        "staff_id": None,
        "corrects_record_id": None,
        "receipt_no": f"{i:08d}",
    }


def sample_payload(kind: str, i: int, now: datetime) -> dict[str, Any]:
    if kind == "meal_transaction":
        return meal_transaction(i, now)
    if kind == "wallet_topup":
        return {
            "resident_id": f"R{i % 400:05d}",
            "amount_fen": 10_000,
            "method": "cash",
            "staff_id": "S01",
            "wallet_before_fen": 500,
            "wallet_after_fen": 10_500,
            "receipt_no": None,
        }
    if kind == "meal_void":
        return {
            "original_record_id": "01JAAAAAAAAAAAAAAAAAAAAAAA",
            "resident_id": "R00001",
            "reason_code": "wrong_item",
            "reason_text": None,
            "staff_id": "S01",
            "amount_returned_fen": 900,
            "subsidy_reversed_fen": 300,
            "wallet_before_fen": 100,
            "wallet_after_fen": 1000,
        }
    if kind == "meal_refund":
        return {
            "original_record_id": "01JAAAAAAAAAAAAAAAAAAAAAAA",
            "resident_id": "R00001",
            "amount_fen": 200,
            "refund_to": "wallet",
            "reason_code": "meal_not_served",
            "reason_text": None,
            "staff_id": "S01",
            "wallet_before_fen": 0,
            "wallet_after_fen": 200,
        }
    if kind == "footfall_hourly":
        hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
        return {
            "hour_start": rfc3339(hour),
            "date": hour.date().isoformat(),
            "visits_in": 17 + i % 5,
            "visits_out": 15,
            "unique_visitors": 12,
            "identified_attendance": 4,
            "observed_seconds": 3600,
            "partial": False,
            "detector": "face",
        }
    if kind == "attendance":
        return {
            "resident_id": f"R{i % 400:05d}",
            "date": now.date().isoformat(),
            "session": 1 + i % 2,
            "first_seen": rfc3339(now),
            "score": 0.71,
        }
    if kind == "enrolment":
        return {
            "resident_id": f"R{i % 400:05d}",
            "pack_id": "open-1",
            "template_count": 3,
            "quality_min": 0.62,
            "quality_mean": 0.71,
            "consent": {
                "face_pay": True,
                "attendance": False,
                "consented_at": rfc3339(now),
                "evidence": "paper_form",
            },
            "staff_id": "S01",
        }
    if kind == "unenrolment":
        return {
            "resident_id": f"R{i % 400:05d}",
            "pack_id": "open-1",
            "templates_deleted": 3,
            "reason": "consent_withdrawn",
            "staff_id": None,
        }
    if kind == "heartbeat":
        return {
            "software_version": "0.1.0",
            "uptime_s": 100,
            "disk_free_bytes": 10,
            "disk_total_bytes": 20,
            "queue_depth": 0,
            "oldest_unsynced_age_s": None,
            "dead_letters": 0,
            "blocked_streams": [],
            "camera_status": "ok",
            "printer_status": "unknown",
            "last_upload_at": None,
            "datasets": {},
        }
    if kind == "ota_status":
        return {
            "deployment_id": "42",
            "action": "download",
            "status": "started",
            "version_from": "0.1.0",
            "version_to": "0.2.0",
            "detail": None,
        }
    raise ValueError(f"unknown record kind {kind!r}")


def demo_datasets(centre_id: str) -> list[dict[str, Any]]:
    """Datasets for a demo centre (fictional residents)."""
    residents = [
        {
            "resident_id": f"R{i:05d}",
            "name": n,
            "name_masked": n[0] + "*" + (n[2:] if len(n) > 2 else ""),
            "id_number_hmac": None,
            "phone_last4": None,
            "categories": [cat],
            "card_ids": [f"C{i:06d}"],
            "consent_face_pay": True,
            "consent_attendance": i % 2 == 0,
            "active": True,
        }
        for i, (n, cat) in enumerate(
            [
                ("张桂华", "age_80_89"),
                ("李建国", "age_70_79"),
                ("王秀英", "dibao"),
                ("赵德明", "age_90_plus"),
            ],
            1,
        )
    ]
    return [
        {
            "centre_id": centre_id,
            "kind": "roster",
            "data": {
                "residents": residents,
                "categories": [
                    {"code": "age_80_89", "label_zh": "80-89周岁", "label_en": "aged 80-89"},
                    {"code": "dibao", "label_zh": "低保", "label_en": "minimum living allowance"},
                ],
            },
        },
        {
            "centre_id": centre_id,
            "kind": "subsidy_policy",
            "data": {
                "policy_id": "district-2026",
                "version": 3,
                "effective_from": "2026-01-01",
                "effective_until": None,
                "rules": [
                    {
                        "category": "age_80_89",
                        "slots": ["lunch"],
                        "type": "fixed",
                        "amount_fen": 300,
                        "cap_fen": 300,
                        "limit_per_day": 1,
                        "floor_fen": 100,
                    },
                    {
                        "category": "dibao",
                        "slot": "*",
                        "type": "percent",
                        "basis_points": 5000,
                        "cap_fen": 800,
                        "limit_per_day": 1,
                        "floor_fen": 0,
                    },
                ],
            },
        },
        {
            "centre_id": centre_id,
            "kind": "menu",
            "data": {
                "date": "2026-01-05",
                "items": [
                    {
                        "item_id": "M1",
                        "name": "红烧肉套餐",
                        "price_fen": 1200,
                        "slots": ["lunch"],
                        "kind": "set",
                        "subsidisable": True,
                    },
                    {
                        "item_id": "M2",
                        "name": "小米粥",
                        "price_fen": 300,
                        "slots": ["breakfast"],
                        "kind": "item",
                        "subsidisable": True,
                    },
                ],
            },
        },
        {
            "centre_id": centre_id,
            "kind": "terminal_config",
            "data": {"overrides": {"face.accept_threshold": 0.5, "sync.batch_size": 500}},
        },
        {
            "centre_id": centre_id,
            "kind": "centre_info",
            "data": {
                "centre_id": centre_id,
                "name": "示范居家养老服务照料中心",
                "address": None,
                "phone": None,
                "district_code": "330106",
                "timezone": "Asia/Shanghai",
                "opening_hours": [
                    {"weekday": d, "open": "08:00", "close": "17:30"} for d in range(1, 6)
                ],
                "meal_slots": [{"slot": "lunch", "start": "11:00", "end": "12:30"}],
            },
        },
    ]
