// The page's own analytics, as a site runs them: Segment's analytics.js (analytics-next) and Amplitude's
// Browser SDK, both from npm. It sends a page event, calls the app (which tracks a server-side exposure),
// identifies the user, calls the app again, and shows what each side saw.
//
// Bundled by tests/js/browser/build.mjs; the app serves the bundle and puts the configuration (local
// hosts for Segment's CDN and API and for Amplitude) into window.EXAMPLE_CONFIG.

import { AnalyticsBrowser } from '@segment/analytics-next'
import * as amplitude from '@amplitude/analytics-browser'

async function getJSON (path) {
  const response = await fetch(path, { credentials: 'same-origin' })
  if (!response.ok) throw new Error(`${path} answered ${response.status}`)
  return response.json()
}

async function run (config) {
  await amplitude.init(config.amplitudeApiKey, {
    serverUrl: config.amplitudeServerUrl,
    fetchRemoteConfig: false,
    remoteConfig: { fetchRemoteConfig: false },
    enableDiagnostics: false,
    autocapture: false,
    logLevel: amplitude.Types.LogLevel.None
  }).promise
  const [analytics] = await AnalyticsBrowser.load(
    { writeKey: config.writeKey, cdnURL: config.cdnURL },
    { retryQueue: false }
  )
  await analytics.page('Checkout')
  const anonymous = await getJSON('/api/checkout?flag=checkout-anonymous')

  await analytics.identify(config.userId)
  amplitude.setUserId(config.userId)
  const identified = await getJSON('/api/checkout?flag=checkout-identified')
  await analytics.track('Checkout Viewed')
  const amplitudeCookie = await getJSON('/api/amplitude-cookie')

  return {
    browser: {
      anonymousId: analytics.user().anonymousId(),
      userId: analytics.user().id(),
      amplitudeDeviceId: amplitude.getDeviceId(),
      amplitudeUserId: amplitude.getUserId()
    },
    server: { anonymous, identified, amplitudeCookie }
  }
}

const show = (text) => { document.getElementById('result').textContent = text }
window.EXAMPLE_RESULT = run(window.EXAMPLE_CONFIG).then(
  (result) => { show(JSON.stringify(result, null, 2)); document.title = 'done'; return result },
  (error) => { show('failed: ' + error); document.title = 'failed'; throw error }
)
