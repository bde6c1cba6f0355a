"""The pair atlas: a dataset computed once through API-Net and the baseline, then only queried.

* :mod:`~apinet.atlas.build` iterates a dataset once through both models, in resumable chunks
  (``python -m apinet atlas``);
* :mod:`~apinet.atlas.store` is the folder on disk (Parquet table, memory-mapped float16 features,
  manifest with both checkpoints' SHA-256) and :class:`Atlas`, which opens one;
* :mod:`~apinet.atlas.layout` makes the 2-D map (openTSNE; PCA for tiny sets);
* :mod:`~apinet.atlas.query` answers the Dataset view's questions (filters, nearest partners,
  confusion, disagreements, pairs ranked by mechanism strength).
"""

from __future__ import annotations

from .build import AtlasItem, BuildResult, build_atlas, match_classes, resolve_data_spec
from .layout import Layout, layout_2d
from .query import (Confusion, cell_pair, confusion, confusions, disagreements, filter_rows, mine_partners,
                    nearest_partners, ranked_pairs)
from .store import ATLAS_FORMAT, Atlas, AtlasError, read_manifest

__all__ = ["ATLAS_FORMAT", "Atlas", "AtlasError", "AtlasItem", "BuildResult", "Confusion", "Layout", "build_atlas",
           "cell_pair", "confusion", "confusions", "disagreements", "filter_rows", "layout_2d", "match_classes",
           "mine_partners", "nearest_partners", "ranked_pairs", "read_manifest", "resolve_data_spec"]
