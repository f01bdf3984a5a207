"""Reports which coverage-related modules the process has loaded."""

import sys


def handler(event, context):
    prefixes = ("coverage", "boto3", "botocore")
    return sorted(name for name in sys.modules if name.startswith(prefixes))
