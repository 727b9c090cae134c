"""Baton's Django project: settings, URLs, WSGI/ASGI entry points.

Linear algebra gets one thread per process. Every Django process (gunicorn's workers, the
task worker, ``manage.py``) imports this package before NumPy, and each already runs
several requests or chains side by side: a BLAS thread pool per process only adds threads
that spin for a core. Measured on the selection rule (``bench/selection_scores.py``, 1,800
cells): ~50 ms of CPU per rescore with OpenBLAS' default pool, ~6 ms with one thread. An
operator's own setting wins.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
