"""Refresh policies: when a region runs and when its stored result is reused."""

from cachekit.policies.base import (
    POLICIES,
    Policy,
    PolicyBinding,
    PolicyState,
    parse_policy,
    policy_kinds,
    register_policy,
)
from cachekit.policies.calibrated import CalibratedPolicy
from cachekit.policies.nonuniform import NonUniformPolicy, quadratic_center_steps
from cachekit.policies.schedule import SchedulePolicy
from cachekit.policies.similarity import SimilarityPolicy
from cachekit.policies.uniform import UniformPolicy

__all__ = [
    "POLICIES",
    "CalibratedPolicy",
    "NonUniformPolicy",
    "Policy",
    "PolicyBinding",
    "PolicyState",
    "SchedulePolicy",
    "SimilarityPolicy",
    "UniformPolicy",
    "parse_policy",
    "policy_kinds",
    "quadratic_center_steps",
    "register_policy",
]
