"""The annotate app: studies, their setup, their data, and the annotators' grading.

Shared at the top: the models, hooks (the one door to calibration), permissions, numbers,
the URL confs, the worker's tasks, the demo study, admin, commands and template tags.
Its wings:

* ``setup``: study configuration for admins (services, forms, pages, blindness checks).
* ``imports``: the study's data in and out (the import service, upload jobs, export, API).
* ``grading``: the annotators' work (the queue, side by side, history, pages, queue API).
"""
