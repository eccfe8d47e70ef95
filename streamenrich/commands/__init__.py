"""Command groups of the ``streamenrich`` CLI beyond ``reference``."""
