"""The data-transaction reward: policy file and computation from the ledger."""

from .compute import compute_rewards
from .policy import Policy, load_policy

__all__ = ["Policy", "compute_rewards", "load_policy"]
