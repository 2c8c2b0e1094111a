// Builds ../../assets/plotly-emap-<plotly.js version>.min.js from index.js with esbuild,
// using the options of plotly.js' own build (its esbuild-config.js) minus the GLSL
// plugin, which only the WebGL traces left out here need. Like plotly.js' own dist
// bundles, it leaves out the attributes' descriptions (text for the plot schema's
// documentation, never read when drawing).
//
//     cd tools/plotly_bundle && npm ci && node build.mjs      (or tools/make_plotly_bundle.sh)
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { environmentPlugin } from 'esbuild-plugin-environment';
import InlineCSSPlugin from 'esbuild-plugin-inline-css';

const here = dirname(fileURLToPath(import.meta.url));
const assets = join(here, '..', '..', 'assets');
const version = JSON.parse(readFileSync(join(here, 'node_modules', 'plotly.js', 'package.json'))).version;
const traces = [...readFileSync(join(here, 'index.js'), 'utf8').matchAll(/plotly\.js\/lib\/(\w+)'\)/g)].map((m) => m[1]).filter((t) => t !== 'core');
const outfile = process.env.PLOTLY_BUNDLE_OUT || join(assets, `plotly-emap-${version}.min.js`);

// `description: '...'` on one line, or `description: [...].join(...)`, in plotly.js' sources
const DESCRIPTION = /\s*\bdescription: (?:'.*'|\[[\s\S]*?\]\.join\([\s\S]*?\)),?/g;
const withoutDescriptions = {
    name: 'plotly-without-descriptions',
    setup(build) {
        build.onLoad({ filter: /[\\/]plotly\.js[\\/]src[\\/].*\.js$/ }, async (args) => ({
            contents: readFileSync(args.path, 'utf8').replace(DESCRIPTION, ''),
            loader: 'js',
        }));
    },
};

// one bundle in assets/: Dash adds every .js file there to the page
if (!process.env.PLOTLY_BUNDLE_OUT) {
    for (const f of readdirSync(assets)) {
        if (/^plotly-emap-.*\.js$/.test(f)) rmSync(join(assets, f));
    }
}

await esbuild.build({
    entryPoints: [join(here, 'index.js')],
    outfile,
    format: 'iife',
    globalName: 'Plotly', // a classic script: defines window.Plotly, which dcc.Graph then uses
    bundle: true,
    minify: true,
    sourcemap: false,
    legalComments: 'eof',
    plugins: [withoutDescriptions, InlineCSSPlugin(), environmentPlugin({ NODE_DEBUG: false })],
    alias: { regl: '@plotly/regl', stream: 'stream-browserify' },
    define: { global: 'window', 'define.amd': 'false' },
    target: 'es2016',
    banner: {
        js: [
            '/**',
            `* plotly.js v${version}, EMAP partial bundle: core (scatter) + ${traces.join(', ')}`,
            '* Copyright 2012-2026, Plotly, Inc. All rights reserved. Licensed under the MIT license.',
            '* Includes MapLibre GL JS (3-Clause BSD) and other MIT / BSD / ISC modules whose notices',
            '* are kept at the end of this file. Built by tools/plotly_bundle/build.mjs.',
            '*/',
        ].join('\n'),
    },
    logLevel: 'info',
});
console.log(`${outfile}: ${(statSync(outfile).size / 1e6).toFixed(2)} MB`);
