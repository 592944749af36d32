"""Model programs built on the ``ppl`` engine: LMs, reward models, tasks, judges, scaling laws.

Filled in by later work (see DESIGN.md); ``ppl`` never imports ``models`` except ``ppl.cli``.
"""
