# Baton for production: gunicorn serves config.wsgi on port 8000; the same image runs the
# task worker (`python manage.py db_worker`). See docker-compose.yml and .env.example.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STATIC_ROOT=/app/staticfiles

# g++: PyTensor (under PyMC) compiles its C ops with it; without it, it falls back to slow
# pure-Python ops. nutpie itself compiles with numba and needs nothing more.
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Dependencies first, read from pyproject.toml, so that a code change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY . .
# The settings refuse to load without a SECRET_KEY; collectstatic needs none that matters.
RUN pip install --no-deps . \
    && rm -rf build *.egg-info \
    && BATON_INSECURE_DEV_KEY=1 python manage.py collectstatic --noinput --verbosity 0

# Run as an unprivileged user; its home holds the PyTensor compile cache (a volume in compose).
# /app/var/media (MEDIA_ROOT) holds uploads until the worker has imported them (a volume too).
RUN useradd --create-home --home-dir /home/baton --uid 10001 --user-group baton \
    && mkdir -p /home/baton/.pytensor /app/var/media \
    && chown baton:baton /home/baton/.pytensor /app/var/media
USER baton

EXPOSE 8000
CMD ["gunicorn", "config.wsgi", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]
