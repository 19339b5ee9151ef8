"""Decoding: record bytes to events (JSON; Avro, plain or in the schema registry's
wire format, with the registry client)."""
