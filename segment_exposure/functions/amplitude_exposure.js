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
 * Like Segment's own destination, it derives os_name, os_version, device_manufacturer, device_model and
 * device_type from context.userAgent with @amplitude/ua-parser-js 0.7.33 (MIT), bundled at the end of this
 * file by scripts/function-build/build.mjs (a Function is one file: it can import nothing).
 * Events RudderStack delivered (rudderId / request_ip, or its JavaScript SDK) are mapped as RudderStack's own
 * Amplitude destination does (segment_exposure/delivery/sources.py lists the differences).
 *
 * Settings (create them in the function's Settings tab):
 *   apiKey          (string, secret, required) the Amplitude project's API key
 *   region          (string) "US" (default) or "EU"
 *   endpoint        (string) a full ingestion URL; overrides region (e.g. an EU proxy)
 *   minIdLength     (number) Amplitude's options.min_id_length; default 5
 *   exposureEvents  (array of strings, or one comma-separated string) event names to treat as exposures;
 *                   default ["$exposure"]. Each is sent to Amplitude as "$exposure".
 *   source          (string) "auto" (default: RudderStack's mapping for events RudderStack delivered),
 *                   "segment" or "rudderstack"
 *   userAgentParsing (boolean) derive device fields from context.userAgent, as Segment does; default true
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
const SOURCES = ['auto', 'segment', 'rudderstack']
const RUDDERSTACK_JS_LIBRARY = 'RudderLabs JavaScript SDK'
const RUDDERSTACK_LIBRARY = 'rudderstack' // what RudderStack's Amplitude destination sends as library
const RUDDERSTACK_UA_FIELDS = ['os_name', 'os_version'] // all it derives from a (web) user agent
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

// RudderStack's event (rudderId / request_ip stamped by its data plane, or its JavaScript SDK), else Segment's.
function detectSource (event) {
  if (get(event, 'rudderId') !== null || get(event, 'request_ip') !== null) return 'rudderstack'
  const context = get(event, 'context')
  const library = isObject(context) ? get(context, 'library') : null
  if (isObject(library) && get(library, 'name') === RUDDERSTACK_JS_LIBRARY) return 'rudderstack'
  return 'segment'
}

// Segment's rule over @amplitude/ua-parser-js (its user-agent.ts), as [field, value] pairs without the absent.
const uaCache = new Map()
function userAgentFields (userAgent, uaModel, platformVersion) {
  const key = JSON.stringify([userAgent, uaModel, platformVersion])
  let fields = uaCache.get(key)
  if (fields !== undefined) return fields
  const parser = new UAParser(userAgent)
  const browser = parser.getBrowser()
  const os = parser.getOS()
  const device = parser.getDevice()
  const pick = (...values) => values.find((v) => v !== undefined && v !== null)
  fields = [
    ['os_name', pick(os.name, browser.name)],
    ['os_version', pick(platformVersion, browser.major)],
    ['device_manufacturer', pick(device.vendor)],
    ['device_model', pick(uaModel, device.model, os.name)],
    ['device_type', pick(device.type)]
  ].filter(([, value]) => value !== undefined)
  if (uaCache.size >= 4096) uaCache.clear()
  uaCache.set(key, fields)
  return fields
}

function addRequestIp (out, event, notes) {
  const ip = get(event, 'request_ip')
  if (typeof ip === 'string') {
    if (ip) out.ip = ip
  } else if (ip !== null) {
    notes.push(`request_ip ${show(ip)} left out: an IP address is a string`)
  }
}

// Segment's default context mapping; rudderstack is the event when RudderStack's mapping applies, else null.
function addContext (out, context, device, notes, userAgentParsing, rudderstack) {
  const web = rudderstack !== null && get(rudderstack, 'channel') === 'web'
  const userAgent = get(context, 'userAgent')
  if (userAgentParsing && typeof userAgent === 'string' && userAgent && (rudderstack === null || web)) {
    const uaData = get(context, 'userAgentData')
    let derived = isObject(uaData)
      ? userAgentFields(userAgent, readString(get(uaData, 'model')), readString(get(uaData, 'platformVersion')))
      : userAgentFields(userAgent, null, null)
    if (rudderstack !== null) derived = derived.filter(([field]) => RUDDERSTACK_UA_FIELDS.includes(field))
    for (const [field, value] of derived) out[field] = value
  }
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
  if (web) {
    out.platform = 'Web'
  } else if (out.platform !== undefined) {
    out.platform = out.platform.replace(/ios/i, 'iOS').replace(/android/i, 'Android')
  } else if (rudderstack === null && out.library === 'analytics.js') {
    out.platform = 'Web'
  }
  if (rudderstack !== null) out.library = RUDDERSTACK_LIBRARY
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
  if (rudderstack !== null && out.ip === undefined) addRequestIp(out, rudderstack, notes)
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

// context.sessionId (RudderStack's SDKs: the session start in ms) if a positive whole number, else null.
function rudderstackSessionId (context, notes) {
  const raw = context === null ? null : get(context, 'sessionId')
  if (raw === null) return null
  let value = raw
  if (typeof raw === 'string' && /^[0-9]{1,16}$/.test(raw)) value = Number(raw)
  if (typeof value === 'number' && Number.isInteger(value) && value > 0 && value <= Number.MAX_SAFE_INTEGER) {
    if (typeof raw !== 'number') notes.push(`context.sessionId ${show(raw)} read as ${value}`)
    return value
  }
  if (raw !== -1) notes.push(`context.sessionId ${show(raw)} left out: not a positive whole number`)
  return null
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

// options: {minIdLength, exposureEvents, source, userAgentParsing}, from translationOptions().
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
  const source = options.source === 'auto' ? detectSource(event) : options.source
  const rudderstack = source === 'rudderstack' ? event : null
  const userId = identityValue(get(event, 'userId'), 'userId', notes)
  // Segment's destination reads context.device.id first, RudderStack's anonymousId; each falls back on the
  // other (also for "": Segment would send no device_id at all, a deliberate deviation).
  const deviceSources = [['anonymousId', event, 'anonymousId'], ['context.device.id', device, 'id']]
  if (rudderstack === null) deviceSources.reverse()
  let deviceSource = 'anonymousId'
  let deviceId = null
  for (const [where, holder, key] of deviceSources) {
    deviceSource = where
    deviceId = identityValue(get(holder, key), where, notes)
    if (deviceId !== null) break
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
  const session = rudderstack === null ? sessionId(event, notes) : rudderstackSessionId(context, notes)
  if (session !== null) out.session_id = session
  if (context !== null) {
    addContext(out, context, device, notes, options.userAgentParsing, rudderstack)
  } else if (rudderstack !== null) {
    addRequestIp(out, rudderstack, notes)
    out.library = RUDDERSTACK_LIBRARY
    if (get(rudderstack, 'channel') === 'web') out.platform = 'Web'
  }

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
  const sourceGiven = get(settings, 'source')
  const source = sourceGiven === null || sourceGiven === '' ? 'auto' : String(sourceGiven).trim().toLowerCase()
  if (!SOURCES.includes(source)) {
    throw settingsError(`source must be one of ${SOURCES.join(', ')}, got ${show(sourceGiven)}`)
  }
  let parsing = get(settings, 'userAgentParsing') // Segment's UI may send the text "true" / "false"
  if (typeof parsing === 'string') parsing = parsing.trim().toLowerCase()
  if (parsing === null || parsing === '' || parsing === 'true') parsing = true
  else if (parsing === 'false') parsing = false
  if (typeof parsing !== 'boolean') {
    throw settingsError(`userAgentParsing must be true or false, got ${show(get(settings, 'userAgentParsing'))}`)
  }
  return {
    minIdLength,
    sendMinIdLength: given !== null && given !== '', // else Amplitude's own default applies
    exposureEvents: names.length ? names : [EXPOSURE_EVENT],
    source,
    userAgentParsing: parsing
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

// ---------------------------------------------------------------------------------------------------------
// The user-agent parser (UAParser), bundled: a Function can import nothing.
// ---- BEGIN GENERATED by scripts/function-build/build.mjs: @amplitude/ua-parser-js; do not edit ----
// @amplitude/ua-parser-js 0.7.33 (MIT), https://github.com/amplitude/ua-parser-js, bundled with esbuild:
// Segment's destination parses context.userAgent with it, so the Function derives the same device fields.
// MIT License
//
// Copyright (c) 2012-2021 Faisal Salman <<f@faisalman.com>>
//
// Permission is hereby granted, free of charge, to any person obtaining a copy
// of this software and associated documentation files (the "Software"), to deal
// in the Software without restriction, including without limitation the rights
// to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
// copies of the Software, and to permit persons to whom the Software is
// furnished to do so, subject to the following conditions:
//
// The above copyright notice and this permission notice shall be included in all
// copies or substantial portions of the Software.
//
// THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
// IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
// FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
// AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
// LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
// OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
// SOFTWARE.
var UAParser=(()=>{var ci=(h,d)=>()=>{try{return d||h((d={exports:{}}).exports,d),d.exports}catch(V){throw d=0,V}};var di=ci((S,L)=>{(function(h,d){"use strict";var V="0.7.33",N="",J="?",j="function",g="undefined",D="object",R="string",mi="major",o="model",a="name",i="type",e="vendor",r="version",f="architecture",E="console",s="mobile",t="tablet",p="smarttv",_="wearable",Q="embedded",F=350,G="Amazon",k="Apple",ii="ASUS",ei="BlackBerry",x="Browser",M="Chrome",pi="Edge",q="Firefox",z="Google",oi="Huawei",W="LG",H="Microsoft",ai="Motorola",C="Opera",Y="Samsung",ri="Sharp",U="Sony",Z="Xiaomi",X="Zebra",ti="Facebook",hi=function(n,l){var b={};for(var u in n)l[u]&&l[u].length%2===0?b[u]=l[u].concat(n[u]):b[u]=n[u];return b},P=function(n){for(var l={},b=0;b<n.length;b++)l[n[b].toUpperCase()]=n[b];return l},si=function(n,l){return typeof n===R?A(l).indexOf(A(n))!==-1:!1},A=function(n){return n.toLowerCase()},fi=function(n){return typeof n===R?n.replace(/[^\d\.]/g,N).split(".")[0]:d},$=function(n,l){if(typeof n===R)return n=n.replace(/^\s\s*/,N),typeof l===g?n:n.substring(0,F)},T=function(n,l){for(var b=0,u,w,I,c,O,v;b<l.length&&!O;){var wi=l[b],li=l[b+1];for(u=w=0;u<wi.length&&!O;)if(O=wi[u++].exec(n),O)for(I=0;I<li.length;I++)v=O[++w],c=li[I],typeof c===D&&c.length>0?c.length===2?typeof c[1]==j?this[c[0]]=c[1].call(this,v):this[c[0]]=c[1]:c.length===3?typeof c[1]===j&&!(c[1].exec&&c[1].test)?this[c[0]]=v?c[1].call(this,v,c[2]):d:this[c[0]]=v?v.replace(c[1],c[2]):d:c.length===4&&(this[c[0]]=v?c[3].call(this,v.replace(c[1],c[2])):d):this[c]=v||d;b+=2}},K=function(n,l){for(var b in l)if(typeof l[b]===D&&l[b].length>0){for(var u=0;u<l[b].length;u++)if(si(l[b][u],n))return b===J?d:b}else if(si(l[b],n))return b===J?d:b;return n},vi={"1.0":"/8",1.2:"/1",1.3:"/3","2.0":"/412","2.0.2":"/416","2.0.3":"/417","2.0.4":"/419","?":"/"},ni={ME:"4.90","NT 3.11":"NT3.51","NT 4.0":"NT4.0",2e3:"NT 5.0",XP:["NT 5.1","NT 5.2"],Vista:"NT 6.0",7:"NT 6.1",8:"NT 6.2",8.1:"NT 6.3",10:["NT 6.4","NT 10.0"],RT:"ARM"},bi={browser:[[/\b(?:crmo|crios)\/([\w\.]+)/i],[r,[a,"Chrome"]],[/edg(?:e|ios|a)?\/([\w\.]+)/i],[r,[a,"Edge"]],[/(opera mini)\/([-\w\.]+)/i,/(opera [mobiletab]{3,6})\b.+version\/([-\w\.]+)/i,/(opera)(?:.+version\/|[\/ ]+)([\w\.]+)/i],[a,r],[/opios[\/ ]+([\w\.]+)/i],[r,[a,C+" Mini"]],[/\bopr\/([\w\.]+)/i],[r,[a,C]],[/(kindle)\/([\w\.]+)/i,/(lunascape|maxthon|netfront|jasmine|blazer)[\/ ]?([\w\.]*)/i,/(avant |iemobile|slim)(?:browser)?[\/ ]?([\w\.]*)/i,/(ba?idubrowser)[\/ ]?([\w\.]+)/i,/(?:ms|\()(ie) ([\w\.]+)/i,/(flock|rockmelt|midori|epiphany|silk|skyfire|ovibrowser|bolt|iron|vivaldi|iridium|phantomjs|bowser|quark|qupzilla|falkon|rekonq|puffin|brave|whale|qqbrowserlite|qq|duckduckgo)\/([-\w\.]+)/i,/(weibo)__([\d\.]+)/i],[a,r],[/(?:\buc? ?browser|(?:juc.+)ucweb)[\/ ]?([\w\.]+)/i],[r,[a,"UC"+x]],[/microm.+\bqbcore\/([\w\.]+)/i,/\bqbcore\/([\w\.]+).+microm/i],[r,[a,"WeChat(Win) Desktop"]],[/micromessenger\/([\w\.]+)/i],[r,[a,"WeChat"]],[/konqueror\/([\w\.]+)/i],[r,[a,"Konqueror"]],[/trident.+rv[: ]([\w\.]{1,9})\b.+like gecko/i],[r,[a,"IE"]],[/yabrowser\/([\w\.]+)/i],[r,[a,"Yandex"]],[/(avast|avg)\/([\w\.]+)/i],[[a,/(.+)/,"$1 Secure "+x],r],[/\bfocus\/([\w\.]+)/i],[r,[a,q+" Focus"]],[/\bopt\/([\w\.]+)/i],[r,[a,C+" Touch"]],[/coc_coc\w+\/([\w\.]+)/i],[r,[a,"Coc Coc"]],[/dolfin\/([\w\.]+)/i],[r,[a,"Dolphin"]],[/coast\/([\w\.]+)/i],[r,[a,C+" Coast"]],[/miuibrowser\/([\w\.]+)/i],[r,[a,"MIUI "+x]],[/fxios\/([-\w\.]+)/i],[r,[a,q]],[/\bqihu|(qi?ho?o?|360)browser/i],[[a,"360 "+x]],[/(oculus|samsung|sailfish|huawei)browser\/([\w\.]+)/i],[[a,/(.+)/,"$1 "+x],r],[/(comodo_dragon)\/([\w\.]+)/i],[[a,/_/g," "],r],[/(electron)\/([\w\.]+) safari/i,/(tesla)(?: qtcarbrowser|\/(20\d\d\.[-\w\.]+))/i,/m?(qqbrowser|baiduboxapp|2345Explorer)[\/ ]?([\w\.]+)/i],[a,r],[/(metasr)[\/ ]?([\w\.]+)/i,/(lbbrowser)/i,/\[(linkedin)app\]/i],[a],[/((?:fban\/fbios|fb_iab\/fb4a)(?!.+fbav)|;fbav\/([\w\.]+);)/i],[[a,ti],r],[/safari (line)\/([\w\.]+)/i,/\b(line)\/([\w\.]+)\/iab/i,/(chromium|instagram)[\/ ]([-\w\.]+)/i],[a,r],[/\bgsa\/([\w\.]+) .*safari\//i],[r,[a,"GSA"]],[/headlesschrome(?:\/([\w\.]+)| )/i],[r,[a,M+" Headless"]],[/ wv\).+(chrome)\/([\w\.]+)/i],[[a,M+" WebView"],r],[/droid.+ version\/([\w\.]+)\b.+(?:mobile safari|safari)/i],[r,[a,"Android "+x]],[/(chrome|omniweb|arora|[tizenoka]{5} ?browser)\/v?([\w\.]+)/i],[a,r],[/version\/([\w\.\,]+) .*mobile\/\w+ (safari)/i],[r,[a,"Mobile Safari"]],[/version\/([\w(\.|\,)]+) .*(mobile ?safari|safari)/i],[r,a],[/webkit.+?(mobile ?safari|safari)(\/[\w\.]+)/i],[a,[r,K,vi]],[/(webkit|khtml)\/([\w\.]+)/i],[a,r],[/(navigator|netscape\d?)\/([-\w\.]+)/i],[[a,"Netscape"],r],[/mobile vr; rv:([\w\.]+)\).+firefox/i],[r,[a,q+" Reality"]],[/ekiohf.+(flow)\/([\w\.]+)/i,/(swiftfox)/i,/(icedragon|iceweasel|camino|chimera|fennec|maemo browser|minimo|conkeror|klar)[\/ ]?([\w\.\+]+)/i,/(seamonkey|k-meleon|icecat|iceape|firebird|phoenix|palemoon|basilisk|waterfox)\/([-\w\.]+)$/i,/(firefox)\/([\w\.]+)/i,/(mozilla)\/([\w\.]+) .+rv\:.+gecko\/\d+/i,/(polaris|lynx|dillo|icab|doris|amaya|w3m|netsurf|sleipnir|obigo|mosaic|(?:go|ice|up)[\. ]?browser)[-\/ ]?v?([\w\.]+)/i,/(links) \(([\w\.]+)/i],[a,r],[/(cobalt)\/([\w\.]+)/i],[a,[r,/master.|lts./,""]]],cpu:[[/(?:(amd|x(?:(?:86|64)[-_])?|wow|win)64)[;\)]/i],[[f,"amd64"]],[/(ia32(?=;))/i],[[f,A]],[/((?:i[346]|x)86)[;\)]/i],[[f,"ia32"]],[/\b(aarch64|arm(v?8e?l?|_?64))\b/i],[[f,"arm64"]],[/\b(arm(?:v[67])?ht?n?[fl]p?)\b/i],[[f,"armhf"]],[/windows (ce|mobile); ppc;/i],[[f,"arm"]],[/((?:ppc|powerpc)(?:64)?)(?: mac|;|\))/i],[[f,/ower/,N,A]],[/(sun4\w)[;\)]/i],[[f,"sparc"]],[/((?:avr32|ia64(?=;))|68k(?=\))|\barm(?=v(?:[1-7]|[5-7]1)l?|;|eabi)|(?=atmel )avr|(?:irix|mips|sparc)(?:64)?\b|pa-risc)/i],[[f,A]]],device:[[/\b(sch-i[89]0\d|shw-m380s|sm-[ptx]\w{2,4}|gt-[pn]\d{2,4}|sgh-t8[56]9|nexus 10)/i],[o,[e,Y],[i,t]],[/\b((?:s[cgp]h|gt|sm)-\w+|galaxy nexus)/i,/samsung[- ]([-\w]+)/i,/sec-(sgh\w+)/i],[o,[e,Y],[i,s]],[/((ipod|iphone)\d+,\d+)/i],[o,[e,k],[i,s]],[/(ipad\d+,\d+)/i],[o,[e,k],[i,t]],[/\((ip(?:hone|od)[\w ]*);/i],[o,[e,k],[i,s]],[/\((ipad);[-\w\),; ]+apple/i,/applecoremedia\/[\w\.]+ \((ipad)/i,/\b(ipad)\d\d?,\d\d?[;\]].+ios/i],[o,[e,k],[i,t]],[/(macintosh);/i],[o,[e,k]],[/\b((?:ag[rs][23]?|bah2?|sht?|btv)-a?[lw]\d{2})\b(?!.+d\/s)/i],[o,[e,oi],[i,t]],[/(?:huawei|honor)([-\w ]+)[;\)]/i,/\b(nexus 6p|\w{2,4}e?-[atu]?[ln][\dx][012359c][adn]?)\b(?!.+d\/s)/i],[o,[e,oi],[i,s]],[/\b(poco[\w ]+)(?: bui|\))/i,/\b; (\w+) build\/hm\1/i,/\b(hm[-_ ]?note?[_ ]?(?:\d\w)?) bui/i,/\b(redmi[\-_ ]?(?:note|k)?[\w_ ]+)(?: bui|\))/i,/\b(mi[-_ ]?(?:a\d|one|one[_ ]plus|note lte|max|cc)?[_ ]?(?:\d?\w?)[_ ]?(?:plus|se|lite)?)(?: bui|\))/i],[[o,/_/g," "],[e,Z],[i,s]],[/\b(mi[-_ ]?(?:pad)(?:[\w_ ]+))(?: bui|\))/i],[[o,/_/g," "],[e,Z],[i,t]],[/; (\w+) bui.+ oppo/i,/\b(cph[12]\d{3}|p(?:af|c[al]|d\w|e[ar])[mt]\d0|x9007|a101op)\b/i],[o,[e,"OPPO"],[i,s]],[/vivo (\w+)(?: bui|\))/i,/\b(v[12]\d{3}\w?[at])(?: bui|;)/i],[o,[e,"Vivo"],[i,s]],[/\b(rmx[12]\d{3})(?: bui|;|\))/i],[o,[e,"Realme"],[i,s]],[/\b(milestone|droid(?:[2-4x]| (?:bionic|x2|pro|razr))?:?( 4g)?)\b[\w ]+build\//i,/\bmot(?:orola)?[- ](\w*)/i,/((?:moto[\w\(\) ]+|xt\d{3,4}|nexus 6)(?= bui|\)))/i],[o,[e,ai],[i,s]],[/\b(mz60\d|xoom[2 ]{0,2}) build\//i],[o,[e,ai],[i,t]],[/((?=lg)?[vl]k\-?\d{3}) bui| 3\.[-\w; ]{10}lg?-([06cv9]{3,4})/i],[o,[e,W],[i,t]],[/(lm(?:-?f100[nv]?|-[\w\.]+)(?= bui|\))|nexus [45])/i,/\blg[-e;\/ ]+((?!browser|netcast|android tv)\w+)/i,/\blg-?([\d\w]+) bui/i],[o,[e,W],[i,s]],[/(ideatab[-\w ]+)/i,/lenovo ?(s[56]000[-\w]+|tab(?:[\w ]+)|yt[-\d\w]{6}|tb[-\d\w]{6})/i],[o,[e,"Lenovo"],[i,t]],[/(?:maemo|nokia).*(n900|lumia \d+)/i,/nokia[-_ ]?([-\w\.]*)/i],[[o,/_/g," "],[e,"Nokia"],[i,s]],[/(pixel c)\b/i],[o,[e,z],[i,t]],[/droid.+; (pixel[\daxl ]{0,6})(?: bui|\))/i],[o,[e,z],[i,s]],[/droid.+ (a?\d[0-2]{2}so|[c-g]\d{4}|so[-gl]\w+|xq-a\w[4-7][12])(?= bui|\).+chrome\/(?![1-6]{0,1}\d\.))/i],[o,[e,U],[i,s]],[/sony tablet [ps]/i,/\b(?:sony)?sgp\w+(?: bui|\))/i],[[o,"Xperia Tablet"],[e,U],[i,t]],[/ (kb2005|in20[12]5|be20[12][59])\b/i,/(?:one)?(?:plus)? (a\d0\d\d)(?: b|\))/i],[o,[e,"OnePlus"],[i,s]],[/(alexa)webm/i,/(kf[a-z]{2}wi)( bui|\))/i,/(kf[a-z]+)( bui|\)).+silk\//i],[o,[e,G],[i,t]],[/((?:sd|kf)[0349hijorstuw]+)( bui|\)).+silk\//i],[[o,/(.+)/g,"Fire Phone $1"],[e,G],[i,s]],[/(playbook);[-\w\),; ]+(rim)/i],[o,e,[i,t]],[/\b((?:bb[a-f]|st[hv])100-\d)/i,/\(bb10; (\w+)/i],[o,[e,ei],[i,s]],[/(?:\b|asus_)(transfo[prime ]{4,10} \w+|eeepc|slider \w+|nexus 7|padfone|p00[cj])/i],[o,[e,ii],[i,t]],[/ (z[bes]6[027][012][km][ls]|zenfone \d\w?)\b/i],[o,[e,ii],[i,s]],[/(nexus 9)/i],[o,[e,"HTC"],[i,t]],[/(htc)[-;_ ]{1,2}([\w ]+(?=\)| bui)|\w+)/i,/(zte)[- ]([\w ]+?)(?: bui|\/|\))/i,/(alcatel|geeksphone|nexian|panasonic|sony(?!-bra))[-_ ]?([-\w]*)/i],[e,[o,/_/g," "],[i,s]],[/droid.+; ([ab][1-7]-?[0178a]\d\d?)/i],[o,[e,"Acer"],[i,t]],[/droid.+; (m[1-5] note) bui/i,/\bmz-([-\w]{2,})/i],[o,[e,"Meizu"],[i,s]],[/\b(sh-?[altvz]?\d\d[a-ekm]?)/i],[o,[e,ri],[i,s]],[/(blackberry|benq|palm(?=\-)|sonyericsson|acer|asus|dell|meizu|motorola|polytron)[-_ ]?([-\w]*)/i,/(hp) ([\w ]+\w)/i,/(asus)-?(\w+)/i,/(microsoft); (lumia[\w ]+)/i,/(lenovo)[-_ ]?([-\w]+)/i,/(jolla)/i,/(oppo) ?([\w ]+) bui/i],[e,o,[i,s]],[/(archos) (gamepad2?)/i,/(hp).+(touchpad(?!.+tablet)|tablet)/i,/(kindle)\/([\w\.]+)/i,/(nook)[\w ]+build\/(\w+)/i,/(dell) (strea[kpr\d ]*[\dko])/i,/(le[- ]+pan)[- ]+(\w{1,9}) bui/i,/(trinity)[- ]*(t\d{3}) bui/i,/(gigaset)[- ]+(q\w{1,9}) bui/i,/(vodafone) ([\w ]+)(?:\)| bui)/i],[e,o,[i,t]],[/(surface duo)/i],[o,[e,H],[i,t]],[/droid [\d\.]+; (fp\du?)(?: b|\))/i],[o,[e,"Fairphone"],[i,s]],[/(u304aa)/i],[o,[e,"AT&T"],[i,s]],[/\bsie-(\w*)/i],[o,[e,"Siemens"],[i,s]],[/\b(rct\w+) b/i],[o,[e,"RCA"],[i,t]],[/\b(venue[\d ]{2,7}) b/i],[o,[e,"Dell"],[i,t]],[/\b(q(?:mv|ta)\w+) b/i],[o,[e,"Verizon"],[i,t]],[/\b(?:barnes[& ]+noble |bn[rt])([\w\+ ]*) b/i],[o,[e,"Barnes & Noble"],[i,t]],[/\b(tm\d{3}\w+) b/i],[o,[e,"NuVision"],[i,t]],[/\b(k88) b/i],[o,[e,"ZTE"],[i,t]],[/\b(nx\d{3}j) b/i],[o,[e,"ZTE"],[i,s]],[/\b(gen\d{3}) b.+49h/i],[o,[e,"Swiss"],[i,s]],[/\b(zur\d{3}) b/i],[o,[e,"Swiss"],[i,t]],[/\b((zeki)?tb.*\b) b/i],[o,[e,"Zeki"],[i,t]],[/\b([yr]\d{2}) b/i,/\b(dragon[- ]+touch |dt)(\w{5}) b/i],[[e,"Dragon Touch"],o,[i,t]],[/\b(ns-?\w{0,9}) b/i],[o,[e,"Insignia"],[i,t]],[/\b((nxa|next)-?\w{0,9}) b/i],[o,[e,"NextBook"],[i,t]],[/\b(xtreme\_)?(v(1[045]|2[015]|[3469]0|7[05])) b/i],[[e,"Voice"],o,[i,s]],[/\b(lvtel\-)?(v1[12]) b/i],[[e,"LvTel"],o,[i,s]],[/\b(ph-1) /i],[o,[e,"Essential"],[i,s]],[/\b(v(100md|700na|7011|917g).*\b) b/i],[o,[e,"Envizen"],[i,t]],[/\b(trio[-\w\. ]+) b/i],[o,[e,"MachSpeed"],[i,t]],[/\btu_(1491) b/i],[o,[e,"Rotor"],[i,t]],[/(shield[\w ]+) b/i],[o,[e,"Nvidia"],[i,t]],[/(sprint) (\w+)/i],[e,o,[i,s]],[/(kin\.[onetw]{3})/i],[[o,/\./g," "],[e,H],[i,s]],[/droid.+; (cc6666?|et5[16]|mc[239][23]x?|vc8[03]x?)\)/i],[o,[e,X],[i,t]],[/droid.+; (ec30|ps20|tc[2-8]\d[kx])\)/i],[o,[e,X],[i,s]],[/(ouya)/i,/(nintendo) ([wids3utch]+)/i],[e,o,[i,E]],[/droid.+; (shield) bui/i],[o,[e,"Nvidia"],[i,E]],[/(playstation [345portablevi]+)/i],[o,[e,U],[i,E]],[/\b(xbox(?: one)?(?!; xbox))[\); ]/i],[o,[e,H],[i,E]],[/smart-tv.+(samsung)/i],[e,[i,p]],[/hbbtv.+maple;(\d+)/i],[[o,/^/,"SmartTV"],[e,Y],[i,p]],[/(nux; netcast.+smarttv|lg (netcast\.tv-201\d|android tv))/i],[[e,W],[i,p]],[/(apple) ?tv/i],[e,[o,k+" TV"],[i,p]],[/crkey/i],[[o,M+"cast"],[e,z],[i,p]],[/droid.+aft(\w)( bui|\))/i],[o,[e,G],[i,p]],[/\(dtv[\);].+(aquos)/i,/(aquos-tv[\w ]+)\)/i],[o,[e,ri],[i,p]],[/(bravia[\w ]+)( bui|\))/i],[o,[e,U],[i,p]],[/(mitv-\w{5}) bui/i],[o,[e,Z],[i,p]],[/\b(roku)[\dx]*[\)\/]((?:dvp-)?[\d\.]*)/i,/hbbtv\/\d+\.\d+\.\d+ +\([\w ]*; *(\w[^;]*);([^;]*)/i],[[e,$],[o,$],[i,p]],[/\b(android tv|smart[- ]?tv|opera tv|tv; rv:)\b/i],[[i,p]],[/((pebble))app/i],[e,o,[i,_]],[/droid.+; (glass) \d/i],[o,[e,z],[i,_]],[/droid.+; (wt63?0{2,3})\)/i],[o,[e,X],[i,_]],[/(quest( 2)?)/i],[o,[e,ti],[i,_]],[/(tesla)(?: qtcarbrowser|\/[-\w\.]+)/i],[e,[i,Q]],[/droid .+?; ([^;]+?)(?: bui|\) applew).+? mobile safari/i],[o,[i,s]],[/droid .+?; ([^;]+?)(?: bui|\) applew).+?(?! mobile) safari/i],[o,[i,t]],[/\b((tablet|tab)[;\/]|focus\/\d(?!.+mobile))/i],[[i,t]],[/(phone|mobile(?:[;\/]| [ \w\/\.]*safari)|pda(?=.+windows ce))/i],[[i,s]],[/(android[-\w\. ]{0,9});.+buil/i],[o,[e,"Generic"]]],engine:[[/windows.+ edge\/([\w\.]+)/i],[r,[a,pi+"HTML"]],[/webkit\/537\.36.+chrome\/(?!27)([\w\.]+)/i],[r,[a,"Blink"]],[/(presto)\/([\w\.]+)/i,/(webkit|trident|netfront|netsurf|amaya|lynx|w3m|goanna)\/([\w\.]+)/i,/ekioh(flow)\/([\w\.]+)/i,/(khtml|tasman|links)[\/ ]\(?([\w\.]+)/i,/(icab)[\/ ]([23]\.[\d\.]+)/i],[a,r],[/rv\:([\w\.]{1,9})\b.+(gecko)/i],[r,a]],os:[[/microsoft (windows) (vista|xp)/i],[a,r],[/(windows) nt 6\.2; (arm)/i,/(windows (?:phone(?: os)?|mobile))[\/ ]?([\d\.\w ]*)/i,/(windows)[\/ ]?([ntce\d\. ]+\w)(?!.+xbox)/i],[a,[r,K,ni]],[/(win(?=3|9|n)|win 9x )([nt\d\.]+)/i],[[a,"Windows"],[r,K,ni]],[/ip[honead]{2,4}\b(?:.*os ([\w]+) like mac|; opera)/i,/cfnetwork\/.+darwin/i],[[r,/_/g,"."],[a,"iOS"]],[/(mac os x) ?([\w\. ]*)/i,/(macintosh|mac_powerpc\b)(?!.+haiku)/i],[[a,"Mac OS"],[r,/_/g,"."]],[/droid ([\w\.]+)\b.+(android[- ]x86|harmonyos)/i],[r,a],[/(android|webos|qnx|bada|rim tablet os|maemo|meego|sailfish)[-\/ ]?([\w\.]*)/i,/(blackberry)\w*\/([\w\.]*)/i,/(tizen|kaios)[\/ ]([\w\.]+)/i,/\((series40);/i],[a,r],[/\(bb(10);/i],[r,[a,ei]],[/(?:symbian ?os|symbos|s60(?=;)|series60)[-\/ ]?([\w\.]*)/i],[r,[a,"Symbian"]],[/mozilla\/[\d\.]+ \((?:mobile|tablet|tv|mobile; [\w ]+); rv:.+ gecko\/([\w\.]+)/i],[r,[a,q+" OS"]],[/web0s;.+rt(tv)/i,/\b(?:hp)?wos(?:browser)?\/([\w\.]+)/i],[r,[a,"webOS"]],[/crkey\/([\d\.]+)/i],[r,[a,M+"cast"]],[/(cros) [\w]+ ([\w\.]+\w)/i],[[a,"Chromium OS"],r],[/(nintendo|playstation) ([wids345portablevuch]+)/i,/(xbox); +xbox ([^\);]+)/i,/\b(joli|palm)\b ?(?:os)?\/?([\w\.]*)/i,/(mint)[\/\(\) ]?(\w*)/i,/(mageia|vectorlinux)[; ]/i,/([kxln]?ubuntu|debian|suse|opensuse|gentoo|arch(?= linux)|slackware|fedora|mandriva|centos|pclinuxos|red ?hat|zenwalk|linpus|raspbian|plan 9|minix|risc os|contiki|deepin|manjaro|elementary os|sabayon|linspire)(?: gnu\/linux)?(?: enterprise)?(?:[- ]linux)?(?:-gnu)?[-\/ ]?(?!chrom|package)([-\w\.]*)/i,/(hurd|linux) ?([\w\.]*)/i,/(gnu) ?([\w\.]*)/i,/\b([-frentopcghs]{0,5}bsd|dragonfly)[\/ ]?(?!amd|[ix346]{1,2}86)([\w\.]*)/i,/(haiku) (\w+)/i],[a,r],[/(sunos) ?([\w\.\d]*)/i],[[a,"Solaris"],r],[/((?:open)?solaris)[-\/ ]?([\w\.]*)/i,/(aix) ((\d)(?=\.|\)| )[\w\.])*/i,/\b(beos|os\/2|amigaos|morphos|openvms|fuchsia|hp-ux)/i,/(unix) ?([\w\.]*)/i],[a,r]]},m=function(n,l){if(typeof n===D&&(l=n,n=d),!(this instanceof m))return new m(n,l).getResult();var b=n||(typeof h!==g&&h.navigator&&h.navigator.userAgent?h.navigator.userAgent:N),u=l?hi(bi,l):bi;return this.getBrowser=function(){var w={};return w[a]=d,w[r]=d,T.call(w,b,u.browser),w.major=fi(w.version),w},this.getCPU=function(){var w={};return w[f]=d,T.call(w,b,u.cpu),w},this.getDevice=function(){var w={};return w[e]=d,w[o]=d,w[i]=d,T.call(w,b,u.device),w},this.getEngine=function(){var w={};return w[a]=d,w[r]=d,T.call(w,b,u.engine),w},this.getOS=function(){var w={};return w[a]=d,w[r]=d,T.call(w,b,u.os),w},this.getResult=function(){return{ua:this.getUA(),browser:this.getBrowser(),engine:this.getEngine(),os:this.getOS(),device:this.getDevice(),cpu:this.getCPU()}},this.getUA=function(){return b},this.setUA=function(w){return b=typeof w===R&&w.length>F?$(w,F):w,this},this.setUA(b),this};m.VERSION=V,m.BROWSER=P([a,r,mi]),m.CPU=P([f]),m.DEVICE=P([o,e,i,E,s,p,t,_,Q]),m.ENGINE=m.OS=P([a,r]),typeof S!==g?(typeof L!==g&&L.exports&&(S=L.exports=m),S.UAParser=m):typeof define===j&&define.amd?define(function(){return m}):typeof h!==g&&(h.UAParser=m);var y=typeof h!==g&&(h.jQuery||h.Zepto);if(y&&!y.ua){var B=new m;y.ua=B.getResult(),y.ua.get=function(){return B.getUA()},y.ua.set=function(n){B.setUA(n);var l=B.getResult();for(var b in l)y.ua[b]=l[b]}}})(typeof window=="object"?window:S)});var gi=ci((xi,ui)=>{ui.exports=di()});return gi();})();
// ---- END GENERATED ----
