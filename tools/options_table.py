"""The README's option table, generated from the settings schema.

``python tools/options_table.py`` prints the Markdown table;
``python tools/options_table.py --update README.md`` rewrites it between the README's markers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, List, Optional, Sequence

from moesif_integrations.core.config.schema import OPTIONS, OptionKind, OptionSpec

START_MARKER = "<!-- options:start -->"
END_MARKER = "<!-- options:end -->"


def render_options_table() -> str:
    """Every option as one Markdown table row: key, type, default, environment variable, meaning."""
    rows = [
        "| Option | Type | Default | Environment variable | Description |",
        "|---|---|---|---|---|",
    ]
    for spec in OPTIONS:
        cells = [
            f"`{spec.key}`",
            _type_cell(spec),
            _default_cell(spec),
            f"`{spec.env_var}`" if spec.env_var else "–",
            _description_cell(spec),
        ]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows) + "\n"


def _type_cell(spec: OptionSpec) -> str:
    limits = spec.bounds.describe()
    if spec.kind in (OptionKind.INT, OptionKind.FLOAT) and limits:
        return f"{spec.kind.value}, {limits.replace('of at', 'at')}"
    return spec.kind.value


def _default_cell(spec: OptionSpec) -> str:
    if spec.required:
        return "required"
    return _show_default(spec.default)


def _show_default(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        return ", ".join(f"`{item}`" for item in value) if value else "empty"
    return f"`{value}`"


def _description_cell(spec: OptionSpec) -> str:
    if not spec.aliases:
        return spec.description
    aliases = ", ".join(f"`{alias}`" for alias in spec.aliases)
    return f"{spec.description} Deprecated alias: {aliases}."


def replace_between_markers(document: str, table: str) -> str:
    """``document`` with the text between the option markers replaced by ``table``."""
    start = document.index(START_MARKER) + len(START_MARKER)
    end = document.index(END_MARKER, start)
    return f"{document[:start]}\n{table}{document[end:]}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--update", metavar="README", type=Path, help="rewrite the table between the markers"
    )
    arguments = parser.parse_args(argv)
    table = render_options_table()
    if arguments.update is None:
        sys.stdout.write(table)
        return 0
    document = arguments.update.read_text(encoding="utf-8")
    missing: List[str] = [m for m in (START_MARKER, END_MARKER) if m not in document]
    if missing:
        sys.stderr.write(f"{arguments.update}: missing marker(s) {', '.join(missing)}\n")
        return 1
    arguments.update.write_text(replace_between_markers(document, table), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
