"""Foundations every layer may use and that use nothing of the harness: the error types a user
sees, the name registry that refuses collisions, the seed of each (fold, trial), ownership of
files written by concurrent processes (claims, temporary files, leftovers of crashed ones), and
test-only crash points.
"""
