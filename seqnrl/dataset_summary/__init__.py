"""Dataset summarisation: a small representative subset of a collection of recordings.

* :mod:`.embed` -- video embeddings (normative-encoder mean + motion descriptor; a labelled
  pixel-PCA fallback without a checkpoint);
* :mod:`.select` -- kNN graph communities per class (InfoMotion-style) and the k-center
  greedy baseline, under a budget;
* :mod:`.evaluate` -- downstream comparison: summary vs random vs k-center vs all data;
* :mod:`.pipeline` -- the folder -> CSV/JSON/plots pipeline of ``scripts/summarise_dataset.py``.
"""

from seqnrl.dataset_summary.embed import (
    CollectionEmbedding,
    DescriptorScaler,
    FallbackFrameEncoder,
    NormativeFrameEncoder,
    VideoItem,
    collect_items,
    embed_arrays,
    embed_collection,
    items_from_datamodule,
    load_encoder,
)
from seqnrl.dataset_summary.evaluate import EvalConfig, compare_subsets, format_results
from seqnrl.dataset_summary.pipeline import (
    DatasetSummaryConfig,
    evaluate_collection,
    summarise_dataset,
)
from seqnrl.dataset_summary.select import Pick, k_center_greedy, knn_graph, select_subset

__all__ = [
    "CollectionEmbedding",
    "DatasetSummaryConfig",
    "DescriptorScaler",
    "EvalConfig",
    "FallbackFrameEncoder",
    "NormativeFrameEncoder",
    "Pick",
    "VideoItem",
    "collect_items",
    "compare_subsets",
    "embed_arrays",
    "embed_collection",
    "evaluate_collection",
    "format_results",
    "items_from_datamodule",
    "k_center_greedy",
    "knn_graph",
    "load_encoder",
    "select_subset",
    "summarise_dataset",
]
