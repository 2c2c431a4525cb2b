"""torchrun with a machine-readable outcome: ``python -m runner.torchrun OUTCOME.json TORCHRUN-ARGS...``.

It is ``torch.distributed.run`` itself (same parser, same elastic agent, same rendezvous and
multi-node options); the only addition is that when workers fail, the agent's structured
failure record (which global rank, exit code, signal) is written to OUTCOME.json instead of
only being printed, so the launcher can name the rank without scraping logs.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .worker import die_with_parent


def failure_records(failures: dict) -> list[dict]:
    """ProcessFailure objects → plain records. SIGTERM means the agent stopped that rank itself
    after another one failed: a consequence, not a cause."""
    records = []
    for rank, failure in sorted(failures.items()):
        signal = failure.signal_name() if failure.exitcode < 0 else None
        records.append({"rank": int(rank), "exitcode": int(failure.exitcode), "signal": signal,
                        "time": float(failure.timestamp), "stopped": signal == "SIGTERM"})
    return records


def main(argv: list[str]) -> int:
    die_with_parent()  # before importing torch (seconds): a parent killed meanwhile must take us along
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    outcome_path = Path(argv[0])
    args = get_args_parser().parse_args(argv[1:])
    try:
        run(args)
    except ChildFailedError as exc:
        outcome = {"status": "failed", "failures": failure_records(exc.failures)}
        code = 1
    else:
        outcome, code = {"status": "ok", "failures": []}, 0
    outcome_path.write_text(json.dumps(outcome) + "\n", encoding="utf-8")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
