"""A sweep's results as one table (CSV and markdown) and one figure (PNG).

Rows are plain dicts, one per run; a run that failed has no metrics but keeps its status and log
path, so the table shows at a glance which runs to look at.
"""

import csv
import fnmatch
import math

import matplotlib

matplotlib.use("Agg")  # files only: sweeps run on machines without a display
from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

Row = dict[str, object]


def _cell(value: object) -> str:
  if isinstance(value, float):
    return f"{value:.4g}"
  return "" if value is None else str(value)


def write_csv(rows: list[Row], columns: list[str], path: str) -> None:
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)


def write_markdown(rows: list[Row], columns: list[str], path: str) -> None:
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(_cell(row.get(c)).replace("|", "\\|") for c in columns) + " |"
            for row in rows]
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")


def metric_value(row: Row, pattern: str) -> float | None:
  """The mean of the row's metrics whose names match `pattern` (fnmatch), e.g. eval/*/babilong:
  one number per run whatever task it evaluated."""
  values = [float(v) for k, v in row.items() if fnmatch.fnmatchcase(k, pattern)
            and isinstance(v, (int, float)) and math.isfinite(v)]
  return sum(values) / len(values) if values else None


def plot(rows: list[Row], pattern: str, path: str) -> None:
  """One horizontal bar per run; runs without the metric (failed, unfinished) are marked."""
  values = [metric_value(row, pattern) for row in rows]
  fig, ax = plt.subplots(figsize=(8, 1.5 + 0.3 * len(rows)))
  positions = range(len(rows))
  ax.barh(positions, [0.0 if v is None else v for v in values], color="tab:blue")
  for y, (row, value) in enumerate(zip(rows, values)):
    if value is None:
      ax.text(0, y, f" {row['status']}", va="center", color="tab:red")
  ax.set_yticks(list(positions), [str(row["run"]) for row in rows], fontsize=7)
  ax.invert_yaxis()
  ax.set_xlabel(pattern)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
