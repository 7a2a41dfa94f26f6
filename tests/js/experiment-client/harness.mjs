// Drives the real @amplitude/experiment-js-client under Node for tests/test_js_client_parity.py, so
// ExposureTrackingClient can be held call by call to the exposure rules of Amplitude's reference client.
//
// Node has no Web Storage: the client keeps its variants in localStorage (and probes sessionStorage), so
// both get an in-memory Storage here. The client is built with `new ExperimentClient` (not
// `Experiment.initialize`, whose default user provider adds a browser's device id and context) and only
// ever `fetch()`es, so every variant comes from the server's /sdk/v2/vardata (GET, the user in
// X-Amp-Exp-User), the same endpoint the Python RemoteEvaluationClient POSTs to.
//
// Protocol: one JSON command per stdin line, one JSON answer per stdout line, in order.
//   {"op": "new", "serverUrl": "...", "deploymentKey": "...", "fallbackVariant": <variant> (optional)}
//   {"op": "fetch", "user": {...}}
//   {"op": "variant", "flag": "...", "fallback": <variant|string> (optional)}
//   {"op": "exposure", "flag": "..."}
//   {"op": "all"}
// Answers: {"ok": true, "returned": ..., "decided": [exposure...], "sent": [exposure...]}, or
// {"ok": false, "error": "..."}. `decided` is what the client chose to track during the call (before its
// per-user dedupe), `sent` what its exposureTrackingProvider received (after it), each exposure as
// {"flag_key", "variant" (null: unset), "experiment_key" (null: none)}.

import { createInterface } from 'node:readline'

class MemoryStorage {
  #items = new Map()
  get length() { return this.#items.size }
  key(i) { return [...this.#items.keys()][i] ?? null }
  getItem(k) { return this.#items.has(String(k)) ? this.#items.get(String(k)) : null }
  setItem(k, v) { this.#items.set(String(k), String(v)) }
  removeItem(k) { this.#items.delete(String(k)) }
  clear() { this.#items.clear() }
}

globalThis.localStorage = new MemoryStorage()
globalThis.sessionStorage = new MemoryStorage()

const { ExperimentClient } = await import('@amplitude/experiment-js-client')

const plain = (exposure) => ({
  flag_key: exposure.flag_key,
  variant: exposure.variant ?? null,
  experiment_key: exposure.experiment_key ?? null,
})

let client = null
let decided = []
let sent = []
let instance = 0

function create(command) {
  globalThis.localStorage.clear()
  globalThis.sessionStorage.clear()
  instance += 1
  const config = {
    serverUrl: command.serverUrl,
    instanceName: `parity-${instance}`,
    retryFetchOnFailure: false,
    throwOnError: true,
    exposureTrackingProvider: { track: (exposure) => { sent.push(plain(exposure)) } },
  }
  if (command.fallbackVariant !== undefined) config.fallbackVariant = command.fallbackVariant
  client = new ExperimentClient(command.deploymentKey, config)
  // The per-user dedupe sits between the client's decision and the provider; recording what goes
  // into it shows what was decided. Internal to the pinned version, so its absence fails loudly.
  const tracker = client.userSessionExposureTracker
  if (!tracker || typeof tracker.track !== 'function') {
    throw new Error('this @amplitude/experiment-js-client has no userSessionExposureTracker.track')
  }
  const track = tracker.track.bind(tracker)
  tracker.track = (exposure, user) => { decided.push(plain(exposure)); track(exposure, user) }
  return null
}

async function run(command) {
  if (command.op === 'new') return create(command)
  if (client === null) throw new Error('no client: send {"op": "new"} first')
  switch (command.op) {
    case 'fetch':
      await client.fetch(command.user)
      return null
    case 'variant':
      return command.fallback === undefined ? client.variant(command.flag) : client.variant(command.flag, command.fallback)
    case 'exposure':
      client.exposure(command.flag)
      return null
    case 'all':
      return client.all()
    default:
      throw new Error(`unknown op ${JSON.stringify(command.op)}`)
  }
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
for await (const line of lines) {
  if (!line.trim()) continue
  decided = []
  sent = []
  let answer
  try {
    const returned = await run(JSON.parse(line))
    answer = { ok: true, returned: returned ?? null, decided, sent }
  } catch (error) {
    answer = { ok: false, error: String(error?.stack ?? error) }
  }
  process.stdout.write(JSON.stringify(answer) + '\n')
}
// The client leaves its fetch-timeout timers running; nothing else is pending once stdin has ended.
process.exit(0)
