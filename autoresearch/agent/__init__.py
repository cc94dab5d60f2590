"""What the LLM sees and how its plans are checked: the tutorial API, the subagent, plan feedback, the loop guard."""
