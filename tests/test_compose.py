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
from tests.daemon_helpers import free_port, wait_for
from tests.helpers import stored

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
ENV_EXAMPLE = ROOT / "kapture-sync.env.example"


def example_env() -> dict[str, str]:
    """kapture-sync.env.example as docker compose reads it (the real kapture-sync.env is git-ignored)."""
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _compose_cli() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_file_is_valid(tmp_path):
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (.ci/run installs docker-compose)")
    # As a user has it: the example copied to the git-ignored kapture-sync.env beside the compose file.
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copy(ENV_EXAMPLE, tmp_path / "kapture-sync.env")
    done = subprocess.run([*cli, "config", "-q"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "kapture-sync.env" in (ROOT / ".gitignore").read_text().splitlines()


def test_the_image_installs_the_package_and_runs_the_daemon():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir ." in dockerfile and 'CMD ["kapture-sync", "daemon"]' in dockerfile
    for copied in ("pyproject.toml", "sync", "migrations"):
        assert (ROOT / copied).exists() and copied in dockerfile


def kapture_commands(service: str) -> list[list[str]]:
    """The `kapture-sync ...` invocations of a service: its exec-form list, or inside its `sh -c` command."""
    command = COMPOSE["services"][service]["command"]
    if isinstance(command, list):
        return [command[1:]] if command[0] == "kapture-sync" else []
    words = shlex.split(command)
    if words[0] != "sh":
        return [words[1:]] if words[0] == "kapture-sync" else []
    script = words[-1]
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
        env.update(example_env())
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


def test_the_migrate_step_and_the_daemon_start_and_pass_their_health_check(postgres_url, tmp_path):
    """What `docker compose up` runs, run here: migrate, then the daemon until its health check passes."""
    [emulator_args] = kapture_commands("emulator")
    emulator_args = [*emulator_args]
    emulator_args[emulator_args.index("--host") + 1] = "127.0.0.1"
    emulator_args[emulator_args.index("--port") + 1] = "0"
    emulator_args[emulator_args.index("--orders") + 1] = "500"
    emulator = subprocess.Popen([sys.executable, "-m", "sync", *emulator_args], stdout=subprocess.PIPE, text=True)
    daemon = None
    try:
        assert emulator.stdout is not None
        url = next(m.group(1) for line in emulator.stdout if (m := re.search(r"(http://127\.0\.0\.1:\d+)", line)))
        reset_postgres(postgres_url)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("KAPTURE_")}
        env.update(example_env())
        env.update({k: str(v) for k, v in COMPOSE["services"]["daemon"]["environment"].items()})
        env.update(
            KAPTURE_BASE_URL=url,
            KAPTURE_SYNC_DATABASE_URL=postgres_url,
            KAPTURE_SYNC_METRICS_PORT=str(port),
            KAPTURE_SYNC_INTERVAL="1",
        )
        [migrate] = kapture_commands("migrate")
        done = subprocess.run([sys.executable, "-m", "sync", *migrate], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        [daemon_args] = kapture_commands("daemon")
        assert daemon_args == ["daemon"]
        daemon = subprocess.Popen(
            [sys.executable, "-m", "sync", *daemon_args], env=env, stderr=subprocess.PIPE, text=True, cwd=tmp_path
        )
        check = COMPOSE["services"]["daemon"]["healthcheck"]["test"][1:]
        assert COMPOSE["services"]["daemon"]["environment"]["KAPTURE_SYNC_METRICS_PORT"] == "9100"
        check = [arg.replace("9100", str(port)) for arg in check]
        check[0] = sys.executable if check[0] == "python" else check[0]
        wait_for(lambda: subprocess.run(check, capture_output=True).returncode == 0, 60, "the health check to pass")
        daemon.send_signal(15)
        _, err = daemon.communicate(timeout=10)
        assert daemon.returncode == 0, err
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
        emulator.terminate()
        emulator.wait(10)


def test_the_emulator_is_only_the_demo_and_the_config_hint_is_mounted():
    """A real account needs no emulator: it is in the `demo` profile and nothing else waits for it; the
    env example's KAPTURE_SYNC_CONFIG=/config/... points into a mount."""
    services = COMPOSE["services"]
    assert services["emulator"]["profiles"] == ["demo"]
    for name, service in services.items():
        if name != "emulator":
            assert "emulator" not in (service.get("depends_on") or {}), f"{name} waits for the emulator"
            assert "demo" not in service.get("profiles", []), name
    hinted = re.findall(r"KAPTURE_SYNC_CONFIG=(/\S+)", ENV_EXAMPLE.read_text())
    assert hinted, "the env example no longer names a config path: drop this check"
    for path in hinted:
        for name in ("daemon", "migrate", "sync"):
            mounts = [v.split(":") for v in services[name].get("volumes", [])]
            assert any(path.startswith(target + "/") and mode == "ro" for _, target, mode in mounts), (name, path)
            assert all((ROOT / source).is_dir() for source, _, _ in mounts if source.startswith("./"))
