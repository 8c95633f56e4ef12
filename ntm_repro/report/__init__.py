"""``ntm-repro-report``: run folders -> tidy frames -> statistics -> figures, tables -> PDF."""
