"""Faithful stand-ins for the external programs hafd's agents run (see harness.py)."""
