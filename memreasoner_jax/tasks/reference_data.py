"""Where the released reference files (bAbI, books) live when a checkout has them.

Only tests and comparisons use them; generation never does. The folder is
$MEMREASONER_SHARED_DATA if set, else `shared/data` beside the repository root.
"""

import os
import pathlib


def shared_data_dir() -> pathlib.Path | None:
  """The reference data folder, or None when this checkout has none."""
  env = os.environ.get("MEMREASONER_SHARED_DATA")
  path = pathlib.Path(env) if env else pathlib.Path(__file__).resolve().parents[3] / "shared" / "data"
  return path if path.is_dir() else None
