"""The plugin contract: pluggy hook specifications, the data types that cross the plugin boundary, and the plugin manager. Imports no torch."""
