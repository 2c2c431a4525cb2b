"""Regenerate tests/data/megatron_checkpoint_args.json: the fields Megatron-LM's legacy checkpoint
loader reads from a checkpoint's ``args``, read (AST, nothing imported) from a Megatron-LM git
checkout or bare mirror.

    python tools/megatron_checkpoint_args.py /work/.mirror/NVIDIA+Megatron-LM/repo [--commit HEAD]

Read from ``megatron/training/checkpointing.py``: in ``check_checkpoint_args`` (``_compare``),
``load_args_from_checkpoint`` (``_set_arg``), ``_load_base_checkpoint`` and ``load_checkpoint``,
every ``checkpoint_args.X`` / ``ckpt_args.X`` / ``state_dict['args'].X``, ``getattr``/``hasattr``
of those with a literal name, and the names given to ``_compare``/``_set_arg`` (which read them
with ``getattr(checkpoint_args, name[, default])``). Each field is kept with how it is read:
``required`` when Megatron reads it without a default and never first asks whether it is there
(an AttributeError otherwise); ``below_version`` when it is read only inside an ``if`` on the
checkpoint version being below a number (the pre-3.0 name ``model_parallel_size``).
"""
from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from pathlib import Path

SOURCE = "megatron/training/checkpointing.py"
FUNCTIONS = ("check_checkpoint_args", "load_args_from_checkpoint", "_load_base_checkpoint", "load_checkpoint")
CHECKPOINT_ARGS = ("checkpoint_args", "ckpt_args")
OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "megatron_checkpoint_args.json"


def _is_checkpoint_args(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id in CHECKPOINT_ARGS
    return (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)  # state_dict['args']
            and node.slice.value == "args")


def _literal(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _version_floors(function: ast.FunctionDef) -> dict[int, float]:
    """id(node) -> N for every node inside ``if <...> < N`` (a checkpoint-version branch)."""
    floors: dict[int, float] = {}
    for node in ast.walk(function):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare) and len(node.test.ops) == 1 \
                and isinstance(node.test.ops[0], ast.Lt) and isinstance(node.test.comparators[0], ast.Constant) \
                and "version" in ast.unparse(node.test.left):
            for inner in node.body:
                for sub in ast.walk(inner):
                    floors[id(sub)] = float(node.test.comparators[0].value)
    return floors


def fields_read(source: str) -> dict[str, dict[str, object]]:
    """{field: {"required", "below_version", "read_by"}} over FUNCTIONS."""
    found: dict[str, dict[str, object]] = {}
    hard: set[tuple[str, str]] = set()  # (field, function) read with no default
    probed: set[tuple[str, str]] = set()  # ... or asked for first (hasattr, a default)
    always: set[str] = set()

    def note(name: str, function: str, required: bool, node: ast.AST | None = None) -> None:
        entry = found.setdefault(name, {"required": False, "below_version": None, "read_by": []})
        (hard if required else probed).add((name, function))
        if node is not None and id(node) in floors:
            entry["below_version"] = floors[id(node)]
        else:
            always.add(name)
        if function not in entry["read_by"]:  # type: ignore[operator]
            entry["read_by"].append(function)  # type: ignore[union-attr]

    for top in ast.parse(source).body:
        if not (isinstance(top, ast.FunctionDef) and top.name in FUNCTIONS):
            continue
        floors = _version_floors(top)
        for node in ast.walk(top):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) and _is_checkpoint_args(node.value):
                note(node.attr, top.name, True)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args:
                func = node.func.id
                if func in ("getattr", "hasattr") and len(node.args) >= 2 and _is_checkpoint_args(node.args[0]):
                    if (name := _literal(node.args[1])) is not None:
                        note(name, top.name, func == "getattr" and len(node.args) == 2)
                elif func in ("_compare", "_set_arg") and (name := _literal(node.args[0])) is not None:
                    old = _literal(node.args[1]) if len(node.args) > 1 else None
                    old = old or next((_literal(k.value) for k in node.keywords if k.arg == "old_arg_name"), None)
                    has_default = any(k.arg == "default" for k in node.keywords)
                    note(old or name, top.name, func == "_compare" and not has_default, node)
    for name, entry in found.items():
        entry["required"] = any(f == name and (f, fn) not in probed for f, fn in hard)
        if name in always:
            entry["below_version"] = None
    return dict(sorted(found.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("git_dir", help="a Megatron-LM checkout or bare mirror")
    parser.add_argument("--commit", default="HEAD")
    parser.add_argument("--out", type=Path, default=OUT)
    opts = parser.parse_args()
    bare = not (Path(opts.git_dir) / ".git").exists()
    git = ["git", "--git-dir", opts.git_dir] if bare else ["git", "-C", opts.git_dir]
    commit = subprocess.run([*git, "rev-parse", opts.commit], check=True, capture_output=True, text=True).stdout.strip()
    source = subprocess.run([*git, "show", f"{commit}:{SOURCE}"], check=True, capture_output=True, text=True).stdout
    doc = {"megatron_lm_commit": commit, "source": SOURCE, "functions": list(FUNCTIONS),
           "regenerate": "python tools/megatron_checkpoint_args.py <Megatron-LM git dir> --commit <commit>",
           "fields": fields_read(source)}
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{len(doc['fields'])} fields from {SOURCE} at {commit} -> {opts.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
