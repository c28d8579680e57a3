"""Write the event contract's JSON Schema: `python -m teamster.patterns.schema [PATH]`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from teamster.patterns.events import json_schema

DEFAULT_PATH = Path("schemas/agent-events.json")


def render() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> None:
    path = Path(argv[0]) if argv else DEFAULT_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(), encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
