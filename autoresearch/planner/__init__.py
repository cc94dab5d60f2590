"""The built-in offline planner: a seeded search over configs and checked train.py recipes."""
