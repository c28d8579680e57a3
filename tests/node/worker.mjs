// A worker on the official Node iii-sdk, driven by tests/test_node_sdk_compat.py.
// Usage: node worker.mjs WS_URL. Stdout carries only JSON lines: one per state event it receives.
// With TEAMSTER_TOKEN set it sends it as the SDK allows: an Authorization header on the upgrade.
import { webcrypto } from 'node:crypto'
import { InvocationError, registerWorker, TriggerAction } from 'iii-sdk'

// The SDK makes ids with the global `crypto`, which Node 18 (Debian bookworm's) does not expose; a no-op on 20+.
globalThis.crypto ??= webcrypto

// The SDK logs its connection chatter with console.debug (stdout): keep stdout for our JSON lines.
console.debug = console.error

const url = process.argv[2]
const iii = registerWorker(url, {
  workerName: 'node-compat',
  enableMetricsReporting: false,
  otel: { enabled: false },
  invocationTimeoutMs: 5000,
  reconnectionConfig: { initialDelayMs: 100, maxDelayMs: 500 },
  headers: process.env.TEAMSTER_TOKEN ? { Authorization: `Bearer ${process.env.TEAMSTER_TOKEN}` } : undefined,
})

iii.registerFunction('node::upper', async (data) => ({ text: data.text.toUpperCase(), caller: data._caller_worker_id }))

iii.registerFunction('node::boom', async () => {
  throw new Error('kaboom')
})

// The Node side of a call the test wants made: `{function_id, payload, queue?}` in, `{result}` or `{error}` out.
iii.registerFunction('node::trigger', async ({ function_id, payload, queue }) => {
  const action = queue === undefined ? undefined : TriggerAction.Enqueue({ queue })
  try {
    return { result: (await iii.trigger({ function_id, payload, action })) ?? null }
  } catch (err) {
    if (!(err instanceof InvocationError)) throw err
    return { error: { name: err.name, code: err.code, message: err.message, function_id: err.function_id } }
  }
})

iii.registerFunction('node::hello', async (req) => ({
  status_code: 201,
  body: { hello: req.path_params.name, q: req.query_params.q ?? null },
}))
iii.registerTrigger({
  type: 'http',
  function_id: 'node::hello',
  config: { api_path: 'hello/:name', http_method: 'GET' },
})

iii.registerFunction('node::on_change', async (event) => {
  process.stdout.write(JSON.stringify(event) + '\n')
  return null
})
iii.registerTrigger({ type: 'state', function_id: 'node::on_change', config: { scope: 'orders' } })
