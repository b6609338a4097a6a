"""The manager's day report as CSV and as a printable HTML page (no IO: the
back end writes the files)."""

from __future__ import annotations

import csv
import html
import io
from datetime import datetime

from terminal.core.clock import rfc3339
from terminal.core.money import Money
from ui.model import ManagerReport

_SLOT_ZH = {"breakfast": "早餐", "lunch": "午餐", "dinner": "晚餐"}


def report_csv(r: ManagerReport) -> str:
    """The day's report as CSV (UTF-8 with BOM when written, so spreadsheet
    programs on Windows open the Chinese correctly)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["中心", r.centre_name])
    w.writerow(["日期", r.day.isoformat()])
    w.writerow(["数据来源", "客流" if r.source == "footfall" else "就餐记录"])
    w.writerow([])
    w.writerow(["指标", "数值"])
    w.writerow(["到访人数", r.unique_visitors])
    w.writerow(["在册老人出勤", r.attendance])
    w.writerow(["在册老人", r.enrolled])
    for slot in ("breakfast", "lunch", "dinner"):
        w.writerow([f"{_SLOT_ZH[slot]}份数", r.meals_per_slot.get(slot, 0)])
    w.writerow(["原价合计(元)", r.list_total.yuan_str()])
    w.writerow(["补贴合计(元)", r.subsidy_total.yuan_str()])
    w.writerow(["老人实付(元)", r.paid_total.yuan_str()])
    w.writerow([])
    w.writerow(["小时", "到访人次"])
    for h, n in enumerate(r.visits_per_hour):
        w.writerow([f"{h:02d}:00", n])
    w.writerow([])
    w.writerow(["日期", "到访人数", "就餐份数", "补贴(元)"])
    for d in r.week:
        w.writerow([d.day.isoformat(), d.visits, d.meals, d.subsidy.yuan_str()])
    v = r.visitors
    if v is not None and v.meals:
        w.writerow([])
        w.writerow(["外中心长者", v.visitors])
        w.writerow(["外中心就餐份数", v.meals])
        w.writerow(["待平台核对份数", v.review])
        w.writerow(["登记中心", "人数", "补贴份数", "代垫补贴(元)"])
        for o in v.owed:
            w.writerow([o.home_centre_id, o.visitors, o.meals, _yuan(o.subsidy_fen)])
    return buf.getvalue()


def _yuan(fen: int) -> str:
    return Money(fen).yuan_str()


def _visitors_html(r: ManagerReport) -> str:
    v = r.visitors
    if v is None or not v.meals:
        return ""
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(o.home_centre_id)}</td><td>{o.visitors}</td><td>{o.meals}</td>"
        f"<td>{_yuan(o.subsidy_fen)}</td></tr>"
        for o in v.owed
    )
    return (
        f"<h2>外中心长者（全城通吃）</h2><p>{v.visitors} 人，{v.meals} 份"
        f"{f'，{v.review} 份待平台核对' if v.review else ''}</p>"
        "<table><tr><th>登记中心</th><th>人数</th><th>补贴份数</th><th>代垫补贴(元)</th></tr>"
        f"{rows}</table>"
    )


def report_html(r: ManagerReport) -> str:
    """A printable one-page HTML report (print to PDF from any browser)."""
    e = html.escape
    peak = max(r.visits_per_hour) or 1
    bars = "".join(
        f'<div class="bar"><div style="height:{round(100 * n / peak)}%"></div>'
        f"<span>{h}</span><b>{n or ''}</b></div>"
        for h, n in enumerate(r.visits_per_hour)
        if 6 <= h <= 20
    )
    week = "".join(
        f"<tr><td>{d.day.isoformat()}</td><td>{d.visits}</td><td>{d.meals}</td>"
        f"<td>{d.subsidy.yuan_str()}</td></tr>"
        for d in r.week
    )
    slots = "".join(
        f"<tr><td>{_SLOT_ZH[s]}</td><td>{r.meals_per_slot.get(s, 0)}</td></tr>"
        for s in ("breakfast", "lunch", "dinner")
    )
    source = "客流统计" if r.source == "footfall" else "暂无客流数据，按就餐记录统计"
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>{e(r.centre_name)} {r.day.isoformat()} 日报</title>
<style>
body {{ font-family: "Noto Sans CJK SC", "Microsoft YaHei", sans-serif; font-size: 16pt;
       line-height: 1.5; margin: 2cm; color: #1a1a1a; }}
h1 {{ font-size: 24pt; margin: 0 0 .2em; }}
table {{ border-collapse: collapse; margin: .5em 0 1em; }}
td, th {{ border: 1px solid #888; padding: .2em .8em; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.chart {{ display: flex; align-items: flex-end; height: 5cm; gap: 4px; margin: 1em 0 2em; }}
.bar {{ flex: 1; height: 100%; display: flex; flex-direction: column; justify-content: flex-end;
        position: relative; font-size: 10pt; text-align: center; }}
.bar div {{ background: #0d47a1; }}
.bar b {{ position: absolute; top: 0; width: 100%; }}
.note {{ color: #4a4a4a; font-size: 12pt; }}
@media print {{ body {{ margin: 1cm; }} }}
</style></head><body>
<h1>{e(r.centre_name)}</h1>
<p>{r.day.isoformat()} 日报 <span class="note">（{e(source)}）</span></p>
<table>
<tr><th>指标</th><th>数值</th></tr>
<tr><td>到访人数</td><td>{r.unique_visitors}</td></tr>
<tr><td>在册老人出勤</td><td>{r.attendance} / {r.enrolled}</td></tr>
<tr><td>原价合计(元)</td><td>{r.list_total.yuan_str()}</td></tr>
<tr><td>补贴合计(元)</td><td>{r.subsidy_total.yuan_str()}</td></tr>
<tr><td>老人实付(元)</td><td>{r.paid_total.yuan_str()}</td></tr>
</table>
<h2>每小时到访人次</h2>
<div class="chart">{bars}</div>
<h2>各餐次就餐份数</h2>
<table><tr><th>餐次</th><th>份数</th></tr>{slots}</table>
<h2>最近 7 天</h2>
<table><tr><th>日期</th><th>到访人数</th><th>就餐份数</th><th>补贴(元)</th></tr>{week}</table>
{_visitors_html(r)}
<p class="note">生成时间 {e(rfc3339(datetime.now().astimezone()))}</p>
</body></html>
"""
