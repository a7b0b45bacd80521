"""Template tags of the staff inbox (the admin index's waiting count)."""
