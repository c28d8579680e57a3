"""Engine configuration: defaults, the file, env expansion, flags, and errors that say where."""

from __future__ import annotations

from pathlib import Path

import pytest

from teamster.engine.config import DEFAULT_WORKERS, ConfigError, load_config
from teamster.engine.engine import Engine
from teamster.sdk import Worker


def test_defaults_run_every_built_in() -> None:
    config = load_config()
    assert [w.name for w in config.workers] == list(DEFAULT_WORKERS)
    assert config.storage == "sqlite"
    assert config.data_dir == Path(".teamster")


def test_file_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WS_PORT", "5001")
    path = tmp_path / "engine.yaml"
    path.write_text(
        "storage: memory\n"
        "workers:\n"
        "  - name: iii-worker-manager\n"
        "    config: {port: ${WS_PORT}}\n"
        "  - name: iii-http\n"
        "    config: {port: ${HTTP_PORT:5002}}\n"
    )
    config = load_config(path)
    assert config.storage == "memory"
    assert [w.name for w in config.workers] == [
        "iii-engine-functions",
        "iii-observability",
        "configuration",
        "iii-worker-manager",
        "iii-http",
    ]
    assert config.worker("iii-worker-manager").config == {"port": 5001}  # type: ignore[union-attr]
    assert config.worker("iii-http").config == {"port": 5002}  # type: ignore[union-attr]
    overridden = load_config(path, ws_port=6001, storage="sqlite", data_dir=tmp_path)
    assert overridden.worker("iii-worker-manager").config == {"port": 6001}  # type: ignore[union-attr]
    assert (overridden.storage, overridden.data_dir) == ("sqlite", tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("workers: [\n", "is not valid YAML"),
        ("- a\n- b\n", "the top level must be a mapping"),
        ("storage: postgres\n", "storage"),
        ("surprise: 1\n", "surprise"),
        ("data_dir: ${NOT_SET_ANYWHERE}\n", "NOT_SET_ANYWHERE is not set"),
    ],
)
def test_bad_files_say_where(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "engine.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


async def test_unknown_worker_and_bad_module_config_change_nothing(tmp_path: Path) -> None:
    path = tmp_path / "engine.yaml"
    path.write_text("storage: memory\nworkers: [{name: iii-nonsense}]\n")
    with pytest.raises(ConfigError, match="unknown worker 'iii-nonsense'"):
        await Engine(load_config(path)).start()
    path.write_text("storage: memory\nworkers: [{name: iii-queue, config: {queue_configs: {q: {max_retries: -1}}}}]\n")
    with pytest.raises(ConfigError, match=r"worker iii-queue: queue_configs\.q\.max_retries"):
        await Engine(load_config(path)).start()


async def test_engine_without_a_socket_serves_in_process_workers(tmp_path: Path) -> None:
    path = tmp_path / "engine.yaml"
    path.write_text("storage: memory\nworkers: [{name: iii-state}]\n")
    async with Engine(load_config(path)) as engine:
        assert "ws" not in engine.ports
        worker = Worker("local")
        async with worker.attach(engine):
            await worker.trigger("state::set", {"scope": "s", "key": "k", "value": 1})
            assert await worker.trigger("state::get", {"scope": "s", "key": "k"}) == 1


def test_harness_block_then_the_profile_flag(tmp_path: Path) -> None:
    assert load_config().harness.model_dump() == {
        "profile": "thick",
        "policy_pack": None,
        "policy_file": None,
        "approval_mode": "manual",
        "catalog_files": [],
    }
    rules, prices = tmp_path / "rules.yaml", tmp_path / "prices.yaml"
    rules.write_text("version: 1\nrules: []\n")
    prices.write_text("models: []\n")
    path = tmp_path / "teamster.yaml"
    path.write_text(
        f"harness:\n  profile: thin\n  policy_file: {rules}\n  approval_mode: auto\n  catalog_files: [{prices}]\n"
    )
    harness = load_config(path).harness
    assert (harness.profile, harness.policy_file, harness.approval_mode) == ("thin", rules, "auto")
    assert harness.catalog_files == [prices]
    assert load_config(path, profile="thick").harness.profile == "thick"


@pytest.mark.parametrize(
    ("text", "flag", "message"),
    [
        ("harness: {profile: medium}\n", None, r"harness\.profile: Input should be 'thin' or 'thick'"),
        ("harness: {approval_mode: never}\n", None, r"harness\.approval_mode"),
        ("harness: {policy_pack: permissive, policy_file: teamster.yaml}\n", None, "not both"),
        ("harness: {catalog_files: [missing.yaml]}\n", None, r"harness\.catalog_files\.0: Path does not point"),
        ("storage: memory\n", "medium", "--profile: Input should be 'thin' or 'thick'"),
    ],
)
def test_bad_harness_blocks_say_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, flag: str | None, message: str
) -> None:
    monkeypatch.chdir(tmp_path)  # relative files in the block are looked up from here
    path = tmp_path / "teamster.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path, profile=flag)
