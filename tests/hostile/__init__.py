"""Hostile submissions and the machinery to grade them at every sandbox level (staff-only test material)."""
