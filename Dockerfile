# Container image of a Python Lambda function measured by lambda-coverage.
#
# AWS's recipe for a non-AWS base image (awslambdaric + optional RIE), multi-stage:
# the build stage has pip and the build tools; the final stage only the venv and the code.
#
#   docker build --platform linux/amd64 --provenance=false -t lambda-coverage .   (scripts/build.sh)
#
# Build arguments:
#   BASE_IMAGE     any Debian-like image with python3 and its venv module (default: official 3.14 slim;
#                  3.14 is the first Python on which coverage.py's low-overhead sysmon core measures branches)
#   CODE_REVISION  recorded in every coverage object's metadata (scripts/build.sh passes the git revision)
#   RIE_SOURCE     bake the AWS Runtime Interface Emulator in (default: empty = not baked in):
#                  an http(s):// or file:// URL, or a path inside the build context, e.g.
#                  https://github.com/aws/aws-lambda-runtime-interface-emulator/releases/latest/download/aws-lambda-rie
ARG BASE_IMAGE=python:3.14-slim

# ---------------------------------------------------------------- build stage
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
# A venv works alike on the official image and on a distribution's Python (PEP 668).
RUN python3 -m venv /opt/venv
# Dependencies first: this layer is rebuilt only when requirements.txt changes.
# Wheels only, so no compiler is ever needed; a dependency without a wheel for this
# platform needs its build tools installed here (never in the final stage).
COPY requirements.txt /build/requirements.txt
RUN /opt/venv/bin/pip install --only-binary=:all: -r /build/requirements.txt \
        setuptools==84.2.1
# coverage_runtime is installed into the venv as a package, so it is importable but lives in
# site-packages, which is never measured as user code.
COPY pyproject.toml README.md /build/
COPY coverage_runtime /build/coverage_runtime
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation --no-compile /build \
    && /opt/venv/bin/pip uninstall --yes setuptools pip \
    && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} + \
    && /opt/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/venv/lib
# Optional: the Runtime Interface Emulator, so that `docker run -p 9000:8080 IMAGE` works alone.
# (Plain COPY + RUN rather than RUN --mount, so the file builds without BuildKit too, e.g. sam build.)
ARG RIE_SOURCE=""
COPY . /context
RUN mkdir -p /build/rie \
    && if [ -n "$RIE_SOURCE" ]; then \
        case "$RIE_SOURCE" in \
            http://* | https://* | file://*) \
                /opt/venv/bin/python -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
                    "$RIE_SOURCE" /build/rie/aws-lambda-rie ;; \
            *) cp "/context/$RIE_SOURCE" /build/rie/aws-lambda-rie ;; \
        esac \
        && chmod 0755 /build/rie/aws-lambda-rie; \
    fi \
    && rm -rf /context

# ---------------------------------------------------------------- final stage
FROM ${BASE_IMAGE}
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    LAMBDA_TASK_ROOT=/var/task \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/venv /opt/venv
COPY --from=build /build/rie/ /usr/local/bin/
COPY scripts/entrypoint.sh /usr/local/bin/lambda-entrypoint
# The function code. Add your own packages and modules here.
WORKDIR /var/task
COPY app/ /var/task/app/
# Precompiled bytecode for the code (cold start), and the unprivileged user the function runs
# as outside Lambda. The image's USER stays root: `sam local invoke` builds an overlay FROM this
# image whose `RUN mv /var/rapid/...` needs it. The entry point starts the function itself as
# `lambda` (uid 993) whenever it starts as root (SAM, docker run); Lambda runs every image as
# its own non-root user anyway.
# coverage.py's multiline maps of the code (coverage_runtime.shim.maps_cache): computed
# here once instead of in every environment when branches are measured. Run it again
# after adding code; a file changed since is tokenized at run time as before.
RUN chmod 0755 /usr/local/bin/lambda-entrypoint \
    && python -m compileall -q /var/task \
    && python -m coverage_runtime.shim.maps_cache \
    && if command -v useradd >/dev/null 2>&1; then \
        useradd --system --uid 993 --user-group --no-create-home --home-dir /tmp \
            --shell /usr/sbin/nologin lambda; \
    fi
# Last, so that a new revision rebuilds nothing but these two lines.
ARG CODE_REVISION=unknown
ENV CODE_REVISION=${CODE_REVISION}
LABEL org.opencontainers.image.title="lambda-coverage" \
      org.opencontainers.image.revision=${CODE_REVISION}
# At run time only /tmp is written (coverage data goes to /tmp/lambda-coverage), as in Lambda.
ENTRYPOINT ["/usr/local/bin/lambda-entrypoint"]
CMD ["app.handler.lambda_handler"]
