"""The edge that reads and writes files: the golden, inference, artifact and run formats (``formats``,
one module each), case files (``case``), TensorBoard and log ingestion (``ingest``), a command's
operands and policies (``inputs``), the linter (``validate``), bounded parsing of hostile input
(``bounded``) and atomic writes (``atomic``).
Above the pure core (``goldens.core``), below the store, approvals and the workflow."""
