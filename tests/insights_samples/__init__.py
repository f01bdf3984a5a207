"""A small function at four revisions of a git repository, and environments that ran three.

r1 -> r2: ``pricing.py`` renamed ``prices.py``; ``refund`` changed; ``format_receipt``
moved to a new file ``receipts.py``; ``cancel`` added; ``export_all`` deleted; the
handler changed (and every line below its new import shifted by one).
r2 -> r3: ``Cart.count`` added.  r3 -> r4 (the checkout, never deployed): ``audit``
added, ``Cart.clear`` changed.

`deploy` runs environments of r1, r2 and r3 (and one of a revision the checkout
does not know) for real: the revision's files in one task root, ``python -m
coverage_runtime`` under the AWS RIE, invocations, SIGTERM, and the shim's upload
to the local S3.
"""
