"""A fleet of gateway processes coordinated through Redis: one rate budget and one token per account.

Opt-in building blocks for the composition root (wired when `cluster.redis_url` is set), among
them `connect` (redis_conn), `FleetMembers` (members), `RedisBudget` (rate_budget, the limiter's
`shared` backend) and `SharedTokens` (tokens, the token manager's `shared` store). Each of these
falls back to the member's local behaviour while Redis does not answer, and recovers when it does.
"""

from gateway.cluster.members import FleetMembers
from gateway.cluster.rate_budget import RedisBudget
from gateway.cluster.redis_conn import connect, redacted
from gateway.cluster.tokens import SharedTokens

__all__ = ["FleetMembers", "RedisBudget", "SharedTokens", "connect", "redacted"]
