"""Did you mean …? An ``--env`` or ``--platform`` the store does not know, but close to one it does.

A target name nobody has used yet is how a new golden begins (``golden diff`` / ``check`` stage a
candidate for it, ``golden approve`` writes one), so a typo there quietly starts a new target
(``--env dve`` beside ``dev``). The rule, one per kind of name, from how real names differ:

- env names are few and short (dev, lts): one at most 2 edits from a known one is a typo
  (an edit: a character inserted, dropped, changed, or two neighbours swapped).
- platform names differ by one changed character on purpose (dgx_a100, dgx_h100, dgx_h200): a
  changed character is a new platform; a dropped, added or swapped character, or a difference
  of case or of '-' / '_' only, is a typo (dgx_h10, dgx_hh100, dgx_1h00, DGX-H100).

A name meant to be new passes with ``--new-env`` / ``--new-platform``.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..core.errors import StoreError
from ..files.formats.golden import parse_golden_filename

ENV_TYPO_EDITS = 2


def edits(a: str, b: str, *, substitutions: bool = True) -> int:
    """Optimal-string-alignment distance: insertions, deletions, swaps of neighbours and (when
    ``substitutions``) changed characters; without them a change counts as two edits."""
    change = 1 if substitutions else 2
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        row = [i]
        for j, y in enumerate(b, 1):
            cost = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (0 if x == y else change))
            if i > 1 and j > 1 and x == b[j - 2] and a[i - 2] == y and x != y:
                cost = min(cost, previous2[j - 2] + 1)
            row.append(cost)
        previous2, previous = previous, row
    return previous[-1]


def _folded(name: str) -> str:
    return name.lower().replace("-", "_")


def close_match(value: str, known: Iterable[str], kind: str) -> str | None:
    """The known name ``value`` is most likely a typo of (``kind``: "env" or "platform"), or None."""
    candidates = sorted(set(known) - {value})
    if value in set(known):
        return None
    if kind == "env":
        scored = [(edits(value, k), k) for k in candidates]
        scored = [(d, k) for d, k in scored if d <= ENV_TYPO_EDITS]
    else:
        scored = [(0 if _folded(value) == _folded(k) else edits(_folded(value), _folded(k), substitutions=False), k)
                  for k in candidates]
        scored = [(d, k) for d, k in scored if d <= 1]
    return min(scored)[1] if scored else None


def known_targets(store: Any) -> tuple[set[str], set[str]]:
    """Every env and platform some golden file of the store is named for (file names only: cheap)."""
    envs, platforms = set(), set()
    for folder in store.tree.cases.values():
        for name in folder.goldens:
            parsed = parse_golden_filename(name)
            if parsed is not None:
                envs.add(parsed[0])
                platforms.add(parsed[1])
    return envs, platforms


def refuse_typos(store: Any, *, env: str | None, platform: str | None, new_env: bool = False,
                 new_platform: bool = False) -> None:
    """StoreError "--env 'dve' is not one of this store's: did you mean 'dev'?" for a given name
    the store does not know that is a close match of one it does (unless meant to be new)."""
    envs, platforms = known_targets(store)
    for option, value, known, meant_new in (("env", env, envs, new_env), ("platform", platform, platforms,
                                                                          new_platform)):
        if value is None or meant_new:
            continue
        match = close_match(value, known, option)
        if match is not None:
            raise StoreError(f"--{option} {value!r} is not one of this store's: did you mean {match!r}? "
                             f"(a new {option} on purpose: add --new-{option})")
