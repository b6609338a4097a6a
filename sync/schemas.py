"""Load the published data spec (``sync/spec/openapi.yaml``) and validate messages.

Both sides use this module: the terminal validates every reply it gets (and,
by default, every request it sends) and the reference platform validates
every request and every reply it makes. Validation uses JSON Schema draft
2020-12 (the dialect of OpenAPI 3.1) through ``jsonschema``.

Error texts name the failing location and rule but never echo field values,
so they are safe to log, to store as a dead-letter reason and to send back to
a device (a value could be a name or a card number).

Speed: ``jsonschema`` needs about 1.8 ms per meal record here, which alone would
cap the platform at ~500 records/s. When the optional ``jsonschema-rs`` (a
compiled draft 2020-12 validator) is installed, :func:`is_valid` asks it first
(microseconds); every "invalid" verdict is confirmed by ``jsonschema``, which
also writes every error text, so ``jsonschema`` stays the authority for what
is refused. A test cross-checks both on valid and mutated messages. Set
``CARE_SYNC_PURE_JSONSCHEMA=1`` to use ``jsonschema`` alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any, Final

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from terminal.core.errors import TerminalError

SPEC_PATH: Final = Path(__file__).with_name("spec") / "openapi.yaml"
_BASE_URI: Final = "urn:care-terminal:sync-spec"

RECORD_KINDS: Final = (
    "meal_transaction",
    "wallet_topup",
    "meal_void",
    "meal_refund",
    "footfall_hourly",
    "attendance",
    "enrolment",
    "unenrolment",
    "heartbeat",
    "ota_status",
)
# The kinds of the device's own ``agent`` stream; every other kind is on ``kiosk``.
# The spec binds them in RecordEnvelope (a test holds this to it).
AGENT_KINDS: Final = frozenset({"heartbeat", "ota_status"})


def stream_of(kind: str) -> str:
    """The stream a record kind belongs to."""
    return "agent" if kind in AGENT_KINDS else "kiosk"


PAYLOAD_SCHEMAS: Final = {
    "meal_transaction": "MealTransaction",
    "wallet_topup": "WalletTopup",
    "meal_void": "MealVoid",
    "meal_refund": "MealRefund",
    "footfall_hourly": "FootfallHourly",
    "attendance": "Attendance",
    "enrolment": "Enrolment",
    "unenrolment": "Unenrolment",
    "heartbeat": "Heartbeat",
    "ota_status": "OtaStatus",
    "district_wallet_topup": "DistrictWalletTopup",
}
DATASET_KINDS: Final = (
    "roster",
    "consent_changes",
    "subsidy_policy",
    "menu",
    "terminal_config",
    "centre_info",
    "district_roster",  # since 1.2 (city-wide meals)
)
STREAMS: Final = ("kiosk", "agent")


class SchemaViolation(TerminalError):
    """A message does not match the published spec. ``problems`` lists where and
    which rule failed (never the offending values)."""

    code = "schema_invalid"

    def __init__(self, what: str, problems: list[str]) -> None:
        self.what = what
        self.problems = problems
        shown = "; ".join(problems[:3]) + (" ..." if len(problems) > 3 else "")
        super().__init__(f"{what} does not match the data spec: {shown}")


@cache
def spec() -> dict[str, Any]:
    """The parsed OpenAPI document."""
    with SPEC_PATH.open("rb") as fh:
        doc = yaml.safe_load(fh)
    if not isinstance(doc, dict):  # pragma: no cover - the file is part of the package
        raise TerminalError(f"{SPEC_PATH} is not a mapping")
    return doc


def spec_version() -> str:
    return str(spec()["info"]["version"])


def schema_names() -> list[str]:
    return sorted(spec()["components"]["schemas"])


@cache
def _registry() -> Registry[Any]:
    resource = DRAFT202012.create_resource(spec())
    registry: Registry[Any] = Registry().with_resource(_BASE_URI, resource)
    return registry


def _is_json_integer(checker: Any, instance: Any) -> bool:
    """The spec's ``integer``: a JSON number written without fraction or exponent.
    JSON Schema lets ``1.0`` pass as an integer; the data spec does not (a
    ``seq`` of ``1.0`` would be stored, hashed differently and break the chain;
    money is integer fen). ``True``/``False`` are not integers either."""
    return isinstance(instance, int) and not isinstance(instance, bool)


_StrictValidator: Final = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_json_integer),
)


@cache
def validator(name: str) -> Draft202012Validator:
    """A compiled validator for ``#/components/schemas/<name>`` (integers strict)."""
    if name not in spec()["components"]["schemas"]:
        raise KeyError(f"no schema {name!r} in the data spec")
    v: Draft202012Validator = _StrictValidator(
        {"$ref": f"{_BASE_URI}#/components/schemas/{name}"}, registry=_registry()
    )
    return v


def _describe(err: ValidationError) -> str:
    where = err.json_path
    rule = str(err.validator)
    if rule == "required" and isinstance(err.instance, Mapping):
        wanted = err.validator_value if isinstance(err.validator_value, list) else []
        missing = [str(k) for k in wanted if k not in err.instance]
        return f"{where}: missing {', '.join(missing)}"
    if rule == "additionalProperties" and isinstance(err.instance, Mapping):
        allowed = err.schema.get("properties", {}) if isinstance(err.schema, Mapping) else {}
        extra = sorted(str(k) for k in err.instance if k not in allowed)[:5]
        return f"{where}: unexpected field(s) {', '.join(extra)}"
    if rule == "type":
        if (
            isinstance(err.instance, float)
            and err.instance.is_integer()
            and "integer" in str(err.validator_value)
        ):
            return f"{where}: must be a JSON integer (no fraction or exponent, 1 not 1.0)"
        return f"{where}: must be of type {err.validator_value}"
    if rule in ("minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems"):
        return f"{where}: violates {rule} {err.validator_value}"
    if rule in ("enum", "const"):
        return f"{where}: not an allowed value"
    if rule == "pattern":
        return f"{where}: does not match the required format"
    return f"{where}: fails '{rule}'"


def _leaf_errors(errors: Iterable[ValidationError]) -> Iterable[ValidationError]:
    for err in errors:
        if err.context and err.validator in ("oneOf", "anyOf"):
            # Report the branch that got furthest, not "matches none of".
            best = max(err.context, key=lambda e: len(e.absolute_path))
            yield best
        else:
            yield err


def problems(name: str, instance: Any, limit: int = 10) -> list[str]:
    """Value-free descriptions of why ``instance`` fails schema ``name`` ([] if valid)."""
    return _problems_of(validator(name), instance, limit)


def _problems_of(v: Draft202012Validator, instance: Any, limit: int) -> list[str]:
    out: list[str] = []
    for err in _leaf_errors(v.iter_errors(instance)):
        out.append(_describe(err))
        if len(out) >= limit:
            break
    return sorted(set(out))


@cache
def _fast_validator(name: str) -> Any | None:
    if os.environ.get("CARE_SYNC_PURE_JSONSCHEMA"):
        return None
    try:
        import jsonschema_rs
    except ImportError:
        return None
    root = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": f"#/components/schemas/{name}",
        "components": {"schemas": spec()["components"]["schemas"]},
    }
    return jsonschema_rs.Draft202012Validator(root, validate_formats=False)


def accelerated() -> bool:
    """True when the compiled fast path is in use."""
    return _fast_validator("Error") is not None


def _has_integral_float(doc: Any) -> bool:
    """True if ``doc`` holds a float with no fraction (``1.0``) anywhere: the
    compiled validator takes it for an integer, so such a message is left to
    ``jsonschema`` with the strict integer type (floats elsewhere are fine)."""
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if item.is_integer():
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _shift_integral_floats(doc: Any, delta: float) -> Any:
    """A copy of ``doc`` with every float that has no fraction moved by ``delta``."""
    if isinstance(doc, float):
        return doc + delta if doc.is_integer() else doc
    if isinstance(doc, dict):
        return {k: _shift_integral_floats(v, delta) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_shift_integral_floats(v, delta) for v in doc]
    return doc


def _fast_is_valid(fast: Any, instance: Any) -> bool:
    """The compiled validator's answer, made strict about integers.

    It takes ``1.0`` for an integer. So a message holding such floats is checked
    twice, with each of them moved by +0.5 and by -0.5: a float that stands where
    the spec says integer is then no integer and fails; one where the spec says
    number passes both times only if ``x - 0.5`` and ``x + 0.5`` are both within
    its bounds, and then so is ``x`` (the spec's number constraints are intervals).
    A message that fails here is judged by ``jsonschema`` with the strict integer
    type, so this never accepts what the strict validator refuses; it only keeps
    the common case (a score of ``1.0``) on the fast path."""
    if not _has_integral_float(instance):
        return bool(fast.is_valid(instance))
    return bool(
        fast.is_valid(_shift_integral_floats(instance, 0.5))
        and fast.is_valid(_shift_integral_floats(instance, -0.5))
    )


def is_valid(name: str, instance: Any) -> bool:
    fast = _fast_validator(name)
    if fast is not None and _fast_is_valid(fast, instance):
        return True
    return bool(validator(name).is_valid(instance))


def validate(name: str, instance: Any, what: str | None = None) -> None:
    """Raise :class:`SchemaViolation` unless ``instance`` matches schema ``name``."""
    if is_valid(name, instance):
        return
    raise SchemaViolation(what or name, problems(name, instance))


def validate_payload(kind: str, payload: Any) -> None:
    """Check a record payload of ``kind`` (for the modules that build records)."""
    if kind not in PAYLOAD_SCHEMAS:
        raise SchemaViolation(f"record kind {kind!r}", ["unknown record kind"])
    validate(PAYLOAD_SCHEMAS[kind], payload, f"{kind} payload")


def validate_record(envelope: Any) -> None:
    """Check one record: the envelope and the payload of its ``kind`` (the spec's
    ``Record``, a ``oneOf`` with a discriminator on ``kind``)."""
    validate("Record", envelope, "record")


@cache
def _batch_shell_validator() -> Draft202012Validator:
    """``BatchRequest`` with each record item only an object: what the platform
    refuses a batch for as a whole (each record is then checked against
    ``Record`` on its own and refused per record)."""
    schema = json.loads(
        json.dumps(spec()["components"]["schemas"]["BatchRequest"]).replace(
            '"#/components/', f'"{_BASE_URI}#/components/'
        )
    )
    schema["properties"]["records"]["items"] = {"type": "object"}
    v: Draft202012Validator = _StrictValidator(schema, registry=_registry())
    return v


def batch_shell_problems(doc: Any, limit: int = 10) -> list[str]:
    """Value-free problems of a batch's own fields ([] if the batch as a whole is
    acceptable; its records are not looked into)."""
    return _problems_of(_batch_shell_validator(), doc, limit)
