"""The leaderboard: stored records aggregated per dataset, budget and run variant, formatted as
markdown tables with training-curve figures. It reads records only; it never trains.
"""
