"""Scenario Exchange: the marketplace service (storage, rules, HTTP, web pages, CLI)."""
