#!/usr/bin/env node
// `npm test` builds into an empty dist/, so the compiled copy of a deleted or renamed test cannot keep running.
'use strict';
require('node:fs').rmSync(require('node:path').resolve(__dirname, '..', 'dist'), { recursive: true, force: true });
