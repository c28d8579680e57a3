"""Ids of the engine functions the protocol itself relies on: any worker, in any language, calls them."""

# A worker names itself (and pins its namespace) with this call first thing on every connection.
WORKERS_REGISTER = "engine::workers::register"
# A data channel (§4.9): returns the refs of its writer and reader ends.
CHANNELS_CREATE = "engine::channels::create"
