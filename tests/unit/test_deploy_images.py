"""The Python services' image: one Dockerfile, built per service with build arguments;
each image small, unprivileged, and carrying only that service's packages."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"
DOCKERFILE = DOCKER / "python-service.Dockerfile"
IMAGES = {
    # image (tag): (package, its source folder, whether it has migrations)
    "astra-ledger": ("astra-ledger", "services/ledger", True),
    "astra-identity": ("astra-identity", "services/identity", True),
    "astra-payments": ("astra-payments", "services/payments", True),
    "astra-sandbox-bank": ("astra-sandbox-bank", "services/sandbox_bank", False),
}
# Requirements only one service has: no other image may carry them.
OWN_REQUIREMENTS = {
    "astra-payments": {"pybreaker"},
    "astra-sandbox-bank": {"starlette", "uvicorn"},
}
DEV_TOOLS = {"pytest", "mypy", "ruff", "grpcio-tools", "matplotlib", "hypothesis", "astra-testkit"}


def build_commands() -> dict[str, dict[str, str]]:
    """The build arguments of each image, by tag, as deploy/README.md gives the commands."""
    commands = {}
    for line in (ROOT / "deploy" / "README.md").read_text().splitlines():
        if not line.startswith("docker build "):
            continue
        words = shlex.split(line)
        assert words[words.index("-f") + 1] == str(DOCKERFILE.relative_to(ROOT)), line
        tag = words[words.index("-t") + 1]
        commands[tag] = dict(
            words[i + 1].split("=", 1) for i, word in enumerate(words) if word == "--build-arg"
        )
    return commands


def _instructions(name: str) -> list[tuple[str, str]]:
    """The Dockerfile's instructions for image ``name``, its build arguments substituted."""
    text = DOCKERFILE.read_text()
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = [line.strip() for line in joined.splitlines()]
    instructions = [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]
    values = {
        arg.split("=", 1)[0]: arg.split("=", 1)[1]
        for op, arg in instructions
        if op == "ARG" and "=" in arg
    }
    values.update(build_commands()[name])

    def substitute(match: re.Match[str]) -> str:
        return values.get(match.group(1), match.group(0))  # $PATH and the like stay

    return [(op, re.sub(r"\$\{?([A-Z_]+)\}?", substitute, arg)) for op, arg in instructions]


def _final_stage(name: str) -> list[tuple[str, str]]:
    instructions = _instructions(name)
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def test_one_dockerfile_builds_every_python_service() -> None:
    assert [p.name for p in DOCKER.glob("*Dockerfile*")] == [DOCKERFILE.name]
    assert set(build_commands()) == set(IMAGES)
    services = {f"services/{p.parent.name}" for p in ROOT.glob("services/*/pyproject.toml")}
    assert {folder for _, folder, _ in IMAGES.values()} == services


@pytest.mark.parametrize("name", IMAGES)
def test_the_image_is_built_in_two_stages_and_runs_as_a_numeric_non_root_user(
    name: str,
) -> None:
    froms = [arg for op, arg in _instructions(name) if op == "FROM"]
    assert len(froms) == 2
    assert froms[0].endswith("AS build")
    final = _final_stage(name)
    (user,) = [arg for op, arg in final if op == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit()
    assert int(uid) >= 1000
    # nothing after USER runs as root again
    assert [op for op, _ in final[[op for op, _ in final].index("USER") :]].count("USER") == 1
    # the final stage takes only the virtual environment and the service's own folder
    copies = [arg for op, arg in final if op == "COPY"]
    _, folder, _ = IMAGES[name]
    assert sorted(copies) == sorted(
        ["--from=build /opt/venv /opt/venv", f"--from=build /app/{folder} /app/{folder}"]
    )


@pytest.mark.parametrize("name", IMAGES)
def test_the_image_installs_only_its_own_package_and_runs_its_console_script(
    name: str,
) -> None:
    package, folder, has_migrations = IMAGES[name]
    instructions = _instructions(name)
    copied = [arg.split()[0] for op, arg in instructions if op == "COPY" and "--from" not in arg]
    services = [c for c in copied if c.startswith("services/")]
    assert services == [folder]
    run = " ".join(arg for op, arg in instructions if op == "RUN")
    assert f"uv export --frozen --package {package} --no-dev" in run
    assert "--require-hashes" in run
    assert f"--editable ./{folder}" in run
    project = tomllib.loads((ROOT / folder / "pyproject.toml").read_text())["project"]
    assert project["name"] == package
    # The entrypoint is the package's console script, by a link of one name for every image.
    (entrypoint,) = [arg for op, arg in instructions if op == "ENTRYPOINT"]
    assert entrypoint == '["astra-service"]'
    assert f"ln -s {package} /opt/venv/bin/astra-service" in run
    assert package in project["scripts"]
    assert (ROOT / folder / "migrations" / "env.py").exists() is has_migrations


@pytest.mark.parametrize("name", IMAGES)
def test_the_image_listens_on_every_interface_through_a_documented_setting(name: str) -> None:
    listen = build_commands()[name]["LISTEN"]
    final = " ".join(arg for op, arg in _final_stage(name) if op == "ENV")
    assert f"{listen}=0.0.0.0" in final
    assert f"`{listen}`" in (ROOT / "deploy" / "OPERATIONS.md").read_text()  # a setting


def _uv() -> str:
    found = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    if not Path(found).exists():
        pytest.fail("uv is needed (make venv installs it into .tools/bin)")
    return found


@pytest.mark.parametrize("name", IMAGES)
def test_the_locked_requirements_of_the_image_leave_out_other_services_and_dev_tools(
    name: str,
) -> None:
    package, _, _ = IMAGES[name]
    result = subprocess.run(
        [_uv(), "export", "--frozen", "--package", package, "--no-dev", "--no-hashes",
         "--no-emit-workspace", "--no-header", "--no-annotate"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    requirements = {
        re.split(r"[=<>; ]", line.strip(), maxsplit=1)[0].lower()
        for line in result.stdout.splitlines()
        if line.strip() and not line.startswith(("#", "-"))
    }
    assert {"grpcio", "protobuf", "structlog"} <= requirements
    assert not requirements & DEV_TOOLS
    for other, own in OWN_REQUIREMENTS.items():
        if other != package:
            assert not requirements & own, (package, requirements & own)
        else:
            assert own <= requirements
