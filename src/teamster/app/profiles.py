"""Harness profiles: which workers run, and which gates the orchestrator consults.

`thin` trusts the model: orchestrator, providers, credentials, events and the session tree (transcripts
live there, so both profiles need it). `thick` adds the catalog, skills, policy, approvals, budgets and
hooks. The same run request works on both; switching is a choice of profile, not of code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from teamster.engine.config import EngineConfig
from teamster.harness import (
    approval,
    budget,
    catalog,
    compaction,
    credentials,
    events,
    hooks,
    policy,
    sessions,
    skills,
    trigger,
)
from teamster.harness.orchestrator import TurnSettings
from teamster.harness.orchestrator import create_worker as orchestrator
from teamster.harness.providers import anthropic, local, openai, scripted
from teamster.sdk import Worker

Profile = Literal["thin", "thick"]
THIN = TurnSettings(
    policy=False, approvals=False, budgets=False, hooks=False, compaction=False, skills=False, catalog=False
)
THICK = TurnSettings()


@dataclass(frozen=True, slots=True)
class HarnessOptions:
    data_dir: Path = Path(".teamster")
    policy_file: Path | None = None  # default: ./iii-permissions.yaml when present, else kernel defaults only
    policy_pack: str | None = None  # permissive, ask-all, read-only, no-network
    approval_mode: Literal["manual", "auto", "full"] = "manual"
    catalog_files: tuple[Path, ...] = ()  # extra models and prices, merged over the shipped catalog
    run_route: bool = True  # harness::trigger binds POST /run; off beside the app, whose POST /run hands it on


def harness_workers(profile: Profile, options: HarnessOptions | None = None) -> list[Worker]:
    """Fresh worker instances for one profile, ready to connect or attach."""
    options = options or HarnessOptions()
    workers = [
        orchestrator(THIN if profile == "thin" else THICK),
        trigger.create_worker(http=options.run_route),
        events.create_worker(),
        sessions.create_worker(),
        credentials.create_worker(data_dir=options.data_dir),
        scripted.create_worker(),
        openai.create_worker(),
        anthropic.create_worker(),
        local.create_worker(),
    ]
    if profile == "thick":
        workers += [
            catalog.create_worker(extra=options.catalog_files),
            skills.create_worker(),
            policy.create_worker(options.policy_file, pack=options.policy_pack),
            approval.create_worker(options.approval_mode),
            budget.create_worker(),
            hooks.create_worker(),
            compaction.create_worker(),
        ]
    return workers


def configured_workers(config: EngineConfig) -> list[Worker]:
    """The workers of the profile named in a config's `harness:` block, with its options."""
    harness = config.harness
    options = HarnessOptions(
        data_dir=config.data_dir,
        policy_file=harness.policy_file,
        policy_pack=harness.policy_pack,
        approval_mode=harness.approval_mode,
        catalog_files=tuple(harness.catalog_files),
        run_route=False,  # `teamster up` runs the app, which serves POST /run and reserves it
    )
    return harness_workers(harness.profile, options)
