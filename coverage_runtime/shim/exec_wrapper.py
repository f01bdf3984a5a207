"""The layer's ``AWS_LAMBDA_EXEC_WRAPPER``: measure a zip function on a managed Python
runtime, or a function on an AWS base image, without changing how it starts.

Lambda's Python runtimes (and AWS's base images, which run the same
``/var/runtime/bootstrap``) start the runtime as ``$AWS_LAMBDA_EXEC_WRAPPER
/var/lang/bin/python3.N /var/runtime/bootstrap.py`` when that variable is set.
The layer's wrapper script runs this module in that interpreter instead, with
the same arguments.  The runtime's own ``bootstrap.py`` then runs unchanged
(its ``sys.path`` and ``.pth`` set-up for the task root and ``/opt/python``,
``PYTHONPATH``), except that its last step, ``awslambdaric``'s ``main``, is
the shim's: coverage starts, the internal extension registers, then the
runtime's own awslambdaric imports the handler and serves events.

Why a wrapper and not a handler wrapper (Datadog's way, the real handler in
another variable): the shim has to see each response leave, to checkpoint
after it and never inside the billed invocation, so it must own the runtime
client, which awslambdaric builds before any handler is imported.  The
function's handler setting, its stack traces and its logs stay its own.

The layer keeps its packages (``coverage_runtime``, ``coverage``) in a private
directory, appended to ``sys.path`` *after* everything the runtime puts there:
a package the function brings itself (in the task root or its own layer's
``/opt/python``) is found first, exactly as without the shim.  The command
line ``python -m awslambdaric <handler>`` (images on other bases whose entry
script honours the variable) is served the same way.
"""

from __future__ import annotations

import os
import sys

USAGE = "expected: python /var/runtime/bootstrap.py | python -m awslambdaric <module.function>"


def _move_to_end(directory: str) -> None:
    """Let everything the runtime and the function put on ``sys.path`` come first."""
    while directory in sys.path:
        sys.path.remove(directory)
    sys.path.append(directory)


def _run_shim(handler: str) -> None:
    from coverage_runtime.__main__ import main

    main(["coverage_runtime", handler])


def run_bootstrap(bootstrap_py: str) -> None:
    """Run the runtime's ``bootstrap.py`` as Lambda would, the shim standing in
    for awslambdaric's ``main`` (which it calls with ``[task root, handler]``)."""
    import awslambdaric.__main__ as awslambdaric_main

    original = awslambdaric_main.main

    def shim_main(args: list[str]) -> None:
        # The shim hands a disabled or unsupported environment to awslambdaric's own
        # main, which must then be the original again.
        awslambdaric_main.main = original
        _run_shim(args[-1])

    awslambdaric_main.main = shim_main
    sys.argv = [bootstrap_py]
    sys.path[0] = os.path.dirname(os.path.abspath(bootstrap_py))
    # As ``python bootstrap.py`` runs it: in ``__main__``.  (Not runpy: its import of
    # pkgutil and typing would add ~4 ms to every cold start.)
    with open(bootstrap_py, "rb") as source:
        code = compile(source.read(), bootstrap_py, "exec")
    main_module = sys.modules["__main__"]
    main_module.__file__ = bootstrap_py
    exec(code, vars(main_module))  # noqa: S102 - the runtime's own bootstrap, as Lambda runs it


def main(argv: list[str], private: str | None = None) -> None:
    """``argv``: the runtime's command line after the interpreter; ``private``: the
    layer's package directory, which the wrapper script put first to import this."""
    if private:
        _move_to_end(private)
    if len(argv) == 3 and argv[:2] == ["-m", "awslambdaric"]:
        sys.argv = ["awslambdaric", argv[2]]
        sys.path[0] = os.getcwd()  # as ``python -m`` puts it
        _run_shim(argv[2])
    elif len(argv) == 1 and argv[0].endswith(".py"):
        run_bootstrap(argv[0])
    else:
        # A start this wrapper does not know (interpreter options, another launcher):
        # the function must still start, unmeasured.
        sys.stderr.write(
            f"lambda-coverage: not measuring: unexpected command line {argv!r} ({USAGE}); "
            "starting it unchanged\n"
        )
        os.execv(sys.executable, [sys.executable, *argv])  # noqa: S606 - the runtime's own command


if __name__ == "__main__":
    main(sys.argv[1:])
