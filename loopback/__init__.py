"""Loopback servers that speak the vendor contracts (shared/docs/api-contracts.md), with state and faults.

They serve the provider tests, the engine tests and the sandbox stack: nothing here talks to a real
cloud. Each server binds 127.0.0.1 on a free port and runs in a daemon thread.
"""
