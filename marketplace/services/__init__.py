"""Business rules: module-level functions, session first, one transaction per public write."""
