"""Customer safety: a command sent once per customer whatever the producers do (the ledger)."""
