"""docker-compose.yml stays valid, and the commands it starts work: run here directly, no engine needed."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sync.db import make_engine
from tests.conftest import reset_postgres
from tests.helpers import stored

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _compose_cli() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_file_is_valid():
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (.ci/run installs docker-compose)")
    done = subprocess.run([*cli, "config", "-q"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def kapture_commands(service: str) -> list[list[str]]:
    """The `kapture-sync ...` invocations inside a service's `sh -c` command."""
    script = shlex.split(COMPOSE["services"][service]["command"])[-1]
    commands = []
    for part in script.split("&&"):
        words = [w for w in shlex.split(part) if w != "exec"]
        if words and words[0] == "kapture-sync":
            commands.append(words[1:])
    return commands


def test_the_stack_emulator_and_sync_commands_work_against_local_services(postgres_url, tmp_path):
    [emulator_args] = kapture_commands("emulator")
    emulator_args = [*emulator_args]
    emulator_args[emulator_args.index("--host") + 1] = "127.0.0.1"
    emulator_args[emulator_args.index("--port") + 1] = "0"
    emulator = subprocess.Popen([sys.executable, "-m", "sync", *emulator_args], stdout=subprocess.PIPE, text=True)
    try:
        assert emulator.stdout is not None
        url = next(m.group(1) for line in emulator.stdout if (m := re.search(r"(http://127\.0\.0\.1:\d+)", line)))
        reset_postgres(postgres_url)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KAPTURE_")}
        env.update({k: str(v) for k, v in COMPOSE["services"]["sync"]["environment"].items()})
        env["KAPTURE_BASE_URL"] = url
        env["KAPTURE_SYNC_DATABASE_URL"] = postgres_url
        outputs = []
        for args in kapture_commands("sync"):
            done = subprocess.run(
                [sys.executable, "-m", "sync", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                cwd=tmp_path,
            )
            assert done.returncode == 0, done.stderr
            outputs.append(done.stdout)
        assert [args[0] for args in kapture_commands("sync")] == ["sync", "status"]
        assert "sync success" in outputs[0] and "orders stored" in outputs[1]
        engine = make_engine(postgres_url)
        assert len(stored(engine)) > 15_000
        engine.dispose()
    finally:
        emulator.terminate()
        emulator.wait(10)
