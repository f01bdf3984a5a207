"""A REST API function as teams write them: everything imported and set up at init.

Benchmark only (bench/heavy/README.md): its init imports 30+ vendored
distributions, patches botocore and requests for X-Ray, builds boto3 clients,
compiles schemas and models; its own code is the `service` package.
"""

import os

import boto3
import httpx
import jsonschema
import jwt
import requests
import yaml
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_xray_sdk.core import patch_all, xray_recorder
from cryptography.fernet import Fernet
from service import auth, models, routes, store

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
xray_recorder.configure(context_missing="IGNORE_ERROR")
patch_all()

logger = Logger(service="heavy")
metrics = Metrics(namespace="heavy", service="heavy")
app = APIGatewayHttpResolver()
table = store.Table(boto3.resource("dynamodb").Table(os.environ.get("TABLE_NAME", "items")))
session = requests.Session()
http = httpx.Client(timeout=2.0)
cipher = Fernet(Fernet.generate_key())
SCHEMA = yaml.safe_load(models.SCHEMA_YAML)
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
SIGNING_KEY = "bench-secret"
routes.register(app, table, VALIDATOR, auth.Verifier(jwt, SIGNING_KEY))


def lambda_handler(event, context):
    if "routeKey" not in event:
        return {"statusCode": 200, "body": cipher.decrypt(cipher.encrypt(b"ok")).decode()}
    return app.resolve(event, context)
