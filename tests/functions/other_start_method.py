"""Managed Instances tests: the runtime as a later awslambdaric might start its workers.

awslambdaric 4.2.2 asks multiprocessing for the ``fork`` start method; Python
3.14 defaults to ``forkserver``.  ``python other_start_method.py <method>
<handler>`` runs the shim with that request answered by ``<method>`` instead,
so the workers are fresh interpreters that find the worker entry point by name.
"""

import multiprocessing
import sys

if __name__ == "__main__":
    method = sys.argv.pop(1)
    real = multiprocessing.get_context
    multiprocessing.get_context = lambda wanted=None: real(method if wanted == "fork" else wanted)

    from coverage_runtime.__main__ import main

    main(sys.argv)
