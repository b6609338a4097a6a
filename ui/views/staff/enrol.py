"""Face enrolment from the live camera: consent first, re-enrol, un-enrol."""

from __future__ import annotations

from PyQt6.QtWidgets import QCheckBox, QStackedWidget, QVBoxLayout, QWidget

from terminal.core.errors import TerminalError
from ui import theme
from ui.model import EnrolProgress, ResidentSummary
from ui.views.staff.common import Page, ResidentPicker, StaffContext
from ui.views.widgets import button, hbox, label, set_role, vbox


class EnrolPage(Page):
    """Guided capture from the live camera; consent first; re-enrol; un-enrol."""

    def __init__(self, ctx: StaffContext) -> None:
        super().__init__(ctx, "enrol.title")
        self.stack = QStackedWidget()
        self.picker = ResidentPicker(self)
        self.picker.picked.connect(self.select)
        # the selected resident
        self.detail = QWidget()
        self.who = label("", "key")
        self.who.setStyleSheet(f"font-size: {theme.TITLE_PX}px; font-weight: bold;")
        self.consent_face = QCheckBox()
        self.consent_att = QCheckBox()
        self.start_btn = button("", "primary", self.start)
        self.start_btn.setMinimumWidth(360)
        self.unenrol_btn = button("", "danger", self.ask_unenrol)
        self.unenrol_btn.setMinimumWidth(280)
        self.confirm_unenrol = label("", "notice")
        self.yes_btn = button("", "danger", self.unenrol)
        self.no_btn = button("", None, self._cancel_unenrol)
        dl = vbox(self.who, self.consent_face, self.consent_att, spacing=16)
        dl.addLayout(hbox(self.start_btn, self.unenrol_btn, 1))
        dl.addWidget(self.confirm_unenrol)
        dl.addLayout(hbox(self.yes_btn, self.no_btn, 1))
        dl.addStretch(1)
        self.detail.setLayout(dl)
        self._cancel_unenrol()
        # capture
        self.capture = QWidget()
        self.preview_box = QVBoxLayout()
        self.progress = label("", "title")
        self.guide = label("", "guidance")
        self.cancel_btn = button("", "danger", self.cancel_capture)
        right = QWidget()
        right.setFixedWidth(440)
        right.setLayout(vbox(self.progress, self.guide, 1, self.cancel_btn, spacing=18))
        cl = hbox(spacing=20)
        cl.addLayout(self.preview_box, 1)
        cl.addWidget(right)
        self.capture.setLayout(cl)
        for w in (self.picker, self.detail, self.capture):
            self.stack.addWidget(w)
        self.content.addWidget(self.stack)
        self.selected: ResidentSummary | None = None
        self.capturing = False

    def retranslate(self) -> None:
        super().retranslate()
        tr = self.i18n
        self.picker.retranslate()
        self.consent_face.setText(tr("enrol.consent_face"))
        self.consent_att.setText(tr("enrol.consent_attendance"))
        self.unenrol_btn.setText(tr("enrol.unenrol"))
        self.yes_btn.setText(tr("common.yes"))
        self.no_btn.setText(tr("common.no"))
        self.cancel_btn.setText(tr("common.cancel"))
        self.guide.setText(tr("enrol.look"))

    def on_show(self) -> None:
        super().on_show()
        self.stack.setCurrentWidget(self.picker)
        self.picker.search()

    def select(self, r: ResidentSummary) -> None:
        self.selected = r
        tr = self.i18n
        self.who.setText(tr("enrol.for", name=r.name_masked, rid=r.resident_id))
        self.consent_face.setChecked(r.consent_face_pay)
        self.consent_att.setChecked(r.consent_attendance)
        self.start_btn.setText(tr("enrol.reenrol") if r.has_face else tr("enrol.start"))
        self.unenrol_btn.setVisible(r.has_face)
        self._cancel_unenrol()
        self.stack.setCurrentWidget(self.detail)
        self.say("")

    def start(self) -> None:
        r = self.selected
        if r is None or self.capturing:
            return
        if not self.consent_face.isChecked() and not self.consent_att.isChecked():
            self.say(self.i18n("enrol.need_consent"), "error")
            return
        self.capturing = True
        if self.ctx.preview is not None:
            self.preview_box.addWidget(self.ctx.preview)
            self.ctx.preview.show()
        self.progress.setText(self.i18n("enrol.progress", n=0, total=5))
        self.stack.setCurrentWidget(self.capture)

        def done(n: int) -> None:
            self.capturing = False
            self.stack.setCurrentWidget(self.detail)
            self.say(self.i18n("enrol.done", n=n), "ok")
            self.start_btn.setText(self.i18n("enrol.reenrol"))
            self.unenrol_btn.setVisible(True)

        def failed(exc: BaseException) -> None:
            self.capturing = False
            self.stack.setCurrentWidget(self.detail)
            self.say(
                self.i18n(
                    "enrol.failed",
                    message=str(exc) if isinstance(exc, TerminalError) else type(exc).__name__,
                ),
                "error",
            )

        self.ctx.tasks.run(
            self.ctx.backend.enrol,
            r.resident_id,
            self.ctx.staff.staff_id,
            consent_face_pay=self.consent_face.isChecked(),
            consent_attendance=self.consent_att.isChecked(),
            on_done=done,
            on_error=failed,
        )

    def on_progress(self, p: EnrolProgress) -> None:
        if not self.capturing:
            return
        self.progress.setText(self.i18n("enrol.progress", n=p.good, total=p.target))
        self.guide.setText(self.i18n(p.guidance) if p.guidance else self.i18n("enrol.look"))
        set_role(self.guide, "ok" if p.guidance == "face.quality.ok" else "guidance")

    def cancel_capture(self) -> None:
        self.ctx.tasks.run(self.ctx.backend.cancel_enrol)

    def ask_unenrol(self) -> None:
        if self.selected is None:
            return
        self.confirm_unenrol.setText(
            self.i18n("enrol.unenrol_confirm", name=self.selected.name_masked)
        )
        for w in (self.confirm_unenrol, self.yes_btn, self.no_btn):
            w.show()

    def _cancel_unenrol(self) -> None:
        for w in (self.confirm_unenrol, self.yes_btn, self.no_btn):
            w.hide()

    def unenrol(self) -> None:
        r = self.selected
        if r is None:
            return
        self._cancel_unenrol()

        def done(_n: int) -> None:
            self.say(self.i18n("enrol.unenrolled"), "ok")
            self.unenrol_btn.hide()
            self.start_btn.setText(self.i18n("enrol.start"))

        self.run(self.ctx.backend.unenrol, r.resident_id, self.ctx.staff.staff_id, done=done)
