"""`memchat serve`: the memory as an HTTP service that OpenAI clients use unchanged.

A face of `memchat.Memory` like the CLI: each route parses its request, calls one Memory method
(on a worker thread) and renders OpenAI's shape; `errors` translates failures to statuses once.
"""
