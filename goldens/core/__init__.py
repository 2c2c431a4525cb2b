"""The pure middle: metric series and goldens (``model``), alignment, the tolerance policy, the mode
table, the comparison engine and its result types, structural drift, statistics, and Megatron's
conventions as data (``megatron``).

Pure is a checked contract (``.importlinter`` and tests/test_layers.py): nothing here imports the rest
of the project, opens a file, runs a process, or reads the environment. Numbers in, dataclasses and
frames out; files, processes, git and HTTP live at the edges (``goldens.files``, ``goldens.store``,
``goldens.approve``, ``goldens.fetch``, ``goldens.megatron``).
"""
