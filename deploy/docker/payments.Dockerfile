# syntax=docker/dockerfile:1
# Payments: gRPC on 50053, metrics on 9103.
# Only astra-payments and what it depends on (from uv.lock), run as an unprivileged user.
# Build from the repository root:
#   docker build -f deploy/docker/payments.Dockerfile -t astra-payments .
# Migrations ship in services/payments/migrations, which the package finds beside its source;
# run them with the same image: `astra-payments migrate` (the Kubernetes Job does).

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
COPY services/payments services/payments
# The locked third-party requirements of this one package, hashes checked.
RUN uv export --frozen --package astra-payments --no-dev --no-editable --no-emit-workspace \
        --output-file /tmp/requirements.txt \
 && uv venv /opt/venv --python /usr/local/bin/python3 \
 && uv pip install --python /opt/venv/bin/python --require-hashes -r /tmp/requirements.txt \
 && uv pip install --python /opt/venv/bin/python --no-deps ./libs/contracts ./libs/chassis \
 && uv pip install --python /opt/venv/bin/python --no-deps --editable ./services/payments

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 astra \
 && useradd --system --uid 10001 --gid astra --no-create-home --shell /usr/sbin/nologin astra
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app/services/payments /app/services/payments
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PAYMENTS_GRPC_HOST=0.0.0.0
WORKDIR /app
USER 10001:10001
EXPOSE 50053 9103
ENTRYPOINT ["astra-payments"]
CMD ["serve"]
