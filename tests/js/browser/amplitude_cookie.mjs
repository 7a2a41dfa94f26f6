// Amplitude's own AmplitudeCookie (@amplitude/experiment-node-server), run on the values a Python test
// gives, so that segment_exposure.identity.from_cookies can be compared with it.
//
// stdin: {"parse": [{"value": "<raw cookie value>", "newFormat": true|false}, ...],
//         "generate": [{"deviceId": "...", "newFormat": true|false}, ...]}
// stdout: {"parsed": [{"device_id": <any>|null, "user_id": <any>|null} | {"error": "..."}, ...],
//          "generated": ["<cookie value>", ...]}
// A Node server reads cookies through a parser that URL-decodes values (the `cookie` package's
// decodeURIComponent, keeping the raw value when that throws): the same is done here before parse().

import { readFileSync } from 'node:fs'
import { AmplitudeCookie } from '@amplitude/experiment-node-server'

const input = JSON.parse(readFileSync(0, 'utf8'))

function decode (value) {
  if (value.indexOf('%') === -1) return value
  try { return decodeURIComponent(value) } catch { return value }
}

function show (value) { return value === undefined ? null : value }

// AmplitudeCookie logs its parse errors to the console: keep stdout for the answer.
console.error = () => {}
console.log = () => {}

const parsed = (input.parse || []).map(({ value, newFormat }) => {
  try {
    const user = AmplitudeCookie.parse(decode(value), newFormat)
    return { device_id: show(user.device_id), user_id: show(user.user_id) }
  } catch (e) {
    return { error: String(e && e.message) }
  }
})
const generated = (input.generate || []).map(({ deviceId, newFormat }) => AmplitudeCookie.generate(deviceId, newFormat))
process.stdout.write(JSON.stringify({ parsed, generated }))
