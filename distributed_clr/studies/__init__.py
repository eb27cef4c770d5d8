"""One-command studies (``dclr study NAME``): the seed papers' tables and figures, run at a
chosen scale, resumable, recorded in MLflow, and reported next to the published numbers.

* ``plan``: what a study is made of (encoders, evaluations, report tables).
* ``scales``: ``ci``, ``laptop``, ``paper`` and factors of the paper's sample sizes.
* ``catalog``: the studies (``STUDIES``).
* ``runner``: ``run_study``, from the data to the report, piece by piece.
* ``report``: ``report.md``, ``report.html``, ``results.csv``; ``published.yaml`` holds the
  papers' numbers with their sources.
"""

from distributed_clr.studies.catalog import STUDIES, get_study
from distributed_clr.studies.runner import StudyOutcome, run_study
from distributed_clr.studies.scales import NAMED_SCALES, parse_scale

__all__ = ["NAMED_SCALES", "STUDIES", "StudyOutcome", "get_study", "parse_scale", "run_study"]
