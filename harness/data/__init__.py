"""Data: the dataset catalog (``datasets.toml``), importing and downloading datasets, decoding
audio, the decoded-clip cache, folds and their fingerprints, and the synthetic datasets used by
tests. Nothing here imports torch, so ``bench fetch`` and ``bench doctor`` start fast.
"""
