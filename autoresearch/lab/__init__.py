"""The loop between runs: jobs on seeds, slots, sizing, recording each result, confirmations, judge, goal, budget."""
