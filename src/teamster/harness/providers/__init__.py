"""Provider workers: each registers `provider::<name>::stream` and streams §2.5 events over a channel.

`stream.py` holds what they share (the event builder, error mapping, tool-name mapping and the worker
wrapper); `scripted`, `openai`, `anthropic` and `local` each expose `create_worker(...) -> Worker`.
See docs/harness/providers.md.
"""
