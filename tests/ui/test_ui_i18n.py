"""Translation tables and presenters (Qt-free)."""

from __future__ import annotations

import re

import pytest
from ui_support import CannedBackend

from face.liveness import PROMPTS
from face.quality import MESSAGES
from payment.domain import MealSlot, SeniorCategory
from payment.flow import FailReason, LivenessPolicy, NextAction
from payment.limits import LimitReason
from ui.i18n import (
    FAIL_REASONS,
    LANGUAGES,
    NEXT_ACTIONS,
    QUALITY_REASONS,
    STAFF_REASONS,
    TABLES,
    Translator,
    voice_keys,
)
from ui.presenters.kiosk import present, present_out_of_service
from ui.presenters.manager import present_manager

KEY_LIKE = re.compile(r"^[a-z_]+(\.[a-z_0-9]+)+$")


def test_both_languages_hold_the_same_keys() -> None:
    zh, en = set(TABLES["zh_CN"]), set(TABLES["en"])
    assert zh == en, (zh - en, en - zh)
    assert LANGUAGES == ("zh_CN", "en")


def test_every_prompt_the_flow_speaks_has_a_text() -> None:
    spoken = {
        "pay.look_at_camera",
        "pay.confirm",
        "pay.cancelled",
        "pay.second_factor",
        "pay.second_factor.wrong",
        "pay.success",
        "pay.already_paid",
        "pay.staff_required",
        "pay.item_unavailable",
    }
    spoken |= {f"pay.failed.{r.value}" for r in FailReason}
    spoken |= {f"pay.quality.{q}" for q in QUALITY_REASONS if q != "ok"}
    spoken |= {f"pay.challenge.{c}" for c in LivenessPolicy().challenges}
    spoken |= {"pay.challenge.turn_left", "pay.challenge.turn_right"}  # which side, when asked
    assert spoken <= set(voice_keys())
    assert {r.value for r in FailReason} == set(FAIL_REASONS)
    assert {a.value for a in NextAction} == set(NEXT_ACTIONS)
    assert {r.value for r in LimitReason} | {"second_factor_unavailable"} == set(STAFF_REASONS)
    for lang in LANGUAGES:
        for r in FAIL_REASONS:
            assert TABLES[lang][f"failed.{r}"]
        for r in STAFF_REASONS:
            assert TABLES[lang][f"staffreq.{r}"]


def test_face_guidance_matches_the_quality_gate_and_liveness_texts() -> None:
    assert set(MESSAGES) == set(QUALITY_REASONS)
    for _reason, (key, en, zh) in MESSAGES.items():
        assert TABLES["zh_CN"][key] == zh
        assert TABLES["en"][key] == en
    for key, _en, zh in PROMPTS.values():
        assert TABLES["zh_CN"][key] == zh


def test_domain_labels_come_from_the_payment_domain() -> None:
    tr = Translator("zh_CN")
    assert tr(SeniorCategory.DIBAO.i18n_key) == "低保"
    assert tr(MealSlot.LUNCH.i18n_key) == "午餐"
    tr.set_language("en")
    assert tr(MealSlot.LUNCH.i18n_key) == "lunch"


def test_translator_fallbacks_and_listeners() -> None:
    tr = Translator("xx")
    assert tr.language == "zh_CN"
    assert tr("no.such.key") == "no.such.key"
    assert tr("common.amount", amount="7.50") == "7.50 元"
    assert tr("common.amount") == "{amount} 元"  # a missing parameter never crashes a screen
    heard: list[str] = []
    tr.on_change(heard.append)
    assert tr.toggle() == "en" and heard == ["en"]
    tr.set_language("en")
    assert heard == ["en"], "no event when nothing changed"
    with pytest.raises(ValueError):
        tr.set_language("fr")


@pytest.mark.parametrize("language", ["zh_CN", "en"])
def test_presenters_show_translated_text_only(language: str) -> None:
    from test_ui_screens import CTX, NOW, every_state

    from terminal.kiosk.runner import idle_info_from_context

    tr = Translator(language)
    idle = idle_info_from_context(CTX, NOW)
    for name, state in every_state():
        p = present(state, idle=idle, tr=tr, now=NOW, guidance="face.quality.too_small")
        for field in p.vm.__dataclass_fields__:  # type: ignore[union-attr]
            value = getattr(p.vm, field)
            values = value if isinstance(value, tuple) else (value,)
            for v in values:
                for text in v if isinstance(v, tuple) else (v,):
                    if isinstance(text, str):
                        assert not KEY_LIKE.match(text), f"{name}.{field}: untranslated {text!r}"
    oos = present_out_of_service(tr, "E-x")
    assert oos.screen == "oos" and "E-x" in oos.vm.code  # type: ignore[union-attr]


def test_confirm_view_model_lines() -> None:
    from test_ui_screens import CTX, NOW, every_state

    from terminal.kiosk.runner import idle_info_from_context

    tr = Translator("zh_CN")
    confirm = dict(every_state())["confirm"]
    p = present(confirm, idle=idle_info_from_context(CTX, NOW), tr=tr, now=NOW)
    vm = p.vm
    assert p.screen == "confirm"
    assert vm.name == "张*华" and vm.due == "7.50 元"  # type: ignore[union-attr]
    assert [label for label, _v, _e in vm.lines] == ["原价", "补贴", "现有余额", "支付后余额"]  # type: ignore[union-attr]
    assert vm.lines[1][1] == "-7.50 元" and vm.lines[3][1] == "42.50 元"  # type: ignore[union-attr]
    assert vm.countdown == "30 秒后回到首页"  # type: ignore[union-attr]


def test_manager_view_model() -> None:
    report = CannedBackend().report
    vm = present_manager(report, Translator("zh_CN"))
    assert vm.hour_labels[0] == "6" and vm.hour_values[vm.hour_labels.index("11")] == 12
    assert vm.week_values == tuple(d.meals for d in report.week)
    assert ("到访人数", "18 人") in vm.figures and ("补贴合计", "90.00 元") in vm.figures
    assert vm.source_note == ""  # footfall data present
