"""The file formats, one module per format, each reading untrusted files into the core's types and
writing them back byte-exact:

- ``golden``: Megatron golden JSON (``golden_values_<env>_<platform>[_2nd].json``), every variant;
- ``inference``: inference goldens (keyed by request id);
- ``artifact``: the run artifact (``artifact.json``) and the Megatron file pair it exports to;
- ``run``: a run as a command takes one (a run folder, its artifact, or Megatron golden files as a
  candidate run);

and what they share: ``jsontext`` (JSON text read safely) and ``numeric`` (numbers, steps, grids).
Import from the module that holds a name.
"""

