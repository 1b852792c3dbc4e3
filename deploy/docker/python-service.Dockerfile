# syntax=docker/dockerfile:1
# Every Python service's image: only its package and what it depends on (from uv.lock),
# run as an unprivileged user. Build from the repository root, naming the service:
#   docker build -f deploy/docker/python-service.Dockerfile \
#     --build-arg SERVICE=ledger --build-arg PACKAGE=astra-ledger \
#     --build-arg LISTEN=LEDGER_GRPC_HOST -t astra-ledger .
# (deploy/README.md lists the four.) SERVICE is the folder under services/, PACKAGE its
# package and console script, LISTEN the variable that makes it listen on every interface.
# The entrypoint is that console script (`serve` by default); a service's migrations ship in
# services/<service>/migrations, found beside its source: `migrate` runs them.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG SERVICE
ARG PACKAGE
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN test -n "${SERVICE}" && test -n "${PACKAGE}" \
 && pip install --no-cache-dir uv==0.13.9
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY libs/contracts libs/contracts
COPY libs/chassis libs/chassis
COPY libs/screening libs/screening
COPY services/${SERVICE} services/${SERVICE}
# The locked third-party requirements of this one package, hashes checked.
RUN uv export --frozen --package ${PACKAGE} --no-dev --no-editable --no-emit-workspace \
        --output-file /tmp/requirements.txt \
 && uv venv /opt/venv --python /usr/local/bin/python3 \
 && uv pip install --python /opt/venv/bin/python --require-hashes -r /tmp/requirements.txt \
 && uv pip install --python /opt/venv/bin/python --no-deps ./libs/contracts ./libs/chassis \
        ./libs/screening \
 && uv pip install --python /opt/venv/bin/python --no-deps --editable ./services/${SERVICE} \
 && ln -s ${PACKAGE} /opt/venv/bin/astra-service

FROM ${PYTHON_IMAGE} AS runtime
ARG SERVICE
ARG LISTEN
# libgomp1: the OpenMP runtime LightGBM's library links to (payments' fraud model); small,
# and one image recipe for every service keeps them alike.
RUN apt-get update \
 && apt-get install --yes --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 astra \
 && useradd --system --uid 10001 --gid astra --no-create-home --shell /usr/sbin/nologin astra \
 && mkdir /data && chown 10001:10001 /data
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app/services/${SERVICE} /app/services/${SERVICE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ${LISTEN}=0.0.0.0
# The service's own writable folder: a relative SQLite default (`make run`'s) lands here.
WORKDIR /data
USER 10001:10001
ENTRYPOINT ["astra-service"]
CMD ["serve"]
