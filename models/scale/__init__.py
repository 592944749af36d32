"""The main job, ``ppl scale``: inference-time scaling methods × budgets on the bundled task.

:func:`~ppl_models.scale.job.run_scale` runs every chosen method of :mod:`ppl.scaling` at every
budget on test problems of the bundled arithmetic task with the bundled LM and a reward model
(learned PRM, oracle, or a noisier PRM), and returns accuracy with 95% intervals and the compute
spent per method and budget; :mod:`ppl_models.scale.report` prints the table and writes the JSON and
the plot; :mod:`ppl_models.scale.cli` is the command line.
"""

from ppl_models.scale.job import METHODS, ScaleConfig, ScaleResults, run_scale

__all__ = ["METHODS", "ScaleConfig", "ScaleResults", "run_scale"]
