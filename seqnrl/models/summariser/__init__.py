"""DSN-style video summarisation policy trained with REINFORCE (diversity, representativeness,
normative and relevance rewards).

``net`` and ``rewards`` are plain torch; the Lightning parts (``SummariserModule``,
``SummaryFeatureDataset``) are imported on first use, so the summarisation pipeline does
not pay for importing Lightning.
"""

from seqnrl.models.summariser.net import DSNPolicy, fit_policy, sample_episodes
from seqnrl.models.summariser.rewards import ReinforceSettings, RewardWeights, summary_rewards

__all__ = [
    "DSNPolicy",
    "ReinforceSettings",
    "RewardWeights",
    "SummariserModule",
    "SummaryFeatureDataset",
    "fit_policy",
    "sample_episodes",
    "summary_rewards",
]


def __getattr__(name: str):
    if name in ("SummariserModule", "SummaryFeatureDataset"):
        from seqnrl.models.summariser import module

        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
