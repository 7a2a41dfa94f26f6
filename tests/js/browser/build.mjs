// Bundles a page script with the browser SDKs installed here (@segment/analytics-next,
// @amplitude/analytics-browser) into one local file, so that a page loads them from its own server.
//
//   node tests/js/browser/build.mjs <entry.js> <outfile.js>

import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

const HERE = dirname(fileURLToPath(import.meta.url))
const [entry, outfile] = process.argv.slice(2)
if (!entry || !outfile) {
  console.error('usage: node build.mjs <entry.js> <outfile.js>')
  process.exit(2)
}

await build({
  entryPoints: [resolve(entry)],
  outfile: resolve(outfile),
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: 'es2020',
  minify: true,
  nodePaths: [resolve(HERE, 'node_modules')], // the entry may live elsewhere (examples/)
  define: { 'process.env.NODE_ENV': '"production"' },
  logLevel: 'warning'
})
