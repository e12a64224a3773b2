# syntax=docker/dockerfile:1
# The Accord operator image: `docker build -t accord-operator:0.1.0 .`
#
# Two stages: the first installs Accord's run-time dependencies exactly as locked in
# requirements/prod.txt (each file checked against its sha256), then Accord itself, into a virtual
# environment; the second copies only that environment onto a clean base. Only the `accord`
# package goes in: the development harness (dev/, the accord-dev package: local control plane,
# certificate authority, workload emulator, demo) never does. Both stages use the same base image,
# pinned by digest, so the environment's interpreter links stay valid. Every dependency ships as a
# binary wheel for glibc, so neither stage needs a compiler.
#
# The base: python:3.11-slim-bookworm, pinned by digest (docs/install.md says how to move it).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The dependencies first, in a layer of their own that a change to the sources does not rebuild.
COPY requirements/prod.txt ./requirements/prod.txt
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes -r requirements/prod.txt
# README.md* matches nothing in a checkout without one; pyproject.toml names it but does not need it.
COPY pyproject.toml README.md* ./
COPY src/accord ./src/accord
# Built with the locked setuptools (no build isolation, so nothing unlocked is fetched). pip
# compiles the bytecode here, as the root filesystem is read-only at run time; nothing installs
# packages then, so pip, setuptools and wheel leave the environment.
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation . \
 && /opt/venv/bin/pip uninstall --yes pip setuptools wheel \
 && /opt/venv/bin/python -c "import accord.cli" \
 && ! /opt/venv/bin/python -c "import accord_dev" 2>/dev/null

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
