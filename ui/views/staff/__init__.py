"""Staff mode: PIN pad, menu of tasks and the task pages, one module per page.

Every page uses the same elder-friendly sizes as the senior screens (staff in a
day-care canteen are often older themselves). Every back-end call goes through
the ``TaskRunner`` (worker thread); pages show "please wait" meanwhile.

The pages:

- ``pin``: :class:`PinPage`, the PIN pad that opens staff mode;
- ``home``: :class:`StaffHome`, the menu of tasks (the manager's button only for managers);
- ``enrol``: :class:`EnrolPage`, face enrolment from the live camera (consent first),
  re-enrolment and un-enrolment;
- ``transactions``: :class:`TransactionsPage`, today's transactions, void (with a
  reason) and receipt reprint;
- ``topup``: :class:`TopupPage`, cash top-up of a resident's wallet;
- ``lookup``: :class:`LookupPage`, staff lookup payment (pay for a resident without a face);
- ``menu``: :class:`MenuPage`, today's canteen menu (prices, presets);
- ``status``: :class:`StatusPage`, device status and "sync now";
- ``footfall``: :class:`FootfallLinePage`, the footfall camera's picture with the
  configured counting line, to set the line on site.

``common`` holds what the pages share: :class:`StaffContext`, the :class:`Page`
frame (title, message line, back button, back-end calls on the worker thread),
the :class:`ResidentPicker` and the small helpers ``error_text`` and ``touch_list``.
The centre manager's page is ``ui.views.manager``.
"""
