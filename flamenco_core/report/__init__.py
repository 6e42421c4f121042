"""Report pages of a run: ``index.html`` per output folder (:mod:`.index`), rendered by small escaping
HTML builders (:mod:`.html`), and the A/B/C legend that names LF combinations in tables, charts and
MLflow (:mod:`.legend`). Pure: reads an output folder, writes one HTML file; no Prefect, no MLflow."""

from flamenco_core.report.index import INDEX, kind_of, render_index, write_demo_index, write_index
from flamenco_core.report.legend import legend_text, letter, lf_legend, short_name

__all__ = ["INDEX", "kind_of", "legend_text", "letter", "lf_legend", "render_index", "short_name",
           "write_demo_index", "write_index"]
