// Segment's own Amplitude (Actions) destination as a reference: what would it POST for each event?
//
// Runs every input event through the destination's "Track Calls" preset exactly as Segment's runtime does
// (actions-core Destination#onEvent: subscription filter, mapping resolution, empty-value removal, schema
// validation with coercion, perform()), with the HTTP call to Amplitude intercepted by nock, so nothing
// leaves the machine. One Node process handles the whole batch.
//
// Usage: node oracle.mjs [events.json]   (no file: read stdin)
//   Input: a JSON array of Segment events, or JSON lines (one event per line).
//   Output: one JSON line per input event, in input order:
//     {"index": i, "outcome": "sent", "event": {...}, "body": {...}}     the Amplitude event and full body
//     {"index": i, "outcome": "error", "error": {"name", "message", "status"}}   refused (e.g. validation)
//     {"index": i, "outcome": "not_subscribed"}                          the preset's trigger did not match
//     {"index": i, "outcome": "not_an_event"}                            not a JSON object (Segment never sends it)
//   The first line is {"oracle": {...}} with the package versions and the preset used.
import { createRequire } from 'node:module'
import { readFileSync } from 'node:fs'

const require = createRequire(import.meta.url)
const nock = require('nock')
const { Destination } = require('@segment/actions-core')
const amplitude = require('@segment/action-destinations/dist/destinations/amplitude').default

const PRESET_NAME = 'Track Calls'
const preset = amplitude.presets.find((p) => p.name === PRESET_NAME)
if (!preset) throw new Error(`the Amplitude destination has no "${PRESET_NAME}" preset`)

// Placeholder credentials: the request never leaves the process (nock), and the key is not printed.
const SETTINGS = {
  apiKey: 'oracle-api-key',
  secretKey: 'oracle-secret-key',
  endpoint: 'north_america',
  subscription: { subscribe: preset.subscribe, partnerAction: preset.partnerAction, mapping: preset.mapping }
}

function readInput() {
  const path = process.argv[2]
  const text = path && path !== '-' ? readFileSync(path, 'utf8') : readFileSync(0, 'utf8')
  const trimmed = text.trim()
  if (trimmed.startsWith('[')) return JSON.parse(trimmed)
  return trimmed
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line))
}

function versionOf(pkg) {
  // Read from node_modules directly: actions-core's "exports" does not expose its package.json.
  const url = new URL(`./node_modules/${pkg}/package.json`, import.meta.url)
  return JSON.parse(readFileSync(url, 'utf8')).version
}

async function main() {
  const events = readInput()
  nock.disableNetConnect()
  let captured = []
  nock('https://api2.amplitude.com')
    .persist()
    .post('/2/httpapi')
    .reply(200, function (_uri, body) {
      captured.push(typeof body === 'string' ? JSON.parse(body) : body)
      return { code: 200, events_ingested: 1 }
    })

  const destination = new Destination(amplitude)
  const out = [
    JSON.stringify({
      oracle: {
        '@segment/action-destinations': versionOf('@segment/action-destinations'),
        '@segment/actions-core': versionOf('@segment/actions-core'),
        preset: PRESET_NAME,
        subscribe: preset.subscribe,
        partnerAction: preset.partnerAction
      }
    })
  ]
  for (let index = 0; index < events.length; index++) {
    captured = []
    let line
    const event = events[index]
    if (event === null || typeof event !== 'object' || Array.isArray(event)) {
      // Segment only ever delivers JSON objects; an array here would be taken as a batch.
      out.push(JSON.stringify({ index, outcome: 'not_an_event' }))
      continue
    }
    try {
      const results = await destination.onEvent(event, SETTINGS)
      if (captured.length === 1) {
        line = { index, outcome: 'sent', event: captured[0].events[0], body: captured[0] }
      } else if (captured.length === 0 && results.some((r) => r && r.output === 'not subscribed')) {
        line = { index, outcome: 'not_subscribed' }
      } else {
        line = {
          index,
          outcome: 'error',
          error: { name: 'OracleError', message: `${captured.length} requests, results ${JSON.stringify(results)}` }
        }
      }
    } catch (err) {
      line = {
        index,
        outcome: 'error',
        error: { name: err?.name ?? 'Error', message: String(err?.message ?? err), status: err?.status ?? null }
      }
    }
    out.push(JSON.stringify(line))
  }
  process.stdout.write(out.join('\n') + '\n')
}

main().catch((err) => {
  process.stderr.write(`oracle failed: ${err?.stack ?? err}\n`)
  process.exit(2)
})
