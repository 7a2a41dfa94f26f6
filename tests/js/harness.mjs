// Runs the Segment Function (segment_exposure/functions/amplitude_exposure.js) as Segment's runtime would,
// so that Python tests can compare it with the Python implementation. Node 20 built-ins only.
//
// The source is loaded into a fresh vm context holding only what the Functions runtime provides and the
// function uses: fetch, timers, AbortController, console and the error classes EventNotSupported,
// InvalidEventPayload, ValidationError and RetryError. fetch may only reach 127.0.0.1: requests to
// Amplitude's hosts go to `amplitude` (the AmplitudeEmulator's base URL) when given, and are refused
// otherwise, so no test can send anything to the internet.
//
// stdin: one JSON object
//   {"source": "<path>" (optional), "amplitude": "http://127.0.0.1:PORT" (optional),
//    "timing": {...overrides of the function's TIMING, e.g. "backoffInitialMs": 10} (optional),
//    "commands": [
//      {"op": "translate", "cases": [{"event": <any>, "settings": {...}}, ...]},
//      {"op": "onBatch", "events": [...], "settings": {...}},
//      {"op": "onTrack", "event": {...}, "settings": {...}}]}
// stdout: {"results": [...]}, one per command, in order:
//   translate -> {"outputs": [{"ok": <Amplitude event>} | {"error": "<class>", "message": "..."}]}
//   onBatch / onTrack -> {"ok": <return value>} | {"error": "<class>", "message": "..."}, plus "elapsed_ms"
// Function logs (console.*) go to stderr, never stdout.

import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import vm from 'node:vm'

const HERE = dirname(fileURLToPath(import.meta.url))
const DEFAULT_SOURCE = resolve(HERE, '../../segment_exposure/functions/amplitude_exposure.js')
const AMPLITUDE_HOSTS = new Set(['api2.amplitude.com', 'api.eu.amplitude.com'])
const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]'])

const ERROR_CLASSES = `
class EventNotSupported extends Error { constructor (m) { super(m); this.name = 'EventNotSupported' } }
class InvalidEventPayload extends Error { constructor (m) { super(m); this.name = 'InvalidEventPayload' } }
class ValidationError extends Error { constructor (m) { super(m); this.name = 'ValidationError' } }
class RetryError extends Error { constructor (m) { super(m); this.name = 'RetryError' } }
Object.assign(globalThis, { EventNotSupported, InvalidEventPayload, ValidationError, RetryError })
`

// fetch restricted to this machine; Amplitude's real hosts are rewritten to the emulator.
function localFetch (amplitude) {
  return async (url, init) => {
    const target = new URL(String(url))
    if (AMPLITUDE_HOSTS.has(target.hostname) && amplitude) {
      const local = new URL(amplitude)
      target.protocol = local.protocol
      target.host = local.host
    }
    if (!LOCAL_HOSTS.has(target.hostname)) {
      throw new TypeError(`fetch failed: the test harness only reaches 127.0.0.1, not ${target.hostname}`)
    }
    return fetch(target, init)
  }
}

function stderrConsole () {
  const write = (...args) => process.stderr.write(args.map(String).join(' ') + '\n')
  return { log: write, info: write, warn: write, error: write, debug: write }
}

function loadFunction (sourcePath, amplitude, timing) {
  const context = vm.createContext({
    fetch: localFetch(amplitude),
    setTimeout,
    clearTimeout,
    AbortController,
    console: stderrConsole()
  })
  vm.runInContext(ERROR_CLASSES, context, { filename: 'segment-runtime.js' })
  vm.runInContext(readFileSync(sourcePath, 'utf8'), context, { filename: 'amplitude_exposure.js' })
  if (timing) vm.runInContext(`Object.assign(TIMING, ${JSON.stringify(timing)})`, context)
  context.JSON = vm.runInContext('JSON', context) // builtins are not visible from outside otherwise
  return context
}

// Values are parsed inside the context, as Segment hands the function its own realm's objects.
function inner (context, value) {
  return context.JSON.parse(JSON.stringify(value === undefined ? null : value))
}

function describeError (context, err) {
  for (const name of ['EventNotSupported', 'InvalidEventPayload', 'ValidationError', 'RetryError']) {
    if (err instanceof context[name]) return { error: name, message: err.message }
  }
  // Anything else is a bug in the function: keep the stack for the failure message.
  return { error: (err && err.name) || 'Error', message: String(err && err.message), stack: String(err && err.stack) }
}

async function timed (context, call) {
  const started = performance.now()
  let result
  try {
    result = { ok: (await call()) ?? null }
  } catch (err) {
    result = describeError(context, err)
  }
  result.elapsed_ms = performance.now() - started
  return JSON.parse(context.JSON.stringify(result))
}

async function run (context, command) {
  switch (command.op) {
    case 'translate': {
      const outputs = command.cases.map(({ event, settings }) => {
        try {
          const options = context.translationOptions(inner(context, settings || {}))
          return { ok: context.toAmplitudeEvent(inner(context, event), options) }
        } catch (err) {
          return describeError(context, err)
        }
      })
      return { outputs: JSON.parse(context.JSON.stringify(outputs)) }
    }
    case 'onBatch': {
      const [events, settings] = [inner(context, command.events), inner(context, command.settings)]
      return timed(context, () => context.onBatch(events, settings))
    }
    case 'onTrack': {
      const [event, settings] = [inner(context, command.event), inner(context, command.settings)]
      return timed(context, () => context.onTrack(event, settings))
    }
    default:
      throw new Error(`unknown op ${JSON.stringify(command.op)}`)
  }
}

const input = JSON.parse(readFileSync(0, 'utf8'))
const context = loadFunction(input.source || DEFAULT_SOURCE, input.amplitude, input.timing)
const results = []
for (const command of input.commands) results.push(await run(context, command))
process.stdout.write(JSON.stringify({ results }) + '\n')
