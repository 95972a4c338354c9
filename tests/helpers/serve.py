"""``texbridge serve`` whose worker runs another runner (tests and benchmarks only).

    python -m tests.helpers.serve RUN_JOB LOAD_PRIOR [serve options...]

RUN_JOB and LOAD_PRIOR are ``module:function`` names (``server.config.WorkerRunner``); the
server is otherwise the real one (``server.serve_cmd.main``).
"""

from __future__ import annotations

import sys

from server import serve_cmd
from server.config import WorkerRunner


def main(argv: list[str]) -> int:
    run_job, load_prior, *rest = argv
    return serve_cmd.main(rest, WorkerRunner(run_job=run_job, load_prior=load_prior))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
