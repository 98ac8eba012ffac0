"""The sandbox's matching engine: pure, deterministic, exact."""
