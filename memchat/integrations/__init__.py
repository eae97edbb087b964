"""memchat as the memory of other libraries' agents, in process: each module here adapts
`memchat.api.Memory` to one library's own memory interface, and imports that library itself
(memchat does not need it installed)."""
