"""Runs and their records: a run as a frozen value (its identity, seed and result path), its
provenance (config hash, staleness), executing one run and scheduling a grid of them, the result
store and its typed records, migration of older results, reproducibility locks, the plug-in
contract check and the speed benchmark.
"""
