"""What the commands decide and assemble, one module per job, so that a command only parses, calls one
function, renders and maps errors:

- ``judge``: one run against the store's golden, staged for review when failing (``should_stage``, the
  one staging rule) — the path ``golden diff``, ``golden check``, ``golden judge``, ``goldens.judge``
  and the pytest plugin share;
- ``operands``: ``golden diff`` (one run against the store, or two operands against each other);
- ``publish``: ``golden check`` — the run judged, its result and reports kept beside it;
- ``bulk``: many candidates in one process (``golden judge``) and what that writes;
- ``validate``: ``golden validate``, with the audit of the committed goldens against themselves;
- ``show``: a case's goldens as ``golden show`` shows them;
- ``select``: what ``golden approve`` / ``golden reject`` act on;
- ``calibration``: tolerances from repeated runs (``golden stats``).

Layering: the front doors (CLI, API, pytest plugin) import these modules; they import inputs, the
core, approve, the store and, to publish, the reports. They never print: what to tell the user comes
back as ``notes``. Everything is imported at the top except the report builder (it loads pandas):
``goldens.judge`` and ``golden diff`` need numpy only, and the CLI imports these modules inside its
commands. This package presents no names itself: import them from the module of their job.
"""
