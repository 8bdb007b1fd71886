"""Django's own storage test suites run against NatsStorage: see README.md and run.py."""
