"""hafd's benchmark (issue 5): `bench/run`; see bench/README.md."""
