import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { test } from 'node:test';

// Installing the lean bind changes a Node built-in for the whole process, so it runs in a child.
const MODULE = path.resolve(__dirname, '..', '..', 'src', 'util', 'lean-async-bind.js');

const CHILD = `
const assert = require('node:assert/strict');
const { AsyncLocalStorage, AsyncResource } = require('node:async_hooks');
const http2 = require('node:http2');
const { installLeanAsyncResourceBind } = require(${JSON.stringify(MODULE)});
(async () => {
  const hadAccessor = Object.getOwnPropertyDescriptor(new AsyncResource('x').bind(() => 0), 'asyncResource') !== undefined;
  const installed = installLeanAsyncResourceBind();
  assert.equal(installed, hadAccessor, 'installed exactly when Node defines the accessor');
  assert.equal(installLeanAsyncResourceBind(), false, 'a second install finds nothing to replace');

  const als = new AsyncLocalStorage();
  let resource;
  als.run('ctx', () => { resource = new AsyncResource('test'); });
  const bound = resource.bind((a, b, c) => [als.getStore(), a + b + c]);
  assert.equal(Object.getOwnPropertyDescriptor(bound, 'asyncResource'), undefined);
  assert.deepEqual(bound(1, 2, 3), ['ctx', 6], 'runs in the resource scope, arguments passed');
  assert.equal(als.getStore(), undefined, 'the scope ends with the call');
  assert.equal(bound.length, 3, 'reports the wrapped arity');

  const holder = { f: resource.bind(function () { return this; }) };
  assert.equal(holder.f(), holder, 'without thisArg: the call-site this');
  const target = {};
  assert.equal(resource.bind(function () { return this; }, target).call({}), target, 'with thisArg: that object');
  assert.equal(AsyncResource.bind(function () { return this; }, 'static', target)(), target);
  assert.throws(() => resource.bind(42), TypeError);

  // node:http2's client binds a function per stream: requests still complete.
  const server = http2.createServer((req, res) => res.end('pong'));
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const session = http2.connect('http://127.0.0.1:' + server.address().port);
  for (let i = 0; i < 3; i++) {
    const body = await new Promise((resolve, reject) => {
      const req = session.request({ ':path': '/' });
      let text = '';
      req.setEncoding('utf8');
      req.on('data', (d) => (text += d));
      req.on('end', () => resolve(text));
      req.on('error', reject);
      req.end();
    });
    assert.equal(body, 'pong');
  }
  session.close();
  server.close();
  process.stdout.write(JSON.stringify({ installed }));
})().catch((err) => { console.error(err); process.exit(1); });
`;

test('the lean AsyncResource#bind keeps bind semantics (scope, this, arity) without the deprecated accessor', () => {
  const child = spawnSync(process.execPath, ['-e', CHILD], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(child.status, 0, child.stderr);
  const { installed } = JSON.parse(child.stdout) as { installed: boolean };
  // Node 20, which this project runs on, still defines the accessor: the replacement must be active.
  if (Number(process.versions.node.split('.')[0]) <= 24) assert.equal(installed, true);
});
