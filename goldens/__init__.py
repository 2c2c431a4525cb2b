"""Golden-value toolkit for distributed-training regression tests.

Import-light on purpose: the CLI's ``--help`` must not pull numpy's heavy friends, pandas or torch.
"""
__version__ = "0.1.0"
