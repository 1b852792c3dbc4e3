"""The settings reference shows every default as one would write it, never pydantic's markers."""

from __future__ import annotations

import re
import sys
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import env_reference  # noqa: E402


class Level(StrEnum):
    INFO = "INFO"


def _derived(data: dict[str, Any]) -> str:
    return f"astra-{data['context']}-events"


class Example(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXAMPLE_")

    context: str = Field(description="required")
    limits: dict[str, int] = Field(default_factory=dict, description="a map from a factory")
    names: list[str] = Field(default_factory=list, description="a list from a factory")
    fees: dict[str, int] = Field(default_factory=lambda: {"EUR": 25}, description="a full map")
    topic: str = Field(default_factory=_derived, description="from the other settings")
    seed: int | None = Field(default=None, description="none")
    source: str = Field(default="", description="empty")
    secret: SecretStr = Field(default=SecretStr(""), description="an empty secret")
    enabled: bool = Field(default=True, description="a switch")
    ratio: float = Field(default=0.9, description="a float")
    port: int = Field(default=50052, description="an int")
    host: str = Field(default="127.0.0.1", description="a string")
    level: Level = Field(default=Level.INFO, description="an enum")
    window: timedelta = Field(default=timedelta(seconds=30), description="a duration")


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("context", "(required)"),
        ("limits", "`{}`"),
        ("names", "`[]`"),
        ("fees", '`{"EUR": 25}`'),
        ("topic", "(derived from the other settings)"),
        ("seed", "(unset)"),
        ("source", "(unset)"),
        ("secret", "(unset)"),
        ("enabled", "`true`"),
        ("ratio", "`0.9`"),
        ("port", "`50052`"),
        ("host", "`127.0.0.1`"),
        ("level", "`INFO`"),
        ("window", "`PT30S`"),
    ],
)
def test_a_default_is_shown_as_the_variable_would_be_written(name: str, shown: str) -> None:
    assert env_reference.default_text(Example.model_fields[name]) == shown


def test_the_rows_name_the_variables_with_their_prefix() -> None:
    rows = {name: default for name, default, _ in env_reference.variables(Example)}
    assert rows["EXAMPLE_LIMITS"] == "`{}`"
    assert rows["EXAMPLE_CONTEXT"] == "(required)"
    assert len(rows) == len(Example.model_fields)


# What a default may look like in the reference: a value in backticks or a word in brackets.
SHOWN = re.compile(r"`[^`]+`|\((required|unset|derived from the other settings|set; secret)\)")


def test_no_default_of_the_suite_shows_an_internal_marker() -> None:
    shown = [
        (name, default)
        for _, settings in env_reference.SECTIONS
        for name, default, _ in env_reference.variables(settings)
    ]
    odd = [
        (name, default)
        for name, default in shown
        if not SHOWN.fullmatch(default) or re.search(r"Undefined|object at|<|Secret", default)
    ]
    assert len(shown) > 100
    assert odd == []
    # The maps of payments come from factories: they show what the factory makes.
    assert ("PAYMENTS_FRAUD_MAX_AMOUNT", "`{}`") in shown
    assert ("RELAY_DATABASE_URL", "(required)") in shown
