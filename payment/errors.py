"""Errors raised by the pure payment modules.

Messages are fit to show to staff and to log: they never carry a name, an ID
number or a phone number (resident ids are opaque roster keys and may appear).
"""

from __future__ import annotations

from terminal.core.errors import TerminalError


class PaymentError(TerminalError):
    """Root of the payment domain errors."""

    code = "payment_error"


class DomainError(PaymentError):
    """A resident, menu or slot value that cannot be used."""

    code = "payment_data_invalid"


class MenuError(DomainError):
    code = "menu_invalid"


class PolicyError(PaymentError):
    """A subsidy policy document that does not validate."""

    code = "policy_invalid"


class LimitsError(PaymentError):
    code = "limits_invalid"


class LedgerError(PaymentError):
    """An entry that would break a ledger invariant. ``code`` says which one."""

    code = "ledger_invalid"
