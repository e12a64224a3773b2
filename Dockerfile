# syntax=docker/dockerfile:1
# The Accord operator image: `docker build -t accord-operator:0.1.0 .`
#
# Two stages: the first builds the wheel and installs it, with its dependencies, into a virtual
# environment; the second copies only that environment onto a clean base. Both stages use the same
# base image, so the environment's interpreter links stay valid. Every dependency ships as a binary
# wheel for glibc, so neither stage needs a compiler.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# README.md* matches nothing in a checkout without one; pyproject.toml names it but does not need it.
COPY pyproject.toml README.md* ./
COPY src/accord ./src/accord
# cryptography: the webhook signs its own serving certificate when none is mounted. pip compiles
# the bytecode here, as the root filesystem is read-only at run time; nothing installs packages
# then, so pip and setuptools leave the environment.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install /wheels/accord-*.whl "cryptography>=42" \
 && /opt/venv/bin/pip uninstall --yes pip setuptools wheel

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="accord" \
      org.opencontainers.image.description="A Kubernetes operator in which agents negotiate every scaling and placement decision." \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed, unprivileged identity (the chart runs as 65532:65532 with a read-only root filesystem).
RUN groupadd --system --gid 65532 accord \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin accord
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
WORKDIR /tmp
# /metrics, /healthz and /readyz; the approval webhook.
EXPOSE 8080 9443
ENTRYPOINT ["accord"]
CMD ["run"]
