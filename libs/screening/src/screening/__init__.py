"""Sanctions screening: an OFAC SDN list and a fuzzy name matcher over it (pure Python)."""
