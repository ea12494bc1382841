"""Component resources and the typed estate specification they are built from."""
