#!/usr/bin/env node
// Builds the admin page into dist/src/extensions/admin/page/, where the admin extension serves it
// from: compiles app.ts with the page's own tsconfig.json (browser: DOM, ES2020 modules) and copies
// index.html and page.css beside it. Run by `npm run build` after the server's tsc, and by the image build.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const source = path.join(root, 'src', 'extensions', 'admin', 'page');
const out = path.join(root, 'dist', 'src', 'extensions', 'admin', 'page');

const tsc = spawnSync(process.execPath, [require.resolve('typescript/bin/tsc', { paths: [root] }), '-p', path.join(source, 'tsconfig.json')], { stdio: 'inherit' });
if (tsc.status !== 0) process.exit(tsc.status ?? 1);
fs.mkdirSync(out, { recursive: true });
for (const file of ['index.html', 'page.css']) fs.copyFileSync(path.join(source, file), path.join(out, file));
