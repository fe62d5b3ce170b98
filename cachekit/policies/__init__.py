"""Refresh policies: when a region runs and when its stored result is reused."""

from cachekit.policies.adaptive import AdaptivePolicy
from cachekit.policies.base import POLICIES, Policy, PolicyState, parse_policy, policy_kinds, register_policy
from cachekit.policies.nonuniform import NonUniformPolicy, quadratic_center_steps
from cachekit.policies.similarity import SimilarityPolicy
from cachekit.policies.uniform import UniformPolicy

__all__ = [
    "AdaptivePolicy",
    "POLICIES",
    "NonUniformPolicy",
    "Policy",
    "PolicyState",
    "SimilarityPolicy",
    "UniformPolicy",
    "parse_policy",
    "policy_kinds",
    "quadratic_center_steps",
    "register_policy",
]
