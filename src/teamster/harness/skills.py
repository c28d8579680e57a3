"""skills-directory: Markdown skills read from the shipped folder and an optional user folder (iii-harness.md §7.5)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from teamster.protocol import InvocationError
from teamster.protocol.errors import ErrorCode
from teamster.sdk import Worker

SHIPPED = Path(__file__).with_name("skills")
SEGMENT = re.compile(r"[a-z0-9_-]{1,64}")
FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)^---[ \t]*(?:\r?\n|\Z)", re.DOTALL | re.MULTILINE)


class FrontMatter(BaseModel):
    title: str | None = None
    type: str | None = None
    description: str | None = None
    default: bool = False


class SkillRef(BaseModel):
    id: str


class NoInput(BaseModel):
    pass


class SkillInfo(BaseModel):
    id: str
    title: str
    type: str | None
    description: str
    default: bool
    modified_at: datetime


class SkillRow(SkillInfo):
    bytes: int


class SkillList(BaseModel):
    skills: list[SkillRow]


class Skill(SkillInfo):
    body: str


def parse_id(raw: str) -> str:
    """A bare id or `iii://id`, each `/` segment checked, so no id can leave its folder."""
    skill_id = raw.removeprefix("iii://")
    if not all(SEGMENT.fullmatch(segment) for segment in skill_id.split("/")):
        raise InvocationError(
            ErrorCode.INVALID_ID, f"invalid skill id {raw!r}: each segment must match [a-z0-9_-]{{1,64}}"
        )
    return skill_id


def discover(folders: list[Path]) -> dict[str, Path]:
    """Skill id → file; a later folder's file wins, so the user folder can replace a shipped skill."""
    found: dict[str, Path] = {}
    for folder in folders:
        for path in folder.rglob("*.md"):
            segments = path.relative_to(folder).with_suffix("").parts
            if path.is_file() and all(SEGMENT.fullmatch(segment) for segment in segments):
                found["/".join(segments)] = path
    return found


def split_front_matter(skill_id: str, text: str) -> tuple[FrontMatter, str]:
    match = FRONT_MATTER.match(text)
    if match is None:
        return FrontMatter(), text
    try:
        return FrontMatter.model_validate(yaml.safe_load(match.group(1)) or {}), text[match.end() :]
    except (yaml.YAMLError, ValidationError) as exc:
        raise InvocationError(
            ErrorCode.INVALID_SKILL, f"{skill_id}: bad front matter: {' '.join(str(exc).split())}"
        ) from None


def first_heading(body: str) -> str | None:
    return next((line[2:].strip() for line in body.splitlines() if line.startswith("# ")), None)


def first_paragraph(body: str) -> str:
    """The first block of text lines that are not headings, joined into one line."""
    for block in re.split(r"\n[ \t]*\n", body):
        lines = [line.strip() for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        if lines:
            return " ".join(lines)
    return ""


def read_skill(skill_id: str, path: Path) -> Skill:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InvocationError(ErrorCode.INVALID_SKILL, f"{skill_id}: not UTF-8 text") from None
    return Skill(**_describe(skill_id, text), modified_at=datetime.fromtimestamp(path.stat().st_mtime, UTC))


@lru_cache(maxsize=256)
def _describe(skill_id: str, text: str) -> dict[str, Any]:
    """The fields a skill's text gives; cached by the text itself, so an edited file is parsed again."""
    meta, body = split_front_matter(skill_id, text)
    return {
        "id": skill_id,
        "title": meta.title or first_heading(body) or skill_id,
        "type": meta.type,
        "description": meta.description or first_paragraph(body),
        "default": meta.default,
        "body": body,
    }


def create_worker(*, folder: str | Path = SHIPPED, user_folder: str | Path | None = None) -> Worker:
    """The skills-directory worker over `folder`, overlaid by `user_folder`; files are read on every call.

    The handlers run on the event loop: a skill file is a few KB on local disk, which reads in microseconds,
    while a hop to a thread costs hundreds of them.
    """
    folders = [Path(folder)] if user_folder is None else [Path(folder), Path(user_folder)]
    worker = Worker("skills-directory")

    @worker.function("directory::skills::list")
    async def list_skills(req: NoInput | None) -> SkillList:
        """Every skill with its title, type and description (no body), sorted by id."""
        rows = [
            SkillRow(**read_skill(skill_id, path).model_dump(exclude={"body"}), bytes=path.stat().st_size)
            for skill_id, path in sorted(discover(folders).items())
        ]
        return SkillList(skills=rows)

    @worker.function("directory::skills::get")
    async def get_skill(req: SkillRef) -> Skill:
        """One skill with its Markdown body, by id or `iii://id`."""
        skill_id = parse_id(req.id)
        for root in reversed(folders):
            path = root / f"{skill_id}.md"
            if path.is_file():
                return read_skill(skill_id, path)
        raise InvocationError(ErrorCode.SKILL_NOT_FOUND, f"no skill {skill_id!r}")

    return worker
