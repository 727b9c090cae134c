"""gunicorn settings for Baton; gunicorn reads this file from the working directory.

The Dockerfile and docker-compose.yml start `gunicorn config.wsgi` from /app, so these apply
to both; a flag on the command line still wins.
"""

from __future__ import annotations

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
# Processes × threads: requests spend much of their time waiting on PostgreSQL, so a few
# threads per process keep two cores busy without a process per annotator.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = 60
# gunicorn's default keep-alive is 2 s: an annotator who reads for 2 s sends the next request
# on a connection the server is closing, and gets "connection reset by peer". Keep idle
# connections longer than a reading pause and than a proxy's idle timeout (commonly 60 s).
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "75"))
accesslog = "-"
