"""Plugins shipped with pgdag: leadership, pruning, workflows."""
