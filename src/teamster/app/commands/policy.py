"""`teamster policy check FILE`: a rules file checked here, as the policy worker would load it.

The rules format is in docs/harness/policy-approval.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from teamster.app.output import fail, say

app = typer.Typer(help="Policy rules files.", no_args_is_help=True)
INVALID = 1  # the file was read and is wrong; 2 stays for a file that cannot be read


@app.command("check")
def check(file: Annotated[Path, typer.Argument(help="The YAML rules file, e.g. iii-permissions.yaml.")]) -> None:
    """Parse a rules file: `FILE: N rules OK` (exit 0), or what is wrong with it in one line (exit 1)."""
    from teamster.harness.policy import PolicyError, parse_policy

    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        fail(f"{file}: {reason}")
    try:
        parsed = parse_policy(text)
    except PolicyError as exc:
        fail(f"{file}: {exc}", INVALID)
    count = len(parsed.rules)
    say(Text(f"{file}: {count} rule{'' if count == 1 else 's'} OK", style="green"))
