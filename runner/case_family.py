"""The model family a case needs, told from the case itself.

Megatron-LM trains each family with its own script (``pretrain_bert.py``, ``pretrain_gpt.py``,
``pretrain_t5.py``, ``pretrain_mamba.py``, ...) and its CI picks the script by the case's folder.
:func:`detect` reads the same evidence a person would, strongest first: a top-level ``MODE``
(inference and RL cases), flags only one family has (``--encoder-num-layers``: T5,
``--num-experts``: MoE, ``--hybrid-layer-pattern``: hybrid/Mamba, NeMo's dotted arguments), the
folder the case sits in (``test_cases/gpt/...``), then the case's name (``bert_mcore_...``).

:data:`BUILT` are the families with a builder in ``runner/families``. A case of any other family is
refused by the family's name before a single flag is read (``runner/megatron_case.py``).

Only the standard library is imported here (the CLI reads cases before torch is imported).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

BUILT = ("bert", "gpt", "moe", "t5")
# Families Megatron's tree has and this runner does not build: name → what it is.
NOT_BUILT: dict[str, str] = {
    "hybrid": "hybrid Mamba/attention models (megatron-core's MambaModel, pretrain_mamba.py / pretrain_hybrid.py)",
    "multimodal": "multimodal models (LLaVA / MiMo vision-language training)",
    "nemo": "NeMo recipes (the case's arguments are NeMo's config keys, launched by NeMo, not Megatron-LM)",
    "inference": "inference cases (MODE: inference; text generation and logit matching, not training)",
    "rl": "reinforcement-learning cases (MODE: rl)",
    "retro": "RETRO retrieval-augmented models",
    "tool": "tool runs of Megatron's CI with no training flags (the checkpoint converter)",
}
FOLDERS: dict[str, str] = {
    "bert": "bert", "gpt": "gpt", "t5": "t5", "moe": "moe", "mixtral": "moe", "hybrid": "hybrid",
    "nemotron": "hybrid", "multimodal-llava": "multimodal", "mimo": "multimodal", "gpt-nemo": "nemo",
    "retro": "retro",
}
NAME_PREFIXES = (("bert", "bert"), ("t5", "t5"), ("gpt", "gpt"), ("mixtral", "moe"), ("retro", "retro"))
FLAG_FAMILIES = (  # (flag, family): a flag only that family's script reads
    ("--encoder-num-layers", "t5"), ("--decoder-num-layers", "t5"), ("--encoder-seq-length", "t5"),
    ("--hybrid-layer-pattern", "hybrid"), ("--hybrid-override-pattern", "hybrid"),
    ("--is-hybrid-model", "hybrid"), ("--retro-project-dir", "retro"), ("--num-experts", "moe"),
    ("--bert-no-binary-head", "bert"),
)
MODES = {"inference": "inference", "rl": "rl"}  # MODE: pretraining (or none) is training


@dataclass(frozen=True)
class Family:
    """The family a case needs and the evidence it was told from."""

    name: str
    evidence: str

    @property
    def built(self) -> bool:
        return self.name in BUILT

    def refusal(self) -> str:
        return (f"model family {self.name} ({NOT_BUILT.get(self.name, 'unknown')}) is not built here "
                f"(told from {self.evidence}): runner/families builds {', '.join(BUILT)}")


def detect(doc: Mapping[str, Any], *, folder: str | None = None, name: str | None = None) -> Family:
    """The family of a parsed model_config.yaml in folder ``folder`` (the folder holding the case
    folder, e.g. ``gpt``) named ``name``; BERT where nothing names one (the runner's first family,
    and what the toolkit's own cases are)."""
    mode = doc.get("MODE")
    if isinstance(mode, str) and mode in MODES:
        return Family(MODES[mode], f"MODE: {mode}")
    args = doc.get("MODEL_ARGS")
    if args is None or (isinstance(args, Mapping) and not args):
        return Family("tool", "no MODEL_ARGS")
    if isinstance(args, Mapping):
        keys = [k for k in args if isinstance(k, str)]
        if keys and not any(k.startswith("--") for k in keys):
            return Family("nemo", "its arguments are NeMo config keys, not Megatron flags")
        spec = args.get("--spec")
        if isinstance(spec, str) and "hybrid" in spec:
            return Family("hybrid", f"--spec {spec}")
        for flag, family in FLAG_FAMILIES:
            if flag in args:
                if family == "moe" and folder is not None and FOLDERS.get(folder) == "hybrid":
                    continue  # hybrid models have MoE layers too: the folder decides below
                return Family(family, f"flag {flag}")
    if folder is not None and folder in FOLDERS:
        return Family(FOLDERS[folder], f"folder {folder}/")
    for prefix, family in NAME_PREFIXES:
        if name is not None and name.startswith(prefix):
            return Family(family, f"case name {name}")
    return Family("bert", "nothing names a family: BERT, the runner's first")
