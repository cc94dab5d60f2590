"""The package behind the seven faces at the top of the repository, one folder per role (see README, Layout)."""
