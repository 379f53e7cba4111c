// The entry module exports exactly the values switchboard.d.ts declares (test/types-check.ts
// then holds each of them to its declared type).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as sdk from '../switchboard.js';

test('switchboard.js exports exactly the classes and functions switchboard.d.ts declares', () => {
  const dts = readFileSync(new URL('../switchboard.d.ts', import.meta.url), 'utf8');
  const declared = [...dts.matchAll(/^export declare (?:class|function) (\w+)/gm)].map((m) => m[1]);
  assert.ok(declared.includes('Switchboard') && declared.includes('Room'), 'the declarations were read');
  assert.deepEqual(Object.keys(sdk).sort(), [...new Set(declared)].sort());
});
