"""Model programs built on the ``ppl`` engine: LMs, reward models, tasks, judges, scaling laws.

Installed as ``ppl_models`` (the folder is ``models/``); ``ppl`` never imports it. The ``ppl``
command is :mod:`ppl_models.cli`.
"""
