"""The memory planner ("VRAM Tetris" made exact): KV-cache formulas per attention
kind, machine profiles, and the plan of a whole stack."""
