"""The centre manager's view: today's flow and the last 7 days (Qt Charts)."""

from __future__ import annotations

from PyQt6.QtCharts import (
    QBarCategoryAxis,
    QBarSeries,
    QBarSet,
    QChart,
    QChartView,
    QValueAxis,
)
from PyQt6.QtCore import QMargins, Qt
from PyQt6.QtGui import QColor, QFont, QPainter
from PyQt6.QtWidgets import QGridLayout

from ui import theme
from ui.model import ManagerReport
from ui.presenters.manager import ManagerVM, present_manager
from ui.views.staff.common import Page, StaffContext
from ui.views.widgets import button, card, hbox, label, vbox


def _chart(title: str, categories: list[str], values: list[int], colour: str) -> QChart:
    chart = QChart()
    chart.setTitle(title)
    tf = QFont(chart.titleFont())
    tf.setPixelSize(theme.SMALL_PX)
    tf.setBold(True)
    chart.setTitleFont(tf)
    chart.setTitleBrush(QColor(theme.PALETTE.text))
    chart.legend().hide()  # type: ignore[union-attr]
    chart.setBackgroundBrush(QColor(theme.PALETTE.surface))
    chart.setAnimationOptions(QChart.AnimationOption.NoAnimation)
    chart.setMargins(QMargins(4, 4, 4, 4))
    bars = QBarSet("")
    bars.append([float(v) for v in values])
    bars.setColor(QColor(colour))
    bars.setLabelColor(QColor(theme.PALETTE.text))
    lf = QFont(bars.labelFont())
    lf.setPixelSize(theme.SMALL_PX)
    bars.setLabelFont(lf)
    series = QBarSeries()
    series.append(bars)
    series.setLabelsVisible(True)
    series.setLabelsPosition(QBarSeries.LabelsPosition.LabelsOutsideEnd)
    chart.addSeries(series)
    axis_x = QBarCategoryAxis()
    axis_x.append(categories)
    af = QFont(axis_x.labelsFont())
    af.setPixelSize(theme.SMALL_PX)
    axis_x.setLabelsFont(af)
    axis_y = QValueAxis()
    axis_y.setLabelFormat("%d")
    axis_y.setLabelsFont(af)
    chart.addAxis(axis_x, Qt.AlignmentFlag.AlignBottom)
    chart.addAxis(axis_y, Qt.AlignmentFlag.AlignLeft)
    series.attachAxis(axis_x)
    series.attachAxis(axis_y)
    top = max(values, default=0)
    axis_y.setRange(0, max(4, int(top * 1.3) + 1))  # room above the tallest bar for its label
    axis_y.applyNiceNumbers()
    return chart


class ManagerPage(Page):
    def __init__(self, ctx: StaffContext) -> None:
        super().__init__(ctx, "manager.title")
        self.source = label("", "muted")
        self.visitors = label("", None)
        self.figures = QGridLayout()
        self.figures.setHorizontalSpacing(16)
        self.figures.setVerticalSpacing(0)
        fig_card = card()
        fl = vbox(spacing=0, margins=12)
        fl.addLayout(self.figures)
        fig_card.setLayout(fl)
        self.hour_view = QChartView()
        self.week_view = QChartView()
        for v in (self.hour_view, self.week_view):
            v.setRenderHint(QPainter.RenderHint.Antialiasing)
            v.setMinimumHeight(180)  # fits 800 px with the visitors and message lines shown
        self.csv_btn = button("", None, lambda: self.export("csv"))
        self.html_btn = button("", None, lambda: self.export("html"))
        self.refresh_btn = button("↻", None, self.refresh)
        for i, b in enumerate((self.refresh_btn, self.csv_btn, self.html_btn)):
            self.header.insertWidget(2 + i, b)
        charts = hbox(spacing=12)
        charts.addWidget(self.hour_view, 2)
        charts.addWidget(self.week_view, 1)
        self.content.addWidget(fig_card)
        self.content.addWidget(self.source)
        self.content.addWidget(self.visitors)
        self.content.addLayout(charts, 1)
        self.report: ManagerReport | None = None
        self.vm: ManagerVM | None = None

    def retranslate(self) -> None:
        super().retranslate()
        self.csv_btn.setText(self.i18n("manager.export_csv"))
        self.html_btn.setText(self.i18n("manager.export_html"))

    def on_show(self) -> None:
        super().on_show()
        self.refresh()

    def refresh(self) -> None:
        self.run(self.ctx.backend.manager_report, done=self.show_report)

    def show_report(self, report: ManagerReport) -> None:
        self.report = report
        vm = present_manager(report, self.i18n)
        self.vm = vm
        self.source.setText("   ·   ".join(t for t in (vm.meals_detail, vm.source_note) if t))
        self.visitors.setText(vm.visitors)
        self.visitors.setVisible(bool(vm.visitors))
        while self.figures.count():
            item = self.figures.takeAt(0)
            w = item.widget() if item is not None else None
            if w is not None:
                w.hide()
                w.deleteLater()
        for i, (name, value) in enumerate(vm.figures):
            n = label(name, "muted", wrap=False, align="center")
            v = label(value, None, wrap=False, align="center")
            v.setStyleSheet(f"font-size: {theme.TITLE_PX - 8}px; font-weight: bold;")
            self.figures.addWidget(n, 0, i)
            self.figures.addWidget(v, 1, i)
        old_h, old_w = self.hour_view.chart(), self.week_view.chart()
        self.hour_view.setChart(
            _chart(vm.hour_title, list(vm.hour_labels), list(vm.hour_values), theme.PALETTE.banner)
        )
        self.week_view.setChart(
            _chart(vm.week_title, list(vm.week_labels), list(vm.week_values), theme.PALETTE.primary)
        )
        for old in (old_h, old_w):
            if old is not None:
                old.deleteLater()

    def export(self, fmt: str) -> None:
        self.run(
            self.ctx.backend.export_report,
            fmt,
            self.ctx.staff.staff_id,
            done=lambda path: self.say(self.i18n("manager.exported", path=str(path)), "ok"),
        )


__all__ = ["ManagerPage"]
