"""Composition root helpers: build each service once, lazily, from Settings.

Commands and the kiosk ask this object for what they need; nothing here is
created until used, so ``care-terminal residents list`` never loads a model.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING

from terminal.config.settings import Settings, load_settings
from terminal.core.clock import Clock, SystemClock
from terminal.db.crypto import FieldCipher, load_or_create_key
from terminal.db.database import Database, open_database
from terminal.db.outbox import Outbox
from terminal.db.roster import RosterStore

if TYPE_CHECKING:
    from face.recognise import Recogniser
    from face.store import TemplateStore
    from payment.flow import FlowConfig
    from payment.store import PaymentStore


class Services:
    def __init__(self, settings: Settings | None = None, clock: Clock | None = None) -> None:
        self.settings = settings or load_settings()
        self.clock: Clock = clock or SystemClock()

    @cached_property
    def db(self) -> Database:
        return open_database(self.settings.database_url)

    @cached_property
    def cipher(self) -> FieldCipher:
        return FieldCipher(load_or_create_key(self.settings.data_key_file))

    @cached_property
    def roster(self) -> RosterStore:
        return RosterStore(self.cipher)

    @cached_property
    def outbox(self) -> Outbox:
        return Outbox(self.settings.centre.device_id, self.settings.centre.centre_id)

    @cached_property
    def templates(self) -> TemplateStore:
        from face.store import TemplateStore

        return TemplateStore(self.cipher)

    @cached_property
    def recogniser(self) -> Recogniser:
        """Verifies the model pack (refusing a tampered one), loads the models and
        the enrolled gallery."""
        from face.recognise import Recogniser

        rec = Recogniser.from_settings(self.settings.face_pack_dir, self.settings.face)
        with self.db.sessions() as session:
            rec.load_gallery(self.templates.load_all(session, pack_id=rec.pack_id))
        return rec

    @cached_property
    def flow_config(self) -> FlowConfig:
        from payment.domain import SlotWindows
        from payment.flow import FlowConfig, LivenessPolicy
        from payment.limits import ExposureLimits
        from terminal.core.money import Money

        p = self.settings.payment
        return FlowConfig(
            centre_name=self.settings.centre.centre_name,
            slot_windows=SlotWindows.from_dict(dict(p.slot_windows)),
            liveness=LivenessPolicy(reject_below=p.liveness_reject_below),
            limits=ExposureLimits(
                max_per_transaction=Money(p.max_per_transaction_fen),
                max_unsynced_per_resident=Money(p.max_unsynced_per_resident_fen),
                max_unsynced_per_terminal=Money(p.max_unsynced_per_terminal_fen),
            ),
            large_amount=Money(p.large_amount_fen),
            overdraft_limit=Money(p.overdraft_limit_fen),
            duplicate_guard_any_meal=p.duplicate_guard_any_meal,
        )

    @cached_property
    def payment(self) -> PaymentStore:
        from payment.store import PaymentStore

        return PaymentStore(
            self.db.sessions,
            self.outbox,
            self.roster,
            device_id=self.settings.centre.device_id,
            centre_id=self.settings.centre.centre_id,
            clock=self.clock,
            config=self.flow_config,
            match_threshold=self.settings.face.accept_threshold,
            id_number_hmac=self._id_number_hmac,
            acked_through=self.acked_through,
        )

    @cached_property
    def acked_through(self) -> Callable[[], int]:
        """Highest kiosk record the platform has settled (from the agent's sync.db)."""
        from sync.store.status import AckedThrough

        return AckedThrough(self.settings.sync_db_url)

    def _id_number_hmac(self, id_number: str) -> str:
        """The spec's pseudonymised ID number: HMAC with the district pepper (a
        32-byte secret provisioned per district; created locally for demos)."""
        from sync.auth import id_number_hmac

        return id_number_hmac(self._district_pepper, id_number)

    @cached_property
    def _district_pepper(self) -> bytes:
        return load_or_create_key(self.settings.data_dir / "keys" / "district-pepper")

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.close()
