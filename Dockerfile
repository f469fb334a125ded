# mlflow-gatekeeper: one image for `gatekeeper serve` (API, UI, poller) and `gatekeeper worker`.
#
#   docker build -t mlflow-gatekeeper .
#   docker run --rm -p 8000:8000 -e GATEKEEPER_ADMIN_TOKEN=... mlflow-gatekeeper
#
# See docker-compose.yml for a complete installation (PostgreSQL + MLflow + API + worker).
FROM python:3.11-slim

# GSK_DISABLE_ANALYTICS: giskard phones home unless told not to, and the gatekeeper makes
# no third-party calls.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GSK_DISABLE_ANALYTICS=true \
    GATEKEEPER_DATA_DIR=/data

# Non-root user. /data is created here and owned by it so that a named volume mounted
# there starts out writable by the service (Docker copies the ownership into a new volume).
RUN groupadd --system --gid 10001 gatekeeper \
    && useradd --system --uid 10001 --gid gatekeeper \
        --home-dir /home/gatekeeper --create-home --shell /usr/sbin/nologin gatekeeper \
    && mkdir -p /data \
    && chown gatekeeper:gatekeeper /data

# Dependencies first, in their own layer, read straight from pyproject.toml: a code change
# then rebuilds only the small layer below instead of reinstalling mlflow and friends.
COPY pyproject.toml /tmp/src/pyproject.toml
RUN python -c "import tomllib; deps = tomllib.load(open('/tmp/src/pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write(chr(10).join(deps) + chr(10))" \
    && pip install -r /tmp/requirements.txt \
    && rm -f /tmp/requirements.txt

# The project itself (a regular, non-editable install); the source tree is not kept.
COPY . /tmp/src
RUN pip install --no-deps /tmp/src \
    && rm -rf /tmp/src \
    && gatekeeper --help > /dev/null

USER gatekeeper:gatekeeper
WORKDIR /home/gatekeeper
EXPOSE 8000

# No HEALTHCHECK here: the same image runs `gatekeeper worker`, which serves no HTTP.
# docker-compose.yml checks GET /healthz on the API container only.
CMD ["gatekeeper", "serve", "--host", "0.0.0.0", "--port", "8000"]
