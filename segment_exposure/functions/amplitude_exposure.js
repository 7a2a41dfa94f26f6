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
 * One difference: Segment's own destination (and the Python translator with its useragent extra) derives
 * os_name, os_version, device_manufacturer, device_model and device_type from context.userAgent; a
 * Function can import no user-agent parser, so here those fields come only from the context itself.
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
  ['location', [['country', 'country'], ['region', 'region'], ['city', 'city']]],
  ['library', [['name', 'library']]]
]
const CAMPAIGN_FIELDS = [['source', 'utm_source'], ['medium', 'utm_medium'], ['name', 'utm_campaign'],
  ['term', 'utm_term'], ['content', 'utm_content']]

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
// Reading Segment's loosely typed values as Segment's Amplitude destination does (a port of
// segment_exposure/coerce.py). None of these throws: an odd secondary field is repaired or left out.

const MAX_DATE_MS = 8640000000000000 // JavaScript's Date range
const SPACE = '[ \\t\\n\\r\\f\\v]' // white space, as the Python port counts it
const ISO_RE = new RegExp('^(\\d{4})-(\\d{2})-(\\d{2})(?:[Tt ](\\d{2}):(\\d{2})(?::(\\d{2})(?:[.,](\\d+))?)?)?' +
  '(?:([Zz])|([+-])(\\d{2})(?::?(\\d{2}))?)?$')
const RFC2822_RE = new RegExp(`^(?:[A-Za-z]{3},${SPACE}*)?(\\d{1,2})${SPACE}+([A-Za-z]{3})${SPACE}+(\\d{4})` +
  `${SPACE}+(\\d{2}):(\\d{2})(?::(\\d{2}))?(?:${SPACE}*(GMT|UTC|UT|Z|[+-]\\d{4}))?$`)
const NUMBER_RE = new RegExp(`^${SPACE}*[+-]?(?:\\d+\\.?\\d*|\\.\\d+)(?:[eE][+-]?\\d+)?${SPACE}*$`)
const TRIM_RE = new RegExp(`^${SPACE}+|${SPACE}+$`, 'g')
const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec']
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g

// A string field: strings as they are, numbers and booleans in their string form; null for the rest.
function readString (value) {
  if (typeof value === 'string') return value
  if (typeof value === 'boolean') return value ? 'true' : 'false'
  if (typeof value === 'number' && Number.isFinite(value)) return String(value)
  return null
}

// A number field (latitude, longitude): numbers, or numeric strings read as numbers.
function readNumber (value) {
  if (typeof value === 'number') return Number.isFinite(value) ? value : null
  if (typeof value === 'string' && NUMBER_RE.test(value)) {
    const number = Number(value.replace(TRIM_RE, ''))
    return Number.isFinite(number) ? number : null
  }
  return null
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm); a day past the month's end
// rolls into the next month, as Date.UTC (and so Segment) does.
function daysFromCivil (year, month, day) {
  if (month <= 2) year -= 1
  const era = Math.floor(year / 400)
  const yoe = year - era * 400
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
}

function isoMs (text) {
  const m = ISO_RE.exec(text)
  if (m === null) return null
  const [, year, month, day, hour, minute, second, fraction, , sign, offH, offM] = m
  const monthN = Number(month)
  const dayN = Number(day)
  const hourN = hour ? Number(hour) : 0
  const minuteN = minute ? Number(minute) : 0
  const secondN = second ? Number(second) : 0
  if (monthN < 1 || monthN > 12 || dayN < 1 || dayN > 31 || minuteN > 59 || secondN > 59) return null
  if (hourN > 24 || (hourN === 24 && (minuteN || secondN || (fraction && Number(fraction))))) return null
  const millis = fraction ? Number((fraction + '00').slice(0, 3)) : 0 // cut, not rounded
  let offset = 0
  if (sign) {
    const hours = Number(offH)
    const minutes = Number(offM || 0)
    if (hours > 23 || minutes > 59) return null
    offset = (hours * 60 + minutes) * (sign === '-' ? -1 : 1)
  }
  const days = daysFromCivil(Number(year), monthN, dayN)
  return (((days * 24 + hourN) * 60 + minuteN - offset) * 60 + secondN) * 1000 + millis
}

function rfc2822Ms (text) {
  const m = RFC2822_RE.exec(text)
  if (m === null) return null
  const [, day, monthName, year, hour, minute, second, zone] = m
  const month = MONTHS.indexOf(monthName.toLowerCase()) + 1
  const dayN = Number(day)
  const hourN = Number(hour)
  const minuteN = Number(minute)
  const secondN = Number(second || 0)
  if (month === 0 || dayN < 1 || dayN > 31 || hourN > 23 || minuteN > 59 || secondN > 59) return null
  let offset = 0
  if (zone && (zone[0] === '+' || zone[0] === '-')) {
    offset = (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(3, 5))) * (zone[0] === '-' ? -1 : 1)
  }
  const days = daysFromCivil(Number(year), month, dayN)
  return (((days * 24 + hourN) * 60 + minuteN - offset) * 60 + secondN) * 1000
}

// Epoch ms of a time Segment reads (ISO 8601, zone-less as UTC; RFC 2822; epoch-ms numbers), else null.
function readTimeMs (value) {
  let ms
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value === 0) return null // Segment skips a falsy time
    ms = Math.trunc(value) // toward zero, as Date does
  } else if (typeof value === 'string') {
    if (!value || value.length > 64) return null
    const text = value.replace(TRIM_RE, '')
    ms = isoMs(text)
    if (ms === null) ms = rfc2822Ms(text)
    if (ms === null) return null
  } else {
    return null
  }
  if (Math.abs(ms) > MAX_DATE_MS) return null
  return ms === 0 ? 0 : ms // no -0
}

// integrations["Actions Amplitude"].session_id as Segment converts it, or null (leave it out).
function readSessionId (value) {
  if (typeof value === 'string' && isDigits(value)) {
    if (value.length > 16) return null
    const number = Number(value)
    return number <= Number.MAX_SAFE_INTEGER ? number : null
  }
  if (typeof value === 'string' || typeof value === 'number') return readTimeMs(value)
  return null
}

// value with lone surrogates (half an emoji) replaced by U+FFFD, in keys and values; state.changed is set.
function wellFormed (value, state) {
  if (typeof value === 'string') {
    const fixed = value.replace(LONE_SURROGATE, '\ufffd')
    if (fixed !== value) state.changed = true
    return fixed
  }
  if (Array.isArray(value)) return value.map((v) => wellFormed(v, state))
  if (isObject(value)) {
    const out = {}
    for (const [key, v] of Object.entries(value)) {
      Object.defineProperty(out, wellFormed(key, state),
        { value: wellFormed(v, state), enumerable: true, writable: true, configurable: true })
    }
    return out
  }
  return value
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

// An id as Segment reads it: numbers and booleans in their string form; null, "" and objects absent.
function identityValue (value, field, notes) {
  if (typeof value === 'string') return value || null
  if (value === null) return null
  const text = readString(value)
  if (text === null) {
    notes.push(`${field} left out: ${kind(value)} is not an id`)
    return null
  }
  notes.push(`${field} ${show(value)} sent as the string ${show(text)}`)
  return text || null
}

function addString (out, target, value, where, notes) {
  if (typeof value === 'string') {
    if (value) out[target] = value
    return
  }
  if (value === null) return
  const text = readString(value)
  if (text === null) notes.push(`${where} left out: ${kind(value)} where a string belongs`)
  else if (text) out[target] = text
}

// Segment's default context mapping. No user-agent parsing here: the Functions runtime allows no imports
// (the one difference from the Python translator with its useragent extra).
function addContext (out, context, device, notes) {
  for (const [section, pairs] of CONTEXT_FIELDS) {
    const sub = section === 'device' ? device : get(context, section)
    if (!isObject(sub)) continue
    for (const [sourceKey, target] of pairs) {
      const value = get(sub, sourceKey)
      if (value !== null) addString(out, target, value, `context.${section}.${sourceKey}`, notes)
    }
  }
  const location = get(context, 'location')
  if (isObject(location)) {
    for (const [sourceKey, target] of [['latitude', 'location_lat'], ['longitude', 'location_lng']]) {
      const value = get(location, sourceKey)
      if (value === null || value === '') continue
      const number = readNumber(value)
      if (number === null) {
        notes.push(`context.location.${sourceKey} ${show(value)} left out: not a number`)
      } else {
        if (typeof value !== 'number') notes.push(`context.location.${sourceKey} ${show(value)} read as ${number}`)
        out[target] = number
      }
    }
  }
  const type = get(device, 'type')
  if (type !== null) addString(out, 'platform', type, 'context.device.type', notes)
  if (out.platform !== undefined) {
    out.platform = out.platform.replace(/ios/i, 'iOS').replace(/android/i, 'Android')
  } else if (out.library === 'analytics.js') {
    out.platform = 'Web'
  }
  let adId = get(device, 'advertisingId')
  if (adId === null) adId = get(device, 'idfa') // as in Segment, "" counts as given
  if (adId !== null) {
    addString(out, 'idfa', adId, 'context.device.advertisingId', notes)
    if (out.idfa !== undefined) out.adid = out.idfa
  }
  const locale = get(context, 'locale')
  if (locale !== null) addString(out, 'language', locale, 'context.locale', notes)
  const ip = get(context, 'ip')
  if (typeof ip === 'string') {
    if (ip) out.ip = ip
  } else if (ip !== null) {
    notes.push(`context.ip ${show(ip)} left out: an IP address is a string`)
  }
}

// Segment's $setOnce {initial_referrer, initial_utm_*} and $set {referrer, utm_*} defaults.
function utmProperties (context, notes) {
  const setOnce = {}
  const always = {}
  const pairs = []
  const page = get(context, 'page')
  const campaign = get(context, 'campaign')
  if (isObject(page)) pairs.push(['referrer', get(page, 'referrer'), 'context.page.referrer'])
  if (isObject(campaign)) {
    for (const [sourceKey, name] of CAMPAIGN_FIELDS) {
      pairs.push([name, get(campaign, sourceKey), `context.campaign.${sourceKey}`])
    }
  }
  for (const [name, value, where] of pairs) {
    if (value === null) continue
    const text = readString(value)
    if (text === null) {
      notes.push(`${where} left out: ${kind(value)} where a string belongs`)
      continue
    }
    setOnce['initial_' + name] = text
    always[name] = text
  }
  if (!Object.values(always).some((v) => v !== '')) return [{}, {}] // Segment sends neither
  return [setOnce, always]
}

// traits (also {}, as Segment sends it) with the utm/referrer operations; null if neither.
function userProperties (event, context, notes) {
  const traits = get(event, 'traits')
  let props = null
  if (isObject(traits)) props = stripExperiment(traits)
  else if (traits !== null) notes.push(`traits left out: ${kind(traits)}, not an object`)
  if (context !== null) {
    const [setOnce, always] = utmProperties(context, notes)
    if (Object.keys(always).length) {
      props = props === null ? {} : copyObject(props)
      for (const [operation, values] of [['$setOnce', setOnce], ['$set', always]]) {
        const given = get(props, operation)
        // Segment replaces a $set / $setOnce the traits carry; merging keeps the sender's values.
        const merged = isObject(given) ? { ...copyObject(given), ...values } : values
        Object.defineProperty(props, operation, { value: merged, enumerable: true, writable: true, configurable: true })
      }
    }
  }
  return props
}

// timestamp read as Segment reads it; when missing or unreadable, originalTimestamp, then receivedAt.
function eventTime (event, notes) {
  for (const field of TIME_FIELDS) {
    const raw = get(event, field)
    if (raw === null) continue
    const ms = readTimeMs(raw)
    if (ms !== null) return ms
    notes.push(`${field} ${show(raw)} cannot be read as a time`)
  }
  notes.push('no readable time: Amplitude will use the upload time')
  return null
}

function sessionId (event, notes) {
  const integrations = get(event, 'integrations')
  if (!isObject(integrations)) return null
  const settings = get(integrations, SEGMENT_INTEGRATION)
  if (!isObject(settings)) return null
  const raw = get(settings, 'session_id')
  if (raw === null) return null
  const session = readSessionId(raw)
  if (session === null) {
    notes.push(`session_id ${show(raw)} left out: no session start can be read from it`)
  } else if (!(typeof raw === 'number' && Number.isInteger(raw)) && !(typeof raw === 'string' && isDigits(raw))) {
    notes.push(`session_id ${show(raw)} read as ${session}`)
  }
  return session
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
  return copyObject(props) // passed as given, variant and experiment_key included (as Segment does)
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

  const notes = []
  let context = get(event, 'context')
  if (!isObject(context)) {
    if (context !== null) notes.push(`context left out: ${kind(context)}, not an object`)
    context = null
  }
  const device = context !== null && isObject(get(context, 'device')) ? get(context, 'device') : {}
  const userId = identityValue(get(event, 'userId'), 'userId', notes)
  let deviceSource = 'context.device.id'
  let deviceId = identityValue(get(device, 'id'), deviceSource, notes)
  if (deviceId === null) { // also for "": Segment would send no device_id at all (a deliberate deviation)
    deviceSource = 'anonymousId'
    deviceId = identityValue(get(event, 'anonymousId'), deviceSource, notes)
  }
  if (userId === null && deviceId === null) {
    throw new InvalidEventPayload(
      'the event has no identity: set userId, anonymousId or context.device.id so Amplitude ' +
      'knows who was exposed')
  }
  if (userId !== null) {
    const problem = idProblem(userId, options.minIdLength)
    if (problem !== null) throw new ValidationError(`userId ${problem}`)
  }
  if (deviceId !== null) {
    const problem = idProblem(deviceId, options.minIdLength)
    if (problem !== null) throw new ValidationError(`${deviceSource} ${problem}`)
  }

  let out = { event_type: EXPOSURE_EVENT } // Amplitude only counts this exact name
  if (userId !== null) out.user_id = userId
  if (deviceId !== null) out.device_id = deviceId
  const messageId = get(event, 'messageId')
  if (typeof messageId === 'string') {
    if (messageId) out.insert_id = messageId // retries are then deduplicated by Amplitude
  } else if (messageId !== null) {
    const insertId = typeof messageId === 'boolean' ? null : readString(messageId)
    if (insertId === null) {
      notes.push(`messageId ${show(messageId)} is not an id: no insert_id`)
    } else {
      notes.push(`messageId ${show(messageId)} sent as the insert_id ${show(insertId)}`)
      out.insert_id = insertId
    }
  }
  const time = eventTime(event, notes)
  if (time !== null) out.time = time
  out.event_properties = eventProperties
  const props = userProperties(event, context, notes)
  if (props !== null) out.user_properties = props
  const session = sessionId(event, notes)
  if (session !== null) out.session_id = session
  if (context !== null) addContext(out, context, device, notes)

  const state = { changed: false }
  const fixed = wellFormed(out, state)
  if (state.changed) {
    out = fixed
    notes.push('lone surrogates replaced by U+FFFD so the event is valid UTF-8')
  }
  if (notes.length) console.log(`exposure ${show(messageId)} repaired: ${notes.join('; ')}`)
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
