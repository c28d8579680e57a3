"""Write the published JSON Schemas of the event contracts: `python -m teamster.schemas [DIR]`.

`schemas/agent-events.json` is the pattern events' union (`teamster.patterns.events`),
`schemas/harness-events.json` the harness events' (`teamster.harness.harness_events`); tests fail when
either file is stale.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from teamster.harness import harness_events
from teamster.patterns import events

DEFAULT_DIR = Path("schemas")
SCHEMAS: dict[str, Callable[[], dict[str, Any]]] = {
    "agent-events.json": events.json_schema,
    "harness-events.json": harness_events.json_schema,
}


def render(name: str) -> str:
    """The text of the published file `name`."""
    return json.dumps(SCHEMAS[name](), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> None:
    directory = Path(argv[0]) if argv else DEFAULT_DIR
    directory.mkdir(parents=True, exist_ok=True)
    for name in SCHEMAS:
        path = directory / name
        path.write_text(render(name), encoding="utf-8")
        print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
