"""Code-to-data across sites: one LF pack answered by several sites, only aggregates come back.

Pure core (no Prefect, no MLflow): the site's catalog and policy (:mod:`.config`), the typed aggregate
that is all a site ever returns (:mod:`.models`), what the policy lets out (:mod:`.disclosure`: k-anonymity
with complementary and secondary suppression, seeded Laplace noise), the site's side of a request
(:mod:`.site`: parse, audit, check, count) and the coordinator's side (:mod:`.combine`: per-site and
pooled analysis, label-model agreement, which LFs generalise). Prefect's work pools carry requests and
answers (``flows/site.py``, ``flows/federate.py``); see ``docs/federation.md``.
"""

from flamenco_core.federation.config import DatasetEntry, GroundTruth, NoiseSpec, SiteConfig, SitePolicy, load_site_config
from flamenco_core.federation.models import AGGREGATE_FORMAT, Count, SiteAggregate, SiteOutcome

__all__ = ["AGGREGATE_FORMAT", "Count", "DatasetEntry", "GroundTruth", "NoiseSpec", "SiteAggregate", "SiteConfig",
           "SiteOutcome", "SitePolicy", "load_site_config"]
