"""Intilery: the HTTP client with its contract, answer classification and retries,
batching, and the rate limit (local bucket, or shared through Redis)."""
