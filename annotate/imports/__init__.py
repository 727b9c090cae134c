"""The study's data in and out: imports (in the request or the worker), label export."""
