"""Manager report -> figures and chart series. Qt-free."""

from __future__ import annotations

from dataclasses import dataclass

from payment.visiting import VisitorsDay
from terminal.core.money import Money
from ui.i18n import Translator
from ui.model import ManagerReport

FIRST_HOUR = 6  # the chart shows the centre's opening hours
LAST_HOUR = 20


@dataclass(frozen=True, slots=True)
class ManagerVM:
    figures: tuple[tuple[str, str], ...]  # (label, value)
    meals_detail: str  # meals per slot
    hour_title: str
    hour_labels: tuple[str, ...]
    hour_values: tuple[int, ...]
    week_title: str
    week_labels: tuple[str, ...]
    week_values: tuple[int, ...]
    source_note: str
    visitors: str = ""  # today's visitors of other centres and what is owed for them


def present_manager(r: ManagerReport, tr: Translator) -> ManagerVM:
    hours = range(FIRST_HOUR, LAST_HOUR + 1)
    meals = sum(r.meals_per_slot.values())
    slots = " / ".join(
        f"{tr(f'slot.{s}')} {r.meals_per_slot.get(s, 0)}" for s in ("breakfast", "lunch", "dinner")
    )
    figures = (
        (tr("manager.unique"), tr("manager.persons", n=r.unique_visitors)),
        (tr("manager.attendance"), f"{r.attendance} / {r.enrolled}"),
        (tr("manager.meals"), tr("manager.portions", n=meals)),
        (tr("manager.subsidy"), tr("common.amount", amount=r.subsidy_total.yuan_str())),
        (tr("manager.paid"), tr("common.amount", amount=r.paid_total.yuan_str())),
    )
    return ManagerVM(
        figures=figures,
        meals_detail=slots,
        hour_title=tr("manager.visits_per_hour"),
        hour_labels=tuple(str(h) for h in hours),
        hour_values=tuple(r.visits_per_hour[h] for h in hours),
        week_title=tr("manager.week"),
        week_labels=tuple(str(d.day.day) for d in r.week),
        week_values=tuple(d.meals for d in r.week),
        source_note="" if r.source == "footfall" else tr("manager.source.payments"),
        visitors=_visitors_text(r.visitors, tr) if r.visitors is not None else "",
    )


def _visitors_text(v: VisitorsDay, tr: Translator) -> str:
    """One line: today's visitors, then the subsidy owed per home centre (and
    what was paid from the district wallet, which the home centre owes too)."""
    owed = ", ".join(
        tr(
            "manager.owed_line",
            centre=o.home_centre_id,
            meals=o.meals,
            amount=Money(o.subsidy_fen).yuan_str(),
        )
        + (tr("manager.owed_wallet", amount=Money(o.wallet_fen).yuan_str()) if o.wallet_fen else "")
        for o in v.owed
    )
    parts = [
        tr("manager.visitors", visitors=v.visitors, meals=v.meals),
        tr("manager.owed", lines=owed or tr("manager.owed_none")),
    ]
    if v.review:
        parts.append(tr("manager.review", n=v.review))
    return "   ·   ".join(parts)
