"""``python -m coverage_runtime <module.function>``: the image's entry point.

With ``COVERAGE_ENABLED=false`` this hands over to awslambdaric before
importing anything of ours beyond this file and `coverage_runtime.env`, so a
disabled runtime costs nothing.
"""

from __future__ import annotations

import os
import sys

from coverage_runtime import env  # the standard library's os only: cheap when disabled

USAGE = "usage: python -m coverage_runtime <module.function>   (e.g. app.handler.lambda_handler)"


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[1].startswith("-"):
        sys.stderr.write(USAGE + "\n")
        raise SystemExit(2)
    handler = argv[1]
    if not os.environ.get(env.RUNTIME_API):
        sys.stderr.write(
            "coverage_runtime: AWS_LAMBDA_RUNTIME_API is not set, so this is not running in "
            "Lambda: run it under the Runtime Interface Emulator (scripts/run-local.sh, or "
            "aws-lambda-rie python -m coverage_runtime <module.function>)\n"
        )
        raise SystemExit(2)
    if not env.coverage_enabled():
        from awslambdaric.__main__ import main as awslambdaric_main

        awslambdaric_main(["awslambdaric", handler])
        return

    from coverage_runtime.shim.bootstrap import main as bootstrap_main

    bootstrap_main(handler)


if __name__ == "__main__":
    main(sys.argv)
