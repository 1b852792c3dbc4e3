# syntax=docker/dockerfile:1
# Identity: gRPC on 50051, metrics on 9101.
# Only astra-identity and what it depends on (from uv.lock), run as an unprivileged user.
# Build from the repository root:
#   docker build -f deploy/docker/identity.Dockerfile -t astra-identity .
# Migrations ship in services/identity/migrations, which the package finds beside its source;
# run them with the same image: `astra-identity migrate` (the Kubernetes Job does).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY libs/contracts libs/contracts
COPY libs/chassis libs/chassis
COPY services/identity services/identity
# The locked third-party requirements of this one package, hashes checked.
RUN uv export --frozen --package astra-identity --no-dev --no-editable --no-emit-workspace \
        --output-file /tmp/requirements.txt \
 && uv venv /opt/venv --python /usr/local/bin/python3 \
 && uv pip install --python /opt/venv/bin/python --require-hashes -r /tmp/requirements.txt \
 && uv pip install --python /opt/venv/bin/python --no-deps ./libs/contracts ./libs/chassis \
 && uv pip install --python /opt/venv/bin/python --no-deps --editable ./services/identity

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 astra \
 && useradd --system --uid 10001 --gid astra --no-create-home --shell /usr/sbin/nologin astra
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app/services/identity /app/services/identity
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    IDENTITY_GRPC_HOST=0.0.0.0
WORKDIR /app
USER 10001:10001
EXPOSE 50051 9101
ENTRYPOINT ["astra-identity"]
CMD ["serve"]
