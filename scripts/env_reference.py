"""Print the environment variables of every service and tool as Markdown tables.

The settings reference in deploy/OPERATIONS.md is this script's output (between
the markers ``<!-- env:begin -->`` and ``<!-- env:end -->``); a test fails when
it differs from what the settings classes say, so the reference stays true.
``--write`` updates it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from chassis.config import PubSubSettings
from chassis.events.relay_settings import RelaySettings
from identity.config import IdentitySettings
from ledger.config import LedgerSettings
from payments.config import PaymentsSettings
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python
from pydantic_settings import BaseSettings
from sandbox_bank.config import BankSettings, FaultSettings

REFERENCE = Path(__file__).resolve().parent.parent / "deploy" / "OPERATIONS.md"
BEGIN, END = "<!-- env:begin -->", "<!-- env:end -->"

SECTIONS: list[tuple[str, type[BaseSettings]]] = [
    ("identity", IdentitySettings),
    ("ledger", LedgerSettings),
    ("payments", PaymentsSettings),
    ("sandbox bank", BankSettings),
    ("sandbox bank faults", FaultSettings),
    ("outbox relay (`astra-relay`)", RelaySettings),
    ("Pub/Sub (every service and relay)", PubSubSettings),
]


def variables(settings: type[BaseSettings]) -> list[tuple[str, str, str]]:
    prefix = settings.model_config.get("env_prefix", "")
    return [
        (f"{prefix}{name}".upper(), default_text(field), _description(settings, name))
        for name, field in settings.model_fields.items()
    ]


def default_text(field: FieldInfo) -> str:
    """The default as one would write the variable, or what leaving it unset means.

    Never pydantic's internal markers: a field with a default factory shows what
    the factory makes, a field without a default says it is required.
    """
    if field.is_required():
        return "(required)"
    if field.default_factory_takes_validated_data:
        return "(derived from the other settings)"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, SecretStr):
        return "(unset)" if not value.get_secret_value() else "(set; secret)"
    # Enums, durations and paths as text; numbers, booleans, maps and lists as JSON,
    # which is how the settings parse them from the environment.
    value = to_jsonable_python(value)
    if value is None or value == "":
        return "(unset)"
    return f"`{value}`" if isinstance(value, str) else f"`{json.dumps(value)}`"


def _description(settings: type[BaseModel], name: str) -> str:
    """The field's description, or the one it overrides (ports and URLs keep the base's)."""
    for cls in settings.__mro__:
        fields = getattr(cls, "model_fields", {})
        if name in fields and fields[name].description:
            return str(fields[name].description).strip()
    return ""


def markdown() -> str:
    lines: list[str] = []
    for title, settings in SECTIONS:
        lines += [f"### {title}", "", "| variable | default | meaning |", "|---|---|---|"]
        lines += [f"| `{n}` | {d} | {m.replace('|', '/')} |" for n, d, m in variables(settings)]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def generated_part(document: str) -> str:
    """The text between the markers (the script's output when the reference is current)."""
    if document.count(BEGIN) != 1 or document.count(END) != 1:
        raise ValueError(f"{REFERENCE.name} must hold {BEGIN} and {END} once each")
    return document.partition(BEGIN)[2].partition(END)[0].removeprefix("\n")


def main() -> None:
    text = markdown()
    if "--write" in sys.argv:
        document = REFERENCE.read_text()
        generated_part(document)  # the markers are there, once each
        head, _, rest = document.partition(BEGIN)
        tail = rest.partition(END)[2]
        REFERENCE.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
