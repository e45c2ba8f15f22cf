"""Helpers shared by test suites (integration, e2e): importable, not fixtures."""
