/**
 * Amplitude Experiment exposures: a Segment destination function.
 *
 * Sends Segment `$exposure` track events to Amplitude's HTTP V2 API so that Amplitude Experiment counts them.
 * Why not Segment's own Amplitude destination: it sends no insert_id, so each Segment retry can count one
 * exposure twice. Here insert_id = messageId, so every retry is idempotent end to end.
 *
 * This is a port of the Python package segment-exposure (segment_exposure/translate.py and
 * segment_exposure/amplitude.py). It translates exactly as the Python code does; the same golden vectors
 * (tests/vectors/translate) and the same Amplitude fault matrix are run against both.
 *
 * Settings (create them in the function's Settings tab):
 *   apiKey          (string, secret, required) the Amplitude project's API key
 *   region          (string) "US" (default) or "EU"
 *   endpoint        (string) a full ingestion URL; overrides region (e.g. an EU proxy)
 *   minIdLength     (number) Amplitude's options.min_id_length; default 5
 *   exposureEvents  (array of strings, or one comma-separated string) event names to treat as exposures;
 *                   default ["$exposure"]. Each is sent to Amplitude as "$exposure".
 *
 * What Segment is told, per event:
 *   onTrack: returns when delivered; throws EventNotSupported / InvalidEventPayload / ValidationError when
 *            the event can never be delivered (Segment drops it), RetryError when it must be retried.
 *   onBatch: one {status, errormessage} per event: 200 delivered, 400 never deliverable, 429 throttled by
 *            Amplitude (retry later), 500 retry later for any other reason (outage, timeout, configuration).
 *
 * Runtime: Segment Functions (Node 20): global fetch and the four error classes; no imports; 5 s limit.
 */

// ---------------------------------------------------------------------------------------------------------
// Constants

const EXPOSURE_EVENT = '$exposure'
const DEFAULT_MIN_ID_LENGTH = 5
const EXPERIMENT_PREFIX = '[experiment]' // user properties Amplitude Experiment owns (compared lower-cased)
const SEGMENT_INTEGRATION = 'Actions Amplitude'
const TIME_FIELDS = ['timestamp', 'originalTimestamp', 'receivedAt']
const DAYS_IN_MONTH = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]

// Ids Amplitude refuses whatever min_id_length says (compared lower-cased).
const INVALID_IDS = new Set([
  'anonymous', 'nil', 'none', 'null', 'n/a', 'na', 'undefined', 'unknown', '',
  '00000000-0000-0000-0000-000000000000', '{}', 'lmy47d', '0', '-1'
])

// Segment's default mapping of context fields: [context section, [[source key, Amplitude field], ...]].
const CONTEXT_FIELDS = [
  ['app', [['version', 'app_version']]],
  ['os', [['name', 'os_name'], ['version', 'os_version']]],
  ['device', [['brand', 'device_brand'], ['manufacturer', 'device_manufacturer'], ['model', 'device_model'],
    ['id', 'idfv']]],
  ['network', [['carrier', 'carrier']]],
  ['location', [['country', 'country'], ['region', 'region'], ['city', 'city'], ['latitude', 'location_lat'],
    ['longitude', 'location_lng']]],
  ['library', [['name', 'library']]]
]

const ENDPOINTS = {
  US: 'https://api2.amplitude.com/2/httpapi',
  EU: 'https://api.eu.amplitude.com/2/httpapi'
}

// Amplitude's documented request limits: HTTP V2 under 1 MB, Batch under 20 MB; 2000 events each.
const LIMITS = {
  http: { maxEvents: 2000, maxBytes: 999999 },
  batch: { maxEvents: 2000, maxBytes: 20000000 }
}

// Timing, in milliseconds. Segment stops a handler after 5 s, so everything fits in deadlineMs; the rest
// matches the Python client's defaults. (The test harness shortens these; nothing else should change them.)
const TIMING = {
  deadlineMs: 4500,
  requestTimeoutMs: 10000,
  maxAttempts: 8,
  backoffInitialMs: 500,
  backoffMaxMs: 10000,
  backoffJitterMs: 500,
  throttleWaitMs: 30000, // Amplitude asks for at least 30 s after a 429: longer than a handler may run
  maxThrottleHolds: 10,
  // Requests in flight at once, so a batch of many requests fits in the deadline when Amplitude is slow.
  maxInFlight: 8
}

// ---------------------------------------------------------------------------------------------------------
// Small helpers. Values come from JSON, so "a dict" is a plain object that is not an array.

function isObject (value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

// obj.get(key) in Python: own properties only (never the prototype's), null when absent.
function get (obj, key) {
  if (!Object.prototype.hasOwnProperty.call(obj, key)) return null
  const value = obj[key]
  return value === undefined ? null : value
}

// A shallow copy that keeps even a "__proto__" key as data (Object.assign would call the setter).
function copyObject (obj) {
  return Object.fromEntries(Object.entries(obj))
}

// Python's len(): code points, not UTF-16 units, so "an emoji" is one character as in Python.
function codePointLength (text) {
  return Array.from(text).length
}

function isAscii (text) {
  return /^[\x00-\x7f]*$/.test(text) // eslint-disable-line no-control-regex
}

function isDigits (text) {
  return /^[0-9]+$/.test(text)
}

// The JSON name of a value's type, as the Python messages say it.
function kind (value) {
  if (value === null || value === undefined) return 'null'
  if (typeof value === 'boolean') return 'a boolean'
  if (typeof value === 'number') return 'a number'
  if (typeof value === 'string') return 'a string'
  if (Array.isArray(value)) return 'an array'
  return 'an object'
}

// json.dumps(value, ensure_ascii=False) as Python writes it (", " and ": " separators), for messages.
function pyJson (value) {
  if (value === null || value === undefined) return 'null'
  if (Array.isArray(value)) return '[' + value.map(pyJson).join(', ') + ']'
  if (isObject(value)) {
    return '{' + Object.keys(value).map((k) => JSON.stringify(k) + ': ' + pyJson(value[k])).join(', ') + '}'
  }
  return JSON.stringify(value)
}

// A value for an error message, cut so it cannot flood the logs (80 code points, as in Python).
function show (value) {
  const text = pyJson(value)
  const chars = Array.from(text)
  return chars.length <= 80 ? text : chars.slice(0, 77).join('') + '...'
}

// Python's sorted() order for strings: by code point (JS's default sort compares UTF-16 units).
function byCodePoint (a, b) {
  const x = Array.from(a)
  const y = Array.from(b)
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0) - y[i].codePointAt(0)
    if (d !== 0) return d
  }
  return x.length - y.length
}

function utf8Length (text) {
  let bytes = 0
  for (const ch of text) {
    const cp = ch.codePointAt(0)
    bytes += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4
  }
  return bytes
}

function sleep (ms) {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)))
}

// ---------------------------------------------------------------------------------------------------------
// Time: ISO 8601 with a zone, to epoch milliseconds (a port of parse_time_ms)

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
function daysFromCivil (year, month, day) {
  if (month <= 2) year -= 1
  const era = Math.floor(year / 400)
  const yoe = year - era * 400
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
}

// Throws a plain Error (Python's ValueError) whose message the caller wraps in InvalidEventPayload.
// A time without a zone is refused: guessing local time is how exposures land on the wrong day.
function parseTimeMs (value) {
  if (typeof value !== 'string') throw new Error(`expected an ISO 8601 string, got ${kind(value)}`)
  const s = value
  if (!isAscii(s) || s.length < 20 || s[4] !== '-' || s[7] !== '-' || !'Tt '.includes(s[10]) ||
      s[13] !== ':' || s[16] !== ':') {
    throw new Error(`${show(value)} is not YYYY-MM-DDTHH:MM:SS followed by Z or an offset`)
  }
  const digits = s.slice(0, 4) + s.slice(5, 7) + s.slice(8, 10) + s.slice(11, 13) + s.slice(14, 16) +
    s.slice(17, 19)
  if (!isDigits(digits)) throw new Error(`${show(value)} has a non-digit in its date or time`)
  const year = Number(s.slice(0, 4))
  const month = Number(s.slice(5, 7))
  const day = Number(s.slice(8, 10))
  const hour = Number(s.slice(11, 13))
  const minute = Number(s.slice(14, 16))
  const second = Number(s.slice(17, 19))

  let rest = s.slice(19)
  let millis = 0
  if (rest[0] === '.' || rest[0] === ',') {
    let cut
    if (rest.endsWith('Z') || rest.endsWith('z')) {
      cut = rest.length - 1
    } else {
      cut = Math.max(rest.lastIndexOf('+'), rest.lastIndexOf('-'))
      if (cut < 0) throw new Error(`${show(value)} has no zone: add Z (UTC) or an offset such as +02:00`)
    }
    const fraction = rest.slice(1, cut)
    if (!isDigits(fraction)) throw new Error(`${show(value)} has a malformed fraction of a second`)
    millis = Number((fraction + '00').slice(0, 3)) // cut, not rounded, as JavaScript's Date does
    rest = rest.slice(cut)
  }

  let offsetMinutes = 0
  if (rest === 'Z' || rest === 'z') {
    // UTC
  } else if (rest && (rest[0] === '+' || rest[0] === '-')) {
    let zone = rest.slice(1)
    if (zone.length === 5 && zone[2] === ':') zone = zone.slice(0, 2) + zone.slice(3)
    if (zone.length === 2) zone += '00'
    if (zone.length !== 4 || !isDigits(zone)) {
      throw new Error(`${show(value)} has a malformed offset: use Z, +HH:MM, +HHMM or +HH`)
    }
    const offH = Number(zone.slice(0, 2))
    const offM = Number(zone.slice(2))
    if (offH > 23 || offM > 59) throw new Error(`${show(value)} has an offset out of range`)
    offsetMinutes = (rest[0] === '-' ? -1 : 1) * (offH * 60 + offM)
  } else if (!rest) {
    throw new Error(`${show(value)} has no zone: add Z (UTC) or an offset such as +02:00`)
  } else {
    throw new Error(`${show(value)} has unexpected text after the seconds`)
  }

  if (year < 1 || month < 1 || month > 12) throw new Error(`${show(value)} has a year or month out of range`)
  let dim = DAYS_IN_MONTH[month]
  if (month === 2 && year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)) dim = 29
  if (day < 1 || day > dim || hour > 23 || minute > 59 || second > 59) {
    throw new Error(`${show(value)} has a day, hour, minute or second out of range`)
  }
  const days = daysFromCivil(year, month, day)
  return (((days * 24 + hour) * 60 + minute - offsetMinutes) * 60 + second) * 1000 + millis
}

// ---------------------------------------------------------------------------------------------------------
// Translation: one Segment track event to the Amplitude $exposure event (a port of to_amplitude_event).
// The rules and their order are documented in segment_exposure/translate.py; keep both in step.

function idProblem (value, minimum) {
  if (INVALID_IDS.has(value.toLowerCase())) {
    return `${show(value)} is on Amplitude's list of invalid ids (anonymous, null, unknown, 0, -1, ...); ` +
      'send the real id, or leave the field out'
  }
  const length = codePointLength(value)
  if (length < minimum) {
    return `${show(value)} has ${length} characters, fewer than Amplitude's minimum of ${minimum}; ` +
      "use longer ids, or set min_id_length (Amplitude's options.min_id_length) to accept shorter ones"
  }
  return null
}

function isExperimentKey (key) {
  return key.slice(0, EXPERIMENT_PREFIX.length).toLowerCase() === EXPERIMENT_PREFIX
}

function hasExperimentKey (obj) {
  return Object.keys(obj).some(isExperimentKey)
}

// traits without "[Experiment] ..." keys (also inside "$set"-style operations). Amplitude sets those
// itself from the exposure; stripping them is better than losing the exposure.
function stripExperiment (traits) {
  const isOperation = (key, value) => key[0] === '$' && isObject(value) && hasExperimentKey(value)
  if (!Object.keys(traits).some((key) => isExperimentKey(key) || isOperation(key, traits[key]))) return traits
  const cleaned = {}
  for (const [key, original] of Object.entries(traits)) {
    if (isExperimentKey(key)) continue
    let value = original
    if (isOperation(key, value)) {
      value = Object.fromEntries(Object.entries(value).filter(([k]) => !isExperimentKey(k)))
      if (Object.keys(value).length === 0) continue
    }
    Object.defineProperty(cleaned, key, { value, enumerable: true, writable: true, configurable: true })
  }
  return cleaned
}

// integrations["Actions Amplitude"].session_id as Amplitude wants it: an integer.
function sessionId (event) {
  const integrations = get(event, 'integrations')
  if (!isObject(integrations)) return null
  const settings = get(integrations, SEGMENT_INTEGRATION)
  if (!isObject(settings)) return null
  const raw = get(settings, 'session_id')
  if (raw === null) return null
  // An epoch-ms session start is far below 2^53; beyond it a number is not exact here, so (as in the
  // Python translator) anything outside the safe-integer range is refused.
  if (typeof raw === 'number' && Number.isSafeInteger(raw)) return raw
  if (typeof raw === 'string' && isDigits(raw) && raw.length <= 16 && Number.isSafeInteger(Number(raw))) {
    return Number(raw)
  }
  throw new ValidationError(
    `integrations["${SEGMENT_INTEGRATION}"].session_id is ${show(raw)}; Amplitude needs an integer ` +
    '(the session start in epoch milliseconds) or an all-digit string: fix the sender, or remove it')
}

// [userId, deviceId, where deviceId came from], absent values as null; throws on non-strings.
function identity (event, device) {
  const userId = get(event, 'userId')
  if (userId !== null && typeof userId !== 'string') {
    throw new InvalidEventPayload(`userId must be a string, got ${kind(userId)}: send ids as strings`)
  }
  let source = 'context.device.id'
  let deviceId = get(device, 'id')
  if (deviceId === null || deviceId === '') {
    source = 'anonymousId'
    deviceId = get(event, 'anonymousId')
  }
  if (deviceId !== null && typeof deviceId !== 'string') {
    throw new InvalidEventPayload(`${source} must be a string, got ${kind(deviceId)}: send ids as strings`)
  }
  return [userId || null, deviceId || null, source]
}

function exposureProperties (event) {
  const props = get(event, 'properties')
  if (!isObject(props)) {
    throw new InvalidEventPayload(
      `properties is ${kind(props)}, so there is no flag_key: an exposure needs ` +
      'properties {"flag_key": ..., "variant": ...}')
  }
  const flagKey = get(props, 'flag_key')
  if (typeof flagKey !== 'string' || !flagKey) {
    throw new InvalidEventPayload(
      `properties.flag_key is ${show(flagKey)}: an exposure needs the flag key as a non-empty string`)
  }
  const out = copyObject(props)
  const variant = get(props, 'variant')
  if (variant === null) {
    delete out.variant // a null or missing variant unsets the user's variant: leave it out
  } else if (typeof variant !== 'string' || !variant) {
    throw new InvalidEventPayload(
      `properties.variant is ${show(variant)}: send the variant key as a non-empty string, ` +
      "or null/leave it out to unset the user's variant")
  }
  const experimentKey = get(props, 'experiment_key')
  if (experimentKey === null) {
    delete out.experiment_key
  } else if (typeof experimentKey !== 'string' || !experimentKey) {
    throw new InvalidEventPayload(
      `properties.experiment_key is ${show(experimentKey)}: send a non-empty string or leave it out`)
  }
  return out
}

function eventTime (event) {
  for (const field of TIME_FIELDS) {
    const raw = get(event, field)
    if (raw === null) continue
    try {
      return parseTimeMs(raw)
    } catch (err) {
      throw new InvalidEventPayload(`${field} cannot be read: ${err.message}`)
    }
  }
  throw new InvalidEventPayload(
    'the event has no time: set timestamp (or originalTimestamp / receivedAt) to an ISO 8601 ' +
    'string with a zone')
}

// Segment's default context mapping; null and empty-string values are left out, others pass as given.
function addContext (out, context, device) {
  for (const [section, pairs] of CONTEXT_FIELDS) {
    const sub = get(context, section)
    if (!isObject(sub)) continue
    for (const [sourceKey, target] of pairs) {
      const value = get(sub, sourceKey)
      if (value !== null && value !== '') out[target] = value
    }
  }
  let platform = get(device, 'type')
  if (platform !== null && platform !== '') {
    if (typeof platform === 'string') {
      const lowered = platform.toLowerCase()
      if (lowered === 'ios') platform = 'iOS'
      else if (lowered === 'android') platform = 'Android'
    }
    out.platform = platform
  }
  let adId = get(device, 'advertisingId')
  if (adId === null || adId === '') adId = get(device, 'idfa')
  if (adId !== null && adId !== '') {
    out.idfa = adId
    out.adid = adId
  }
  const locale = get(context, 'locale')
  if (locale !== null && locale !== '') out.language = locale
  const ip = get(context, 'ip')
  if (ip !== null && ip !== '') out.ip = ip
}

// options: {minIdLength: positive integer, exposureEvents: array of names}, from translationOptions().
function toAmplitudeEvent (event, options) {
  if (!isObject(event)) {
    throw new InvalidEventPayload(
      `expected a Segment event as a JSON object, got ${kind(event)}: pass one parsed event`)
  }
  const type = get(event, 'type')
  if (type !== 'track') {
    throw new EventNotSupported(
      `only track events are exposures, this is type ${show(type)}: route only track events here`)
  }
  const name = get(event, 'event')
  if (typeof name !== 'string' || !options.exposureEvents.includes(name)) {
    const expected = show(options.exposureEvents.slice().sort(byCodePoint))
    throw new EventNotSupported(
      `event ${show(name)} is not an exposure event (expected one of ${expected}); ` +
      'filter other events out, or add the name to exposure_events')
  }
  const eventProperties = exposureProperties(event)

  const context = isObject(get(event, 'context')) ? get(event, 'context') : null
  const device = context && isObject(get(context, 'device')) ? get(context, 'device') : {}
  const [userId, deviceId, deviceSource] = identity(event, device)
  if (userId === null && deviceId === null) {
    throw new InvalidEventPayload(
      'the event has no identity: set userId, anonymousId or context.device.id so Amplitude ' +
      'knows who was exposed')
  }

  const out = { event_type: EXPOSURE_EVENT } // Amplitude only counts this exact name
  if (userId !== null) out.user_id = userId
  if (deviceId !== null) out.device_id = deviceId

  const messageId = get(event, 'messageId')
  if (messageId !== null && typeof messageId !== 'string') {
    throw new InvalidEventPayload(`messageId must be a string, got ${kind(messageId)}`)
  }
  if (messageId) out.insert_id = messageId // retries are then deduplicated by Amplitude
  out.time = eventTime(event)

  if (userId !== null) {
    const problem = idProblem(userId, options.minIdLength)
    if (problem !== null) throw new ValidationError(`userId ${problem}`)
  }
  if (deviceId !== null) {
    const problem = idProblem(deviceId, options.minIdLength)
    if (problem !== null) throw new ValidationError(`${deviceSource} ${problem}`)
  }
  const session = sessionId(event)

  out.event_properties = eventProperties
  const traits = get(event, 'traits')
  if (isObject(traits) && Object.keys(traits).length > 0) {
    const userProperties = stripExperiment(traits)
    if (Object.keys(userProperties).length > 0) out.user_properties = userProperties
  }
  if (session !== null) out.session_id = session
  if (context !== null) addContext(out, context, device)
  return out
}

// ---------------------------------------------------------------------------------------------------------
// Settings. A bad setting is a configuration error: the events are kept (RetryError / 500) while it is
// fixed, never dropped.

function settingsError (message) {
  return new RetryError(`configuration error: ${message}; fix the function's settings`)
}

function translationOptions (settings) {
  settings = isObject(settings) ? settings : {}
  const given = get(settings, 'minIdLength')
  let minIdLength = given
  if (given === null || given === '') {
    minIdLength = DEFAULT_MIN_ID_LENGTH
  } else {
    if (typeof minIdLength === 'string' && /^\s*[0-9]+\s*$/.test(minIdLength)) minIdLength = Number(minIdLength)
    if (typeof minIdLength !== 'number' || !Number.isInteger(minIdLength) || minIdLength < 1) {
      throw settingsError(`minIdLength must be a positive whole number, got ${show(given)}`)
    }
  }
  let names = get(settings, 'exposureEvents')
  if (typeof names === 'string') names = names.split(',').map((n) => n.trim())
  if (names === null) names = []
  if (!Array.isArray(names) || names.some((n) => typeof n !== 'string')) {
    throw settingsError('exposureEvents must be a list of event names')
  }
  names = names.filter((n) => n !== '')
  return {
    minIdLength,
    sendMinIdLength: given !== null && given !== '', // else Amplitude's own default applies
    exposureEvents: names.length ? names : [EXPOSURE_EVENT]
  }
}

// Where and how to send: {url, api, apiKey, minIdLength (or null: Amplitude's default)}.
function deliveryTarget (settings, options) {
  settings = isObject(settings) ? settings : {}
  const apiKey = get(settings, 'apiKey')
  if (typeof apiKey !== 'string' || !apiKey.trim()) throw settingsError('the apiKey setting is not set')
  const region = get(settings, 'region')
  const regionKey = region === null || region === '' ? 'US' : String(region).trim().toUpperCase()
  if (!ENDPOINTS[regionKey]) throw settingsError(`region must be US or EU, got ${show(region)}`)
  const endpoint = get(settings, 'endpoint')
  let url = ENDPOINTS[regionKey]
  if (endpoint !== null && endpoint !== '') {
    if (typeof endpoint !== 'string' || !/^https?:\/\/[^/?#\s]+/.test(endpoint.trim())) {
      throw settingsError('endpoint must be a full http(s) URL such as https://api2.amplitude.com/2/httpapi')
    }
    url = endpoint.trim()
  }
  const path = url.replace(/^https?:\/\/[^/]+/, '').split(/[?#]/)[0].replace(/\/+$/, '')
  return {
    url,
    api: path.endsWith('/batch') ? 'batch' : 'http',
    apiKey: apiKey.trim(),
    minIdLength: options.sendMinIdLength ? options.minIdLength : null
  }
}

// ---------------------------------------------------------------------------------------------------------
// Delivery (a port of AmplitudeClient.send): every event ends delivered, rejected (with the reason) or
// retry later. Nothing else can happen to an event, whatever Amplitude or the network does.

const DELIVERED = { status: 'delivered', code: 'ok', reason: '' }

function rejected (code, reason) {
  return { status: 'rejected', code, reason }
}

function retryLater (code, reason) {
  return { status: 'retry_later', code, reason }
}

const THROTTLED_PAST_DEADLINE = retryLater('throttled',
  'Amplitude throttled this event (HTTP 429: too many events for its user or device) and it must wait ' +
  'longer than the deadline allows; retry later with the same insert_id')

// A failure worth retrying after a pause: 5xx, a timeout, a reset, a non-JSON body. retryAfterMs: what a
// 503's Retry-After asked for (0 if nothing).
class Transient extends Error {
  constructor (code, reason, retryAfterMs = 0) {
    super(reason)
    this.code = code
    this.reason = reason
    this.retryAfterMs = retryAfterMs
  }
}

// Milliseconds a Retry-After header asks for: delay-seconds or an HTTP date; 0 when absent or unusable.
function retryAfterMs (value) {
  if (!value) return 0
  const text = String(value).trim()
  if (/^[0-9]+(\.[0-9]+)?$/.test(text)) return Number.parseFloat(text) * 1000
  const when = Date.parse(text)
  return Number.isFinite(when) ? Math.max(0, when - Date.now()) : 0
}

function intList (value) {
  return Array.isArray(value) ? value.filter((v) => Number.isInteger(v)) : []
}

function stringKeys (value) {
  if (Array.isArray(value)) return new Set(value.filter((v) => typeof v === 'string'))
  if (isObject(value)) return new Set(Object.keys(value))
  return new Set()
}

class Delivery {
  constructor (events, target, end) {
    this.events = events
    this.target = target
    this.end = end
    this.outcomes = events.map(() => null)
    this.encoded = events.map(() => null) // {json, bytes} per event that can be sent
    this.holds = events.map(() => 0)
    this.held = [] // [{notBefore, indices}]: throttled events waiting
    this.ready = [] // chunks (lists of indices) to send, in order
    this.fanOut = false // more than one request may fly: Amplitude answered, and not with a 413
    this.stopped = null // {code, reason} once the delivery gave up: nothing more is sent
    const limits = LIMITS[target.api]
    this.maxEvents = limits.maxEvents
    this.maxBytes = limits.maxBytes
    const options = target.minIdLength === null ? '' : `,"options":{"min_id_length":${target.minIdLength}}`
    this.head = `{"api_key":${JSON.stringify(target.apiKey)},"events":[`
    this.tail = ']' + options + '}'
    this.overhead = utf8Length(this.head) + utf8Length(this.tail)
  }

  redact (text) {
    return String(text).split(this.target.apiKey).join('***')
  }

  set (indices, outcome) {
    for (const i of indices) if (this.outcomes[i] === null) this.outcomes[i] = outcome
  }

  retryLaterEverything (code, reason) {
    if (!this.stopped) this.stopped = { code, reason }
    while (this.ready.length) this.set(this.ready.shift(), retryLater(code, reason))
    this.releaseHeld()
  }

  releaseHeld () {
    for (const held of this.held) this.set(held.indices, THROTTLED_PAST_DEADLINE)
    this.held = []
  }

  // Bytes of the request body for a chunk (n events have n - 1 commas).
  size (chunk) {
    return this.overhead + chunk.reduce((sum, i) => sum + this.encoded[i].bytes, 0) + chunk.length - 1
  }

  // Chunks of at most maxEvents events and maxBytes bytes.
  pack (indices) {
    const chunks = []
    let current = []
    let size = this.overhead - 1
    for (const i of indices) {
      const add = this.encoded[i].bytes + 1
      if (current.length && (current.length >= this.maxEvents || size + add > this.maxBytes)) {
        chunks.push(current)
        current = []
        size = this.overhead - 1
      }
      current.push(i)
      size += add
    }
    if (current.length) chunks.push(current)
    return chunks
  }

  // Each event's JSON once, with its UTF-8 size; an event no request could hold is rejected here.
  encode () {
    const pending = []
    const limit = this.maxBytes - this.overhead
    this.events.forEach((event, i) => {
      let json
      try {
        json = JSON.stringify(event)
      } catch (err) {
        this.outcomes[i] = rejected('not_json', `the event cannot be sent as JSON (${err.message})`)
        return
      }
      const bytes = utf8Length(json)
      if (bytes > limit) {
        this.outcomes[i] = rejected('too_large',
          `the event is ${bytes} bytes of JSON, more than one ${this.target.api} request may hold ` +
          `(${this.maxBytes} bytes); shrink its properties`)
        return
      }
      this.encoded[i] = { json, bytes }
      pending.push(i)
    })
    return pending
  }

  body (chunk) {
    return this.head + chunk.map((i) => this.encoded[i].json).join(',') + this.tail
  }

  // Up to TIMING.maxInFlight requests at once: the first one alone (a wrong key or a smaller size limit is
  // learnt from one request, not eight), and one at a time again after a 413 until a smaller one passes.
  async run () {
    this.ready.push(...this.pack(this.encode()))
    const flying = new Set()
    while (this.ready.length || this.held.length || flying.size) {
      if (this.stopped) {
        // Nothing new goes out; what is in flight is counted when it comes back.
        this.retryLaterEverything(this.stopped.code, this.stopped.reason)
        if (flying.size) await Promise.race(flying)
        continue
      }
      const now = Date.now()
      const due = this.held.filter((h) => h.notBefore <= now)
      if (due.length) {
        this.held = this.held.filter((h) => h.notBefore > now)
        for (const h of due) this.ready.push(...this.pack(h.indices))
      }
      if (now >= this.end && this.ready.length) {
        this.retryLaterEverything('deadline', 'the deadline passed before this event was sent; retry later')
        continue
      }
      const limit = this.fanOut ? Math.max(1, TIMING.maxInFlight) : 1
      while (this.ready.length && flying.size < limit) {
        let chunk = this.ready.shift()
        if (chunk.length > this.maxEvents || this.size(chunk) > this.maxBytes) {
          // Packed before a 413 taught us a smaller limit: repack to the limit we know now.
          this.ready.unshift(...this.pack(chunk))
          chunk = this.ready.shift()
        }
        const request = this.deliver(chunk).finally(() => flying.delete(request))
        flying.add(request)
      }
      if (flying.size) {
        await Promise.race(flying)
        continue
      }
      if (this.held.length && !this.ready.length) {
        const wake = Math.min(...this.held.map((h) => h.notBefore))
        if (wake >= this.end) {
          this.releaseHeld()
          continue
        }
        await sleep(wake - now)
      }
    }
    const lost = retryLater('internal', 'not sent (internal error); retry later')
    return this.outcomes.map((o) => o || lost)
  }

  // Send one chunk and act on the answer; false means stop sending anything else.
  async deliver (chunk) {
    let reply
    try {
      reply = await this.postWithRetries(this.body(chunk), chunk.length)
    } catch (err) {
      if (!(err instanceof Transient)) throw err
      this.set(chunk, retryLater(err.code, `${err.reason}; retry later with the same insert_id`))
      this.retryLaterEverything(err.code, `not sent: ${err.reason}; retry later`)
      return false
    }
    const status = reply.status
    this.fanOut = status !== 413
    if (status >= 200 && status < 300) {
      this.set(chunk, DELIVERED)
      return true
    }
    if (status === 413) return this.split(chunk)
    if (status === 429) {
      this.throttled(chunk, reply)
      return true
    }
    if (status === 400 && this.indexMaps(chunk, reply.body) > 0) {
      const rest = chunk.filter((i) => this.outcomes[i] === null)
      if (rest.length) this.ready.unshift(rest) // resend the others at once: loop, a map may name only one
      return true
    }
    this.configurationError(chunk, reply)
    return false
  }

  // Retries with exponential backoff and jitter, the same body (so the same insert_ids), within the deadline.
  async postWithRetries (body, size) {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.post(body)
      } catch (err) {
        if (!(err instanceof Transient) || attempt >= TIMING.maxAttempts || this.stopped) throw err
        this.fanOut = false // Amplitude looks down: no new requests beside the retries until it answers
        const backoff = Math.min(TIMING.backoffInitialMs * 2 ** (attempt - 1), TIMING.backoffMaxMs) +
          Math.random() * TIMING.backoffJitterMs
        const wait = Math.max(backoff, err.retryAfterMs)
        if (Date.now() + wait >= this.end) throw err
        console.log(`Amplitude request of ${size} events failed (attempt ${attempt}): ${err.reason}; ` +
          `retrying in ${Math.round(wait)} ms`)
        await sleep(wait)
      }
    }
  }

  // One POST: a definitive JSON answer (2xx or 4xx) is returned; anything worth retrying throws Transient.
  async post (body) {
    const remaining = this.end - Date.now()
    if (remaining <= 1) throw new Transient('deadline', 'the deadline passed before the request could be sent')
    const timeoutMs = Math.min(TIMING.requestTimeoutMs, remaining)
    const controller = typeof AbortController === 'function' ? new AbortController() : null
    const timer = controller ? setTimeout(() => controller.abort(), timeoutMs) : null
    let response
    let text
    try {
      response = await fetch(this.target.url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body,
        signal: controller ? controller.signal : undefined
      })
      text = await response.text()
    } catch (err) {
      if (controller && controller.signal.aborted) {
        const code = Date.now() >= this.end - 1 ? 'deadline' : 'timeout'
        throw new Transient(code, `no answer from Amplitude within ${Number((timeoutMs / 1000).toPrecision(3))} s`)
      }
      const cause = err && err.cause ? `: ${err.cause.code || err.cause.message || err.cause}` : ''
      throw new Transient('network',
        `network error talking to Amplitude: ${this.redact(`${err && err.message}${cause}`).slice(0, 300)}`)
    } finally {
      if (timer) clearTimeout(timer)
    }
    const status = response.status
    let parsed = null
    try {
      parsed = text ? JSON.parse(text) : null
    } catch (err) {
      parsed = null
    }
    if (status >= 500 || status === 408) {
      const detail = isObject(parsed) ? String(get(parsed, 'error') ?? '') : 'non-JSON body'
      throw new Transient(status === 503 ? 'unavailable' : 'server_error',
        `Amplitude answered HTTP ${status} (${this.redact(detail).slice(0, 200)})`,
        status === 503 ? retryAfterMs(response.headers.get('Retry-After')) : 0)
    }
    if (!isObject(parsed)) {
      if (status >= 400 && status < 500) {
        // A proxy's HTML page still says what happened; act on the status.
        parsed = { code: status, error: `HTTP ${status} with a non-JSON body` }
      } else {
        throw new Transient('bad_response', `Amplitude answered HTTP ${status} with a body that is not a ` +
          'JSON object; it may or may not have ingested the events')
      }
    }
    return { status, body: parsed, retryAfterMs: retryAfterMs(response.headers.get('Retry-After')) }
  }

  // 413: split in halves and resend; one event still too large is rejected with the reason.
  split (chunk) {
    if (chunk.length === 1) {
      this.set(chunk, rejected('too_large',
        `Amplitude answered 413 (payload too large) for this event alone ` +
        `(${this.encoded[chunk[0]].bytes} bytes of JSON); shrink its properties`))
      return true
    }
    const half = Math.ceil(chunk.length / 2)
    const first = chunk.slice(0, half)
    const second = chunk.slice(half)
    // Learn from it: later requests are packed at most half as large.
    this.maxEvents = Math.max(1, Math.min(this.maxEvents, half))
    this.maxBytes = Math.min(this.maxBytes, Math.max(this.size(first), this.size(second)))
    this.ready.unshift(first, second)
    return true
  }

  // 429: throttled events wait (at least 30 s, longer than a handler may run: so they are answered 429);
  // the others are resent at once; events over a daily quota are retried later.
  throttled (chunk, reply) {
    const body = reply.body
    const listed = get(body, 'throttled_events')
    const positions = new Set(intList(listed))
    const users = stringKeys(get(body, 'throttled_users'))
    const devices = stringKeys(get(body, 'throttled_devices'))
    const quotaUsers = stringKeys(get(body, 'exceeded_daily_quota_users'))
    const quotaDevices = stringKeys(get(body, 'exceeded_daily_quota_devices'))
    let nowOk = []
    let hold = []
    const quota = []
    chunk.forEach((i, pos) => {
      const event = this.events[i]
      const uid = typeof event.user_id === 'string' ? event.user_id : null
      const did = typeof event.device_id === 'string' ? event.device_id : null
      const overQuota = (uid !== null && quotaUsers.has(uid)) || (did !== null && quotaDevices.has(did))
      const throttled = Array.isArray(listed)
        ? positions.has(pos)
        : overQuota || (uid !== null && users.has(uid)) || (did !== null && devices.has(did))
      if (!throttled) nowOk.push(i)
      else if (overQuota) quota.push(i)
      else hold.push(i)
    })
    if (!hold.length && !quota.length) {
      hold = nowOk // the answer names no one: hold them all
      nowOk = []
    }
    this.set(quota, retryLater('daily_quota',
      "Amplitude's daily event quota for this user or device is used up (HTTP 429); " +
      'retry later with the same insert_id'))
    const notBefore = Date.now() + Math.max(TIMING.throttleWaitMs, reply.retryAfterMs)
    const keep = []
    for (const i of hold) {
      this.holds[i] += 1
      if (this.holds[i] > TIMING.maxThrottleHolds) {
        this.set([i], retryLater('throttled',
          `Amplitude throttled this event ${this.holds[i]} times (HTTP 429); retry later`))
      } else {
        keep.push(i)
      }
    }
    if (keep.length) {
      if (notBefore >= this.end) this.set(keep, THROTTLED_PAST_DEADLINE)
      else this.held.push({ notBefore, indices: keep })
    }
    if (nowOk.length) this.ready.unshift(nowOk)
  }

  // 400 naming events: reject those (they will never be accepted); returns how many were named.
  indexMaps (chunk, body) {
    const error = this.redact(String(get(body, 'error') ?? '')).slice(0, 200)
    const named = new Map()
    const name = (pos, code, reason) => {
      if (pos >= 0 && pos < chunk.length && !named.has(pos)) {
        named.set(pos, rejected(code, `${reason} (HTTP 400: ${error})`))
      }
    }
    const maps = [
      ['events_with_invalid_fields', 'invalid_fields', 'Amplitude found an invalid value in field'],
      ['events_with_missing_fields', 'missing_fields', 'Amplitude found a required field missing:'],
      ['events_with_invalid_id_lengths', 'invalid_id',
        'Amplitude refused the id (too short for min_id_length, or on its invalid list) in']
    ]
    for (const [mapKey, code, what] of maps) {
      const fields = get(body, mapKey)
      if (!isObject(fields)) continue
      for (const [field, list] of Object.entries(fields)) {
        const reason = `${what} '${field}'; fix the event, it will never be accepted`
        for (const pos of intList(list)) name(pos, code, reason)
      }
    }
    for (const pos of intList(get(body, 'silenced_events'))) {
      name(pos, 'silenced', 'Amplitude silenced this event (its device sent too many events)')
    }
    const silencedDevices = stringKeys(get(body, 'silenced_devices'))
    chunk.forEach((i, pos) => {
      if (silencedDevices.has(this.events[i].device_id)) {
        name(pos, 'silenced', "Amplitude silenced this event's device (too many events)")
      }
    })
    for (const [pos, outcome] of named) this.set([chunk[pos]], outcome)
    return named.size
  }

  // 400 naming no event, 401, 403, 404...: the API key, region or endpoint is wrong. Keep every event.
  configurationError (chunk, reply) {
    let detail = this.redact(String(get(reply.body, 'error') ?? '')).slice(0, 200)
    const missing = get(reply.body, 'missing_field')
    if (missing) detail += ` (missing field ${this.redact(String(missing)).slice(0, 50)})`
    const reason = `configuration error: Amplitude answered HTTP ${reply.status} (${detail}); check the API ` +
      'key, region and endpoint, then retry'
    console.error(`Amplitude refused the request: ${reason}; the events are kept as retry later, none dropped`)
    this.set(chunk, retryLater('configuration', reason))
    this.retryLaterEverything('configuration', reason)
  }
}

// The Python destination's on_batch statuses: 429 only for throttling, 500 for any other retry.
function batchStatus (outcome) {
  if (outcome.status === 'delivered') return { status: 200, errormessage: '' }
  if (outcome.status === 'rejected') return { status: 400, errormessage: `ValidationError: ${outcome.reason}` }
  const throttled = outcome.code === 'throttled' || outcome.code === 'daily_quota'
  return { status: throttled ? 429 : 500, errormessage: `RetryError: ${outcome.reason}` }
}

function errorName (err) {
  if (err instanceof EventNotSupported) return 'EventNotSupported'
  if (err instanceof InvalidEventPayload) return 'InvalidEventPayload'
  if (err instanceof ValidationError) return 'ValidationError'
  if (err instanceof RetryError) return 'RetryError'
  return (err && err.name) || 'Error'
}

function isPermanent (err) {
  return err instanceof EventNotSupported || err instanceof InvalidEventPayload || err instanceof ValidationError
}

// ---------------------------------------------------------------------------------------------------------
// Handlers

/**
 * Deliver one event. Returns when Amplitude accepted it; throws EventNotSupported, InvalidEventPayload or
 * ValidationError when it can never be delivered, RetryError when Segment should try again later.
 */
async function onTrack (event, settings) {
  const end = Date.now() + TIMING.deadlineMs
  const options = translationOptions(settings)
  const amplitudeEvent = toAmplitudeEvent(event, options)
  const target = deliveryTarget(settings, options)
  const [outcome] = await new Delivery([amplitudeEvent], target, end).run()
  if (outcome.status === 'delivered') return
  if (outcome.status === 'rejected') throw new ValidationError(outcome.reason)
  throw new RetryError(outcome.reason)
}

/**
 * Deliver a batch (any event types): one {status, errormessage} per event, in order. Segment retries the
 * 429 and 500 ones.
 */
async function onBatch (events, settings) {
  const end = Date.now() + TIMING.deadlineMs
  if (!Array.isArray(events)) throw new InvalidEventPayload(`onBatch takes a list of events, got ${kind(events)}`)
  const everything = (err) => events.map(() => ({ status: 500, errormessage: `RetryError: ${err.message}` }))
  let options
  try {
    options = translationOptions(settings)
  } catch (err) {
    return everything(err)
  }
  const results = events.map(() => null)
  const translated = []
  const positions = []
  events.forEach((event, index) => {
    try {
      translated.push(toAmplitudeEvent(event, options))
      positions.push(index)
    } catch (err) {
      if (isPermanent(err)) {
        results[index] = { status: 400, errormessage: `${errorName(err)}: ${err.message}` }
      } else { // a bug must not fail the other events, nor lose this one
        results[index] = {
          status: 500, errormessage: `RetryError: unexpected ${errorName(err)} while translating; retry later`
        }
      }
    }
  })
  if (translated.length) {
    let outcomes
    try {
      outcomes = await new Delivery(translated, deliveryTarget(settings, options), end).run()
    } catch (err) {
      outcomes = translated.map(() => retryLater('configuration', err.message))
    }
    positions.forEach((index, n) => { results[index] = batchStatus(outcomes[n]) })
  }
  return results
}
