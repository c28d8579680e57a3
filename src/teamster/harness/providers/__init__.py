"""Provider workers: each registers `provider::<name>::stream` and streams §2.5 events over a channel.

What they share, one concept a module: `events` (the `EventWriter` event builder), `worker` (the
`provider::<name>::stream` handler around a stream function), `errors` (`ProviderError` and error
classification), `credentials` (fetching a key from `auth::get_token`), `tool_names` (function id ↔ tool
name) and `messages` (reading history back to a model). `scripted`, `openai`, `anthropic` and `local`
each expose `create_worker(...) -> Worker`. See docs/harness/providers.md.
"""
