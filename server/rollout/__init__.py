"""Rollouts: the pure planner, judgement and transitions, and the controller loop around them."""
