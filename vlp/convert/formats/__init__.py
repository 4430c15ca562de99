"""One module per checkpoint format: its rule table (import direction), the reference
config <-> vlp config mapping, ``convert`` (import) and, where the reference can hold a
vlp model, ``export``."""
