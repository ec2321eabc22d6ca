"""Print the README's unification table from the registry: ``python -m methods._table``."""

from __future__ import annotations

from methods import METHODS


def markdown() -> str:
    head = "| method | source | trains on (s, t) | target | teacher | sampler NFEs |\n|---|---|---|---|---|---|\n"
    rows = []
    for name, cls in METHODS.items():
        s = cls.summary
        teacher = "yes" if cls.needs_teacher else "no"
        rows.append(
            f"| `{name}` | {s['paper']} | {s['times']} | {s['target']} | {teacher} | {s['nfe']} |"
        )
    return head + "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
