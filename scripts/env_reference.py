"""Print the environment variables of every service and tool as Markdown tables.

The README's configuration section is this script's output (between the
markers ``<!-- env:begin -->`` and ``<!-- env:end -->``); a test fails when a
setting is missing there, so the README stays true. ``--write`` updates it.
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
from pydantic_settings import BaseSettings
from sandbox_bank.config import BankSettings, FaultSettings

README = Path(__file__).resolve().parent.parent / "README.md"
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
    rows = []
    for name, field in settings.model_fields.items():
        if field.is_required():
            default = "(required)"
        else:
            value = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
            default = json.dumps(value) if isinstance(value, dict | list) else str(value)
            default = f"`{default}`" if default not in ("", "None") else "(unset)"
        rows.append((f"{prefix}{name}".upper(), default, _description(settings, name)))
    return rows


def _description(settings: type[BaseSettings], name: str) -> str:
    """The field's description, or the one it overrides (ports and URLs keep the base's)."""
    for cls in settings.__mro__:
        fields = getattr(cls, "model_fields", {})
        if name in fields and fields[name].description:
            return str(fields[name].description).strip()
    return ""


def markdown() -> str:
    lines: list[str] = []
    for title, settings in SECTIONS:
        lines += [f"#### {title}", "", "| variable | default | meaning |", "|---|---|---|"]
        lines += [f"| `{n}` | {d} | {m.replace('|', '/')} |" for n, d, m in variables(settings)]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    text = markdown()
    if "--write" in sys.argv:
        readme = README.read_text()
        head, _, rest = readme.partition(BEGIN)
        _, _, tail = rest.partition(END)
        README.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")
    else:
        print(text)


if __name__ == "__main__":
    main()
