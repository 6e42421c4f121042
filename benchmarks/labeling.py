"""The labeling benchmark of issue 3, both halves in one command.

    .venv/bin/python benchmarks/labeling.py

1. ``labeling_applier.py``: 1,000,000 flows x 10 LFs, our applier (declarative specs and vectorized
   Python LFs) against Snorkel's PandasLFApplier (subsampled and scaled) and a raw-numpy lower bound.
2. ``labeling_model.py``: 6,000,000 rows x 10 LFs, apply + LabelModel fit + predict, time and peak memory.
Each half runs in its own process so peak memory is its own; extra arguments are not forwarded.
"""

import subprocess
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
rc = 0
for script, args in (("labeling_applier.py", []), ("labeling_model.py", ["--rows", "6000000", "--cores", "2", "--seed", "0"])):
    print(f"\n== {script} {' '.join(args)}", flush=True)
    rc |= subprocess.call([sys.executable, str(here / script), *args])
sys.exit(rc)
