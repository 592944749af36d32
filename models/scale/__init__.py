"""The main job, ``ppl scale``: inference-time scaling methods × budgets on the bundled task.

:func:`~ppl_models.scale.job.run_scale` runs every chosen method of :mod:`ppl.scaling` at every
budget on test problems of the bundled arithmetic task with the bundled LM and a reward model
(learned PRM, oracle, or a noisier PRM), and returns accuracy with 95% intervals and the compute
spent per method and budget; :mod:`ppl_models.scale.report` prints the table and writes the JSON and
the plot; :mod:`ppl_models.scale.cli` is the command line.
"""

from ppl_models.lazy import lazy_exports

# Names are imported on first use (PEP 562), so that `ppl --help` does not import JAX.
_EXPORTS = {
    **dict.fromkeys([
        'METHODS', 'ScaleConfig', 'ScaleResults', 'run_scale'
    ], 'job'),
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
