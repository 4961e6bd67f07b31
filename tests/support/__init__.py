"""Helpers shared by the publish tests: fixture marts and the Chromium installer."""
