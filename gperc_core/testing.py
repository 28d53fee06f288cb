"""pytest plugin of gperc (``gperc-core[testing]``): fixtures and the plugin conformance suite.

Placeholder until the plugin-system work lands: defines nothing yet.
"""
