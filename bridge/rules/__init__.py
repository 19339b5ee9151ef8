"""The rules: JMESPath expressions, templates and timestamps; events in, commands out."""
