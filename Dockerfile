# tusd-py serving uploads from the volume /data on port 1080, as an unprivileged user.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# README.md is part of the package metadata (pyproject's `readme`), so the build needs it.
COPY pyproject.toml README.md /src/
COPY tusd_py /src/tusd_py
RUN pip install --no-cache-dir /src \
    && rm -rf /src

# A fixed numeric uid/gid, so a bind-mounted directory can be given to it and an orchestrator
# can verify that the container does not run as root.
RUN groupadd --system --gid 10001 tusd \
    && useradd --system --uid 10001 --gid tusd --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin tusd \
    && mkdir /data \
    && chown tusd:tusd /data

USER 10001:10001
WORKDIR /data
# Declared after the chown: a new named volume starts as a copy of the image's /data, owner included.
VOLUME /data
EXPOSE 1080

ENTRYPOINT ["tusd-py", "serve"]
CMD ["--host", "0.0.0.0", "--upload-dir", "/data"]
