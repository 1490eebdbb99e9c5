"""The completion layer: prompt building, stop rules and the service the server delegates to."""
