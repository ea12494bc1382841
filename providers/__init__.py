"""Clients and Pulumi dynamic providers for the outside APIs the estate rents from and drives."""
