# The kuberl operator image: kopf + the spec models, without torch or ray.
#   docker build -t ghcr.io/kuberl/kuberl-operator:0.1.0 .
# Versions come from requirements/ci.lock, the lock CI installs, so the image runs what CI tested.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml ./
COPY requirements/ci.lock requirements/ci.lock
COPY trainer_image/kuberl trainer_image/kuberl
COPY operator/kuberl_operator operator/kuberl_operator
RUN pip install -c requirements/ci.lock "./[operator]"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="kuberl-operator" \
      org.opencontainers.image.description="kopf operator reconciling RLTrainingJobs into KubeRay RayJobs" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --gid 10001 kuberl && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin kuberl
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    KUBERL_OPERATOR_METRICS_PORT=8081
# Numeric user, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 8081 8082
ENTRYPOINT ["python", "-m", "kuberl_operator"]
