# syntax=docker/dockerfile:1
# The visitor-sync image: the operator (`visitor-sync operator`, the chart's Deployment)
# and the importer (`visitor-sync import`, the Jobs the operator starts) in one.
#
#   docker build -t ghcr.io/visitoraware/visitor-sync:0.1.0 .
#
# Two stages: the first builds the project's wheel and installs it with its
# dependencies into a virtualenv; the second is the plain Python base plus that
# virtualenv, nothing else (no compiler, no pip cache, no source tree). Every
# dependency ships manylinux wheels (psycopg[binary] brings its own libpq), so
# nothing is compiled. docs/images.md says more; tests/test_images.py checks the
# paths and commands named here.

# An exact Python patch release on Debian 12. For reproducible builds pin its digest
# too: --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest>
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# The dependencies first, exactly as pinned (versions and hashes: scripts/lock), in
# their own layer: a change to the code alone does not reinstall them.
COPY requirements.lock ./
RUN python -m venv /opt/visitor-sync \
    && /opt/visitor-sync/bin/pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY importer/ importer/
COPY operator/ operator/
# --no-deps: everything it needs is installed above; `pip check` fails the build when
# the lock no longer satisfies pyproject.toml.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/visitor-sync/bin/pip install --no-deps /wheels/*.whl \
    && /opt/visitor-sync/bin/pip check \
    && /opt/visitor-sync/bin/pip uninstall -y pip setuptools

FROM ${PYTHON_IMAGE}
COPY --from=build /opt/visitor-sync /opt/visitor-sync
# The bytecode pip compiled stays: the pods' root filesystem is read-only, so without
# it every Job would compile the whole dependency tree again at start.
ENV PATH=/opt/visitor-sync/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
# Any non-root uid works (the pods set it too); no user database entry is needed.
# The chart's operator.runAsUser and the importer Jobs' runAsUser are this uid.
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["visitor-sync"]
CMD ["--help"]
