"""Comparisons: ``check`` against a committed baseline, ``diff`` of two models, the lineage
table. Imports analysis/ and everything below it."""
