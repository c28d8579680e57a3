"""skills-directory: Markdown skills with optional front matter, ids checked segment by segment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from teamster.engine.engine import Engine
from teamster.harness.skills import create_worker
from teamster.sdk import InvocationError, Worker
from tests.conftest import Connect, expect_bad_input

MTIME = 1_700_000_000  # 2023-11-14T22:13:20Z
ALPHA = """---
title: Alpha skill
type: how-to
description: Does alpha things.
default: true
---
# Ignored heading

Body of alpha.
"""
BETA = """Intro text that is not a heading.

# Beta skill

## Usage

First paragraph
continues here.

Second paragraph.
"""


def write(folder: Path, relative: str, text: str) -> Path:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (MTIME, MTIME))
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "skills"
    write(root, "alpha.md", ALPHA)
    write(root, "team/beta.md", BETA)
    write(root, "team/bare.md", "Just text, no heading.\n")
    # None of these is a skill: not Markdown, or a name no id can spell.
    write(root, "notes.txt", "# Notes\n")
    write(root, "README.md", "# Readme\n")
    write(root, "team/Bad Name.md", "# Bad\n")
    write(tmp_path, "secret.md", "# Secret\n\nOutside the folder.\n")
    return root


@pytest.fixture
async def client(connect: Connect, folder: Path) -> Worker:
    await connect(create_worker(folder=folder))
    return await connect(Worker("client"))


async def test_list(client: Worker) -> None:
    assert await client.trigger("directory::skills::list", {}) == {
        "skills": [
            {
                "id": "alpha",
                "title": "Alpha skill",
                "type": "how-to",
                "description": "Does alpha things.",
                "default": True,
                "bytes": len(ALPHA),
                "modified_at": "2023-11-14T22:13:20Z",
            },
            {
                "id": "team/bare",
                "title": "team/bare",
                "type": None,
                "description": "Just text, no heading.",
                "default": False,
                "bytes": 23,
                "modified_at": "2023-11-14T22:13:20Z",
            },
            {
                "id": "team/beta",
                "title": "Beta skill",
                "type": None,
                "description": "Intro text that is not a heading.",
                "default": False,
                "bytes": len(BETA),
                "modified_at": "2023-11-14T22:13:20Z",
            },
        ]
    }


async def test_get_with_and_without_front_matter(client: Worker) -> None:
    assert await client.trigger("directory::skills::get", {"id": "alpha"}) == {
        "id": "alpha",
        "title": "Alpha skill",
        "type": "how-to",
        "description": "Does alpha things.",
        "default": True,
        "body": "# Ignored heading\n\nBody of alpha.\n",
        "modified_at": "2023-11-14T22:13:20Z",
    }
    assert await client.trigger("directory::skills::get", {"id": "iii://team/beta"}) == {
        "id": "team/beta",
        "title": "Beta skill",
        "type": None,
        "description": "Intro text that is not a heading.",
        "default": False,
        "body": BETA,
        "modified_at": "2023-11-14T22:13:20Z",
    }


async def test_front_matter_fields_fall_back_one_by_one(connect: Connect, tmp_path: Path) -> None:
    write(tmp_path, "partial.md", "---\ntype: reference\n---\n# From the heading\n\nFrom the paragraph,\nwrapped.\n")
    await connect(create_worker(folder=tmp_path))
    client = await connect(Worker("client"))
    skill = await client.trigger("directory::skills::get", {"id": "partial"})
    assert (skill["title"], skill["type"], skill["description"]) == (
        "From the heading",
        "reference",
        "From the paragraph, wrapped.",
    )


@pytest.mark.parametrize(
    "skill_id",
    [
        "../secret",
        "team/../alpha",
        "/etc/passwd",
        "team//beta",
        "alpha.md",
        "Alpha",
        "iii://",
        "iii://../secret",
        "",
        "a" * 65,
        "team\\beta",
    ],
)
async def test_invalid_ids_are_refused(client: Worker, skill_id: str) -> None:
    with pytest.raises(InvocationError) as caught:
        await client.trigger("directory::skills::get", {"id": skill_id})
    assert caught.value.code == "INVALID_ID"
    assert repr(skill_id) in caught.value.message


async def test_not_found(client: Worker) -> None:
    for skill_id in ["nope", "team/nope", "iii://team", "a" * 64]:
        with pytest.raises(InvocationError) as caught:
            await client.trigger("directory::skills::get", {"id": skill_id})
        assert caught.value.code == "SKILL_NOT_FOUND"


async def test_bad_front_matter_is_an_error(connect: Connect, tmp_path: Path) -> None:
    write(tmp_path, "broken.md", "---\ntitle: [unclosed\n---\nBody\n")
    write(tmp_path, "shape.md", "---\ndefault: maybe\n---\nBody\n")
    await connect(create_worker(folder=tmp_path))
    client = await connect(Worker("client"))
    for skill_id in ["broken", "shape"]:
        with pytest.raises(InvocationError) as caught:
            await client.trigger("directory::skills::get", {"id": skill_id})
        assert caught.value.code == "INVALID_SKILL"
        assert caught.value.message.startswith(f"{skill_id}: bad front matter:")


async def test_the_user_folder_adds_and_replaces(connect: Connect, folder: Path, tmp_path: Path) -> None:
    user = tmp_path / "mine"
    write(user, "alpha.md", "# My alpha\n\nReplaced.\n")
    write(user, "extra/gamma.md", "# Gamma\n")
    await connect(create_worker(folder=folder, user_folder=user))
    client = await connect(Worker("client"))
    listing = (await client.trigger("directory::skills::list", {}))["skills"]
    assert [s["id"] for s in listing] == ["alpha", "extra/gamma", "team/bare", "team/beta"]
    alpha = await client.trigger("directory::skills::get", {"id": "alpha"})
    assert (alpha["title"], alpha["body"], alpha["default"]) == ("My alpha", "# My alpha\n\nReplaced.\n", False)


async def test_edits_on_disk_show_up_at_once(client: Worker, folder: Path) -> None:
    before = await client.trigger("directory::skills::get", {"id": "alpha"})
    assert before["title"] == "Alpha skill"
    # Same size, same mtime: only the text tells the two versions apart.
    write(folder, "alpha.md", ALPHA.replace("Alpha skill", "Omega skill"))
    after = await client.trigger("directory::skills::get", {"id": "alpha"})
    assert (after["title"], after["modified_at"]) == ("Omega skill", before["modified_at"])
    write(folder, "team/new.md", "# Brand new\n")
    (folder / "team" / "bare.md").unlink()
    listing = (await client.trigger("directory::skills::list", {}))["skills"]
    assert [(s["id"], s["title"]) for s in listing] == [
        ("alpha", "Omega skill"),
        ("team/beta", "Beta skill"),
        ("team/new", "Brand new"),
    ]
    with pytest.raises(InvocationError) as caught:
        await client.trigger("directory::skills::get", {"id": "team/bare"})
    assert caught.value.code == "SKILL_NOT_FOUND"


async def test_shipped_default_skills_in_process(engine: Engine) -> None:
    async with create_worker().attach(engine), Worker("client").attach(engine) as client:
        listing = (await client.trigger("directory::skills::list"))["skills"]
        defaults = [s["id"] for s in listing if s["default"]]
        assert defaults == ["teamster/approvals", "teamster/calling-functions"]
        skill = await client.trigger("directory::skills::get", {"id": "iii://teamster/calling-functions"})
        assert skill["title"] == "Calling functions"
        assert "agent_trigger" in skill["body"] and not skill["body"].startswith("---")


@pytest.mark.parametrize(("payload", "field"), [({}, "id"), ({"id": 5}, "id")])
async def test_bad_input_is_a_deserialization_error(client: Worker, payload: dict[str, Any], field: str) -> None:
    await expect_bad_input(client, "directory::skills::get", payload, field)
